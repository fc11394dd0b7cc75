"""How many Serve applications to start at once on one machine (pipelines/serve/runner.py
`deploy(starting_at_once=...)`): the time until all are running, and the CPU the machine spent.

    python -m benchmarks.serve_start_window [--windows 0,2,4,100] [--models DIR]

The applications are the test suite's Serve session (tests/serve/conftest.py): the 13 example
endpoints of configs/serve.yaml with tiny models, plus the API, backpressure, crash and auth
test endpoints; 18 applications, 21 replicas. Each window runs in a fresh local Ray of 2 CPUs
started as the suite starts it;
0 is the default (one per CPU, at least 2). CPU is the machine's busy time from /proc/stat, so
run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import time


def busy_cpu_seconds() -> float:
    with open("/proc/stat") as f:
        ticks = list(map(int, f.readline().split()[1:]))
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def suite_config(models: str) -> dict:
    from tests.serve.conftest import free_port, suite_serve_config
    from tiny_models import build_tiny_model

    def tiny(task: str, variant: str | None = None) -> str:
        return build_tiny_model(task, models, variant=variant)

    return suite_serve_config(tiny, free_port())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--windows", default="0,2,4,100", help="applications starting at once; 0: the default")
    p.add_argument("--models", default=os.path.join(os.path.expanduser("~"), ".cache", "taskray", "tiny-models"))
    args = p.parse_args()
    import ray

    from pipelines.serve.runner import deploy
    from tests.serve.conftest import start_suite_ray

    print("| starting at once | all running after | CPU-seconds |")
    print("|---|---:|---:|")
    for window in (int(w) for w in args.windows.split(",")):
        config = suite_config(args.models)  # built outside the timing (tiny models on first use)
        start_suite_ray()  # the suite's Ray: 2 CPUs, one OpenMP thread per replica
        try:
            cpu, started = busy_cpu_seconds(), time.monotonic()
            deploy(config, timeout_s=600, starting_at_once=window or None)
            wall, cpu = time.monotonic() - started, busy_cpu_seconds() - cpu
        finally:
            ray.shutdown()
        print(f"| {window or 'default'} ({len(config['applications'])} applications) | {wall:.1f} s | {cpu:.0f} |", flush=True)


if __name__ == "__main__":
    main()
