"""Where a small `taskray run` job's start-up goes: the benchmark's command, timed from the shell,
with each step's start and end in every process of the job.

    python -m benchmarks.cold_start [--workload embed-text] [--rows 200] [--repeat 3]

Runs `taskray run --task T --model M --input I --output O --id-column id` (the command of
benchmarks/run.py, no tuning flag) `--repeat` times in turn. Each run puts
benchmarks/cold_start_trace/ on PYTHONPATH, whose sitecustomize.py records, in the driver and in
every Ray worker the raylet starts, the process start, a few heavy imports and the steps of the
job (preflight checks, Ray start-up, the forward actor's constructor and weights, its calls, the
read and write tasks, the finalize). The harness adds when the first output file appeared and
when the command exited. All times are seconds after the command was launched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

from benchmarks.measure import _has_data_file, _stop
from benchmarks.workloads import WORKLOADS, build_workload

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACER = os.path.join(REPO, "benchmarks", "cold_start_trace")


def run_traced(argv: list[str], output_dir: str, trace_path: str, log_path: str, code: str | None = None) -> dict:
    """Run `argv` once with the tracer; returns {launch, first_output, exit} (epoch seconds).
    `code`: a directory holding another version's `pipelines` and `operators`, imported instead
    of this checkout's, by the command and by its Ray workers (the command runs there: Ray puts
    the driver's directory first on its workers' sys.path)."""
    ray_tmpdir = tempfile.mkdtemp(prefix="trc-", dir="/tmp")
    env = {
        **os.environ,
        "RAY_TMPDIR": ray_tmpdir,
        "TASKRAY_TRACE": trace_path,
        "PYTHONPATH": os.pathsep.join(p for p in (TRACER, code, REPO, os.environ.get("PYTHONPATH")) if p),
    }
    first = None
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            launch = time.time()
            proc = subprocess.Popen(argv, cwd=code or REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                while proc.poll() is None:
                    if first is None and _has_data_file(output_dir):
                        first = time.time()
                    time.sleep(0.02)
                end = time.time()
            finally:
                _stop(proc)
        if proc.returncode != 0:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}:\n{f.read()[-4000:]}")
        return {"launch": launch, "first_output": first, "exit": end}
    finally:
        shutil.rmtree(ray_tmpdir, ignore_errors=True)


def read_events(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def roles(events: list[dict], driver_pid: int) -> dict[int, str]:
    """A name for each process: the driver, else the first Ray task or actor it ran (short),
    else "idle worker"."""
    named = {driver_pid: "driver"}
    for e in events:
        pid = e["pid"]
        if pid in named or not e["event"].startswith("ray task "):
            continue
        what = e["event"].removeprefix("ray task ")
        if "MapWorker" in what:
            what = "forward actor"
        elif what.endswith("._map_task"):
            what = "map/write task"
        else:
            what = ".".join(what.split(".")[-2:-1]) or what  # the class of an actor method
        named[pid] = what
    for e in events:
        if e["event"] == "process" and e["pid"] not in named:
            script = os.path.basename(e.get("argv", "").split(" ")[1] if " " in e.get("argv", "") else e.get("argv", ""))
            named[e["pid"]] = "idle worker" if script == "default_worker.py" else script or "python"
        named.setdefault(e["pid"], "python")
    return {pid: f"{name}[{pid % 10000}]" for pid, name in named.items()}


def timeline(run: dict, events: list[dict]) -> list[tuple[float | None, float, str, str]]:
    """(start, end, process, event) in seconds after the launch, ordered by end."""
    t0 = run["launch"]
    driver = next(e["pid"] for e in events if e["event"] == "process")
    names = roles(events, driver)
    rows = []
    seen_calls: dict[tuple[int, str], int] = defaultdict(int)
    for e in events:
        key = (e["pid"], e["event"])
        seen_calls[key] += 1
        if e["event"] in ("Forward call", "write task", "read task") and seen_calls[key] > 1:
            continue  # the first of each is the start-up's; the rest is throughput
        start = None if e.get("start") is None else e["start"] - t0
        rows.append((start, e["t"] - t0, names[e["pid"]], e["event"]))
    rows.append((None, run["first_output"] - t0 if run["first_output"] else float("nan"), "harness", "first output file"))
    rows.append((None, run["exit"] - t0, "harness", "command exited"))
    return sorted(rows, key=lambda r: r[1])


def print_timeline(run: dict, events: list[dict], worker: str, verbose: bool, names: dict[str, str | None] | None = None) -> None:
    """One line per traced step: its start -> end, the process, the step. `names` renames steps
    (None drops one); without `verbose`, imports and Ray tasks show only for `worker` events."""
    for start, end, who, event in timeline(run, events):
        event = (names or {}).get(event, event)
        if event is None or (not verbose and event.startswith(("import py", "ray task ")) and worker not in event):
            continue
        span = "" if start is None else f"{start:6.2f} -> "
        took = "" if start is None else f"  ({end - start:.2f} s)"
        print(f"  {span:>10}{end:6.2f}  {who:<34} {event}{took}")


def print_ranges(values: dict[str, list[float]], width: int) -> None:
    for name, seconds in values.items():
        print(f"{name:>{width}}: " + ", ".join(f"{v:.1f}" for v in seconds) + f" s (range {min(seconds):.1f}-{max(seconds):.1f})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cold_start", description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", default="embed-text", choices=WORKLOADS)
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--verbose", action="store_true", help="also list the small imports and every Ray task's first call")
    p.add_argument("--json", metavar="OUT", help="also write the runs and their events to this JSON file")
    p.add_argument("--work-dir", default=None)
    p.add_argument(
        "--before", metavar="DIR",
        help="also run, alternating with this checkout, the `pipelines` and `operators` packages in DIR "
        "(e.g. `git archive <commit> pipelines operators | tar -x -C DIR`): before and after side by side",
    )
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from benchmarks.competitors import taskray_command

    work = args.work_dir or tempfile.mkdtemp(prefix="taskray-cold-")
    models_dir = os.path.join(REPO, ".cache", "benchmarks", "models")
    workload = build_workload(args.workload, args.rows, models_dir)
    input_dir = workload.write_parquet(os.path.join(work, "input"))
    report = []
    versions = [("before", args.before), ("after", None)] if args.before else [("this checkout", None)]
    firsts: dict[str, list[float]] = defaultdict(list)
    try:
        for i in range(args.repeat):
            for label, code in versions:
                out = os.path.join(work, f"out-{i}")
                trace = os.path.join(work, f"trace-{label}-{i}.jsonl")
                shutil.rmtree(out, ignore_errors=True)
                if os.path.exists(trace):
                    os.remove(trace)
                # Another version runs through its own `python -m pipelines.cli`: the installed
                # `taskray` script names this checkout's entry point, which an older one may lack.
                launcher = [sys.executable, "-m", "pipelines.cli"] if code else taskray_command()
                cmd = [
                    *launcher, "run", "--task", workload.task, "--model", workload.model,
                    "--input", input_dir, "--output", out, "--id-column", "id",
                ]
                run = run_traced(cmd, out, trace, os.path.join(work, f"log-{label}-{i}.txt"), code)
                events = read_events(trace)
                first = run["first_output"] - run["launch"] if run["first_output"] else float("nan")
                total = run["exit"] - run["launch"]
                firsts[label].append(first)
                firsts[label + " exit"].append(total)
                print(f"{label} run {i + 1}: first output {first:.1f} s, exit {total:.1f} s (load {os.getloadavg()[0]:.1f})")
                print_timeline(run, events, "MapWorker", args.verbose)
                report.append({"version": label, "run": run, "events": events})
        print_ranges(firsts, 20)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
