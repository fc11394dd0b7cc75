"""`taskray ...` in a driver process of its own, on a fresh local Ray started here first.

    python -m tests.offline_reliability.driver run job.yaml --resume

The CLI itself is unchanged (`pipelines.cli.main`); `run_job` uses the Ray that is already up.
Starting it here lets the tests size it and retry once: on a busy 2-core machine the raylet
can miss Ray's fixed 30 s registration window (measured: twice in a row at load 90) ("The current node timed out during startup").
"""

from __future__ import annotations

import sys


ATTEMPTS = 3


def start_ray() -> None:
    import ray

    # No runtime_env: the local Ray's workers inherit this process's environment (AWS_*, the
    # offline flags), as `taskray run` starts its own.
    kwargs = dict(
        address="local",  # never attach to another Ray on this machine
        num_cpus=2,  # the size of the machine the suite targets; CPU counts in the specs fit it
        include_dashboard=False,
    )
    for attempt in range(1, ATTEMPTS + 1):
        try:
            ray.init(**kwargs)
            return
        except Exception as e:  # broad on purpose: Ray raises a bare Exception for a startup timeout
            ray.shutdown()
            if attempt == ATTEMPTS:
                raise
            print(f"ray.init failed ({type(e).__name__}: {e}); retrying", file=sys.stderr)


if __name__ == "__main__":
    start_ray()
    from pipelines.cli import main

    sys.exit(main(sys.argv[1:]))
