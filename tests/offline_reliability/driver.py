"""`taskray ...` in a driver process of its own, on a fresh local Ray started here first.

    python -m tests.offline_reliability.driver run job.yaml --resume

The CLI itself is unchanged (`pipelines.cli.main`); `run_job` uses the Ray that is already up.
Starting it here lets the tests size it for the 2-core machine they target.
"""

from __future__ import annotations

import sys


def start_ray() -> None:
    from pipelines.local_ray import start_local_ray

    # No runtime_env: the local Ray's workers inherit this process's environment (AWS_*, the
    # offline flags), as `taskray run` starts its own. num_cpus: the size of the machine the
    # suite targets; CPU counts in the specs fit it.
    start_local_ray(num_cpus=2)


if __name__ == "__main__":
    start_ray()
    from pipelines.cli import exit_now, main

    exit_now(main(sys.argv[1:]))  # as the `taskray` executable ends
