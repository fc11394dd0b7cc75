"""`taskray ...` in a driver process of its own, whose job starts a fresh local Ray sized for
the 2-core machine the suite targets.

    python -m tests.offline_reliability.driver run job.yaml --resume

The CLI itself is unchanged (`pipelines.cli.main`, ended as the `taskray` executable ends). The
job starts its Ray as `taskray run` does (pipelines/offline/job.py, beside the operators'
check); only its size is set here: num_cpus 2, whatever this machine has, so that the CPU counts
in the tests' specs fit it. (This driver used to start Ray first, before the CLI's operators'
check, which `taskray run` overlaps with Ray's start-up; the resume/retry test's four drivers
took 73.8 s that way and 72.3 s this way, measured alone.)
"""

from __future__ import annotations

import functools
import sys


def size_local_ray() -> None:
    from pipelines import local_ray

    local_ray.start_local_ray = functools.partial(local_ray.start_local_ray, num_cpus=2)


if __name__ == "__main__":
    size_local_ray()
    from pipelines.cli import exit_now, main

    exit_now(main(sys.argv[1:]))
