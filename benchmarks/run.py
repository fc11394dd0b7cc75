"""Side-by-side throughput: transformers.pipeline, naive Ray Data, taskray, forward-only.

    python -m benchmarks.run [--workload W] [--rows N] [--json OUT] [--scale]

Every competitor runs on the same items, in turn, in this one process run. Ray starts once,
timed on its own line, before (b) and (c), and is not counted against either.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

from benchmarks.measure import Measurement, release_memory
from benchmarks.workloads import DEFAULT_ROWS, WORKLOADS, Workload, build_workload
from pipelines.job import LOCAL_RAY_SYSTEM_CONFIG

# Targets from the issue: taskray items/s over the competitor's, at least.
TARGETS: dict[str, dict[str, float]] = {
    "embed-text": {"best pipeline": 1.5, "naive Ray Data": 1.3, "forward only": 0.8},
    "asr": {"best pipeline": 1.3},
    "classify-images": {"best pipeline": 1.0},
}
SCALE_LIMITS = {"wall": 10.5, "rss": 1.3}
# taskray's job settings per workload on a CPU-only Ray (flags override them). Ray gives
# logical CPUs: actors that reserve every CPU leave none for the read and write tasks, and the
# job stalls (measured: defaults of 1 CPU per preprocess and forward actor on 2 CPUs never
# start the read).
# The forward actor of text computes on both cores while it reserves 1 CPU: tokenizing needs
# ~1% of a core, so the reservation leaves room for read and write tasks without idling a
# core. It runs 2 forward calls of 1 thread (forward_calls=2), which never wait for each
# other the way one call's 2 threads do (in-process 155 vs 142 rows/s); a call running alone
# takes both threads (pipelines/torch_threads.py). 6,000 rows: 132.1, 132.6 vs 121.9 rows/s
# for one call on 2 threads. Two 1-thread actors measured the same as one 2-thread actor
# (6,000 rows: 128.9 vs 127.1 rows/s) and start later. The tiny Wav2Vec2 computes 1.4x more
# per core on one thread than on two (600 clips forward-only: 66.6 clips/s on 1 thread, 93.2
# on 2), so asr runs two 1-thread forwards: two actors did 3,000 clips at 66.3 vs 49.6 clips/s for one 2-thread actor;
# one actor running both as threads (forward_calls=2) starts one process instead of two, and
# 600 clips went from 38.0 and 36.4 to 44.2 and 45.3 clips/s (first forward 7.0 -> 5.4 s).
# Images decode on both cores instead, and their tiny model's forward is noise: one thread.
# Every workload preprocesses inline, in the forward actors (one process to start instead of
# two or three): 3,000 images 36 s vs 40-45 s; embed-text 2,000 rows, twice each, 102.2 and
# 102.6 vs 100.7 and 97.3 rows/s with the first forward 0.5 s sooner (RESULTS.md).
# block_growth 4: results outgrow inputs (embeddings 11x), see pipelines/job.py.
# asr reads 64 clips per block instead of 256: the first forward waits for the first block
# to be decoded, and 256 clips of up to 30 s took 2.5 s (600 clips: 32.5 -> 36.6 clips/s).
CPU_JOB: dict[str, dict[str, Any]] = {
    "embed-text": {"preprocess": "inline", "forward_cpus": 1.0, "torch_threads": 1, "forward_calls": 2, "block_growth": 4},
    "classify-images": {"preprocess": "inline", "forward_cpus": 1.0, "torch_threads": 1, "block_growth": 4},
    "asr": {"preprocess": "inline", "forward_cpus": 1.0, "torch_threads": 1, "forward_calls": 2, "block_growth": 4, "block_rows": 64},
}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", choices=(*WORKLOADS, "all"), default="all", help="Workload to run (default: all).")
    p.add_argument("--rows", type=int, default=None, help=f"Items per workload (default: {DEFAULT_ROWS}).")
    p.add_argument("--json", metavar="OUT", default=None, help="Also write every measurement to this JSON file.")
    p.add_argument(
        "--scale", action="store_true",
        help="Instead of the comparison: taskray on embed-text at N and 10xN rows (wall, peak RSS, spilling).",
    )
    p.add_argument("--batch-sizes", default="1,8,32", help="transformers.pipeline batch sizes (default: 1,8,32).")
    p.add_argument(
        "--competitors", default="forward,pipeline,naive,taskray",
        help="Subset to run, comma-separated (default: all four; ratios need taskray).",
    )
    g = p.add_argument_group("taskray job (JobSpec / TaskSpec fields)")
    g.add_argument("--actors", default=None, help="Forward actor pool MIN:MAX (default: 1:<GPUs>, else 1).")
    g.add_argument("--forward-cpus", type=float, default=None, help="CPUs each forward actor reserves from Ray.")
    g.add_argument("--torch-threads", type=int, default=None, help="torch threads per forward actor.")
    g.add_argument("--forward-calls", type=int, default=None, help="Forward calls one actor runs at once, each on --torch-threads threads.")
    g.add_argument("--batch-size", type=int, default=None, help="Rows per forward call (TaskSpec.batch_size).")
    g.add_argument("--block-rows", type=int, default=None, help="Rows per Ray Data block.")
    g.add_argument("--preprocess", choices=("actors", "inline"), default=None, help="Preprocess in its own actor pool or inside the forward actors.")
    g.add_argument("--preprocess-actors", default=None, help="Preprocessing actor pool MIN:MAX.")
    g.add_argument("--preprocess-cpus", type=float, default=None, help="CPUs per preprocessing actor.")
    g.add_argument(
        "--option", action="append", default=[], metavar="KEY=JSON",
        help="Operator option, e.g. --option batch_budget=8192 (repeatable).",
    )
    g = p.add_argument_group("naive Ray Data")
    g.add_argument("--naive-actors", type=int, default=None, help="Actor pool size (default: GPUs, else CPUs - 1, at least 1).")
    g.add_argument("--naive-cpus", type=float, default=1.0, help="CPUs per actor (Ray sets OMP_NUM_THREADS from it).")
    p.add_argument("--work-dir", default=None, help="Where data and outputs go (default: a temporary directory).")
    args = p.parse_args(argv)
    if args.rows is not None and args.rows < 1:
        p.error(f"--rows must be >= 1, got {args.rows}")
    return args


def taskray_job_fields(args: argparse.Namespace, workload: str, gpus: int) -> dict[str, Any]:
    """The JobSpec / TaskSpec fields of the taskray run: per-workload defaults, then flags."""
    fields: dict[str, Any] = {"actors": f"1:{gpus}"} if gpus else dict(CPU_JOB[workload])
    for name in ("actors", "forward_cpus", "torch_threads", "forward_calls", "batch_size", "block_rows", "preprocess", "preprocess_actors", "preprocess_cpus"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    if args.option:
        options = {}
        for item in args.option:
            key, sep, value = item.partition("=")
            if not sep:
                raise SystemExit(f"--option expects KEY=JSON, got {item!r}")
            options[key] = json.loads(value)
        fields["options"] = options
    return fields


# ---------------------------------------------------------------------------- running


class RayRuntime:
    """One local Ray for the whole run, started on first use with its start-up timed."""

    def __init__(self) -> None:
        self.startup_s: float | None = None

    def ensure(self) -> None:
        import ray

        if ray.is_initialized():
            return
        started = time.perf_counter()
        for attempt in range(3):
            try:
                # "local": always a fresh Ray of our own; a bare init() joins any cluster
                # that `ray start` left running on this machine.
                ray.init(
                    address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                    _system_config=LOCAL_RAY_SYSTEM_CONFIG,  # the settings `taskray run` gives its own Ray
                )
                break
            except Exception as e:  # Ray 2.60 waits a fixed 30 s for its raylet; a loaded
                # machine can miss that, and a second try usually makes it
                ray.shutdown()
                if attempt == 2 or "timed out during startup" not in str(e):
                    raise
                print(f"ray start-up attempt {attempt + 1} failed ({e}); retrying", flush=True)
        from ray.data import DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        self.startup_s = time.perf_counter() - started
        print(f"ray start-up: {self.startup_s:.1f} s (not counted against naive Ray Data or taskray)", flush=True)

    def cpus(self) -> int:
        import ray

        self.ensure()
        return int(ray.cluster_resources().get("CPU", 1))

    def gpus(self) -> int:
        import ray

        self.ensure()
        return int(ray.cluster_resources().get("GPU", 0))


def compare(workload: Workload, args: argparse.Namespace, ray_runtime: RayRuntime, work_dir: str) -> list[Measurement]:
    """Run the selected competitors in turn over `workload`; print each line as it lands."""
    from benchmarks import competitors as c

    chosen = set(args.competitors.split(","))
    unknown = chosen - {"forward", "pipeline", "naive", "taskray"}
    if unknown:
        raise SystemExit(f"--competitors: unknown {sorted(unknown)}")
    input_dir = workload.write_parquet(os.path.join(work_dir, f"{workload.name}-input"))
    results: list[Measurement] = []
    pipeline_outputs: dict[int, list] = {}

    def report(m: Measurement) -> None:
        results.append(m)
        print(f"  {m.competitor:<16} {m.items_per_s:9.1f} items/s  {m.seconds:7.1f} s", flush=True)
        release_memory()  # each competitor starts from a driver without the last one's garbage

    if "forward" in chosen:
        report(c.forward_only(workload))
    best_batch = 8
    if "pipeline" in chosen:
        pipe = c.build_pipeline(workload)
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            m, outputs = c.transformers_pipeline(workload, batch_size, pipe)
            pipeline_outputs[batch_size] = outputs
            report(m)
        del pipe
        best = max((m for m in results if m.competitor.startswith("pipeline")), key=lambda m: m.items_per_s)
        best_batch = best.config["batch_size"]
    if "naive" in chosen:
        gpus = ray_runtime.gpus()
        actors = args.naive_actors or (gpus if gpus else max(1, ray_runtime.cpus() - 1))
        report(
            c.naive_ray_data(
                workload, input_dir, os.path.join(work_dir, f"{workload.name}-naive"),
                pipeline_batch_size=best_batch, actors=actors, actor_cpus=args.naive_cpus,
            )
        )
    if "taskray" in chosen:
        ray_runtime.ensure()
        job = taskray_job_fields(args, workload.name, ray_runtime.gpus())
        output_dir = os.path.join(work_dir, f"{workload.name}-taskray")
        m = c.taskray_job(workload, input_dir, output_dir, job)
        if pipeline_outputs:
            column = {"embed-text": "embedding", "classify-images": "label", "asr": "text"}[workload.name]
            # The reference is the pipeline on one item at a time where it ran: a batched
            # pipeline pads its unsorted batches, and on the tiny random CTC model that alone
            # changed 525 of 600 transcripts (bs=8 vs bs=1; taskray matched bs=1 on all 600).
            reference = pipeline_outputs.get(1, pipeline_outputs[best_batch])
            m.config["agrees_with_pipeline"] = agreement(workload.name, c.read_taskray_output(output_dir, column), reference)
        report(m)
    return results


def agreement(workload: str, taskray: list, pipeline: list) -> float:
    """Share of items where taskray's result matches the pipeline's (embeddings: cosine >= 0.999,
    since batched padding changes float rounding; labels and transcripts: equal)."""
    import numpy as np

    if workload == "embed-text":
        a, b = np.asarray(taskray, np.float64), np.asarray(pipeline, np.float64)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        return float((cos >= 0.999).mean())
    return float(np.mean([x == y for x, y in zip(taskray, pipeline)]))


def scale_check(args: argparse.Namespace, ray_runtime: RayRuntime, work_dir: str, models_dir: str) -> dict[str, Any]:
    """taskray on embed-text at N and 10xN rows: wall, peak RSS of all Ray processes, spilling."""
    from benchmarks import competitors as c

    rows = args.rows or DEFAULT_ROWS["embed-text"]
    ray_runtime.ensure()
    runs = []
    for n in (rows, rows * 10):
        workload = build_workload("embed-text", n, models_dir)
        input_dir = workload.write_parquet(os.path.join(work_dir, f"scale-{n}-input"))
        m = c.taskray_job(
            workload, input_dir, os.path.join(work_dir, f"scale-{n}-output"),
            taskray_job_fields(args, "embed-text", ray_runtime.gpus()),
        )
        print(
            f"  {n:>7} rows  {m.seconds:7.1f} s  {m.items_per_s:7.1f} items/s  peak RSS "
            f"{m.peak_rss_bytes / 2**20:7.0f} MiB  spilled {m.spilled_bytes}",
            flush=True,
        )
        runs.append(m)
        shutil.rmtree(input_dir, ignore_errors=True)
    small, large = runs
    wall, rss = large.seconds / small.seconds, large.peak_rss_bytes / small.peak_rss_bytes
    spilled = sum(m.spilled_bytes or 0 for m in runs)
    ok = wall <= SCALE_LIMITS["wall"] and rss <= SCALE_LIMITS["rss"] and spilled == 0
    print(
        f"scale x10: wall x{wall:.2f} (<= {SCALE_LIMITS['wall']}), peak RSS x{rss:.2f} "
        f"(<= {SCALE_LIMITS['rss']}), spilled {spilled} bytes -> {'PASS' if ok else 'FAIL'}",
        flush=True,
    )
    return {"runs": [m.as_dict() for m in runs], "wall_ratio": wall, "rss_ratio": rss, "spilled_bytes": spilled, "pass": ok}


# ---------------------------------------------------------------------------- output


def table(workload: str, results: list[Measurement]) -> str:
    """A Markdown table: items/s, time, peak RSS, spilling, forward busy share, taskray ratio."""
    taskray = next((m for m in results if m.competitor == "taskray run"), None)
    lines = [
        f"### {workload}",
        "",
        "| competitor | items/s | wall s | 1st fwd s | peak RSS MiB | spilled | fwd busy | taskray ÷ this |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        ratio = f"{taskray.items_per_s / m.items_per_s:.2f}x" if taskray else "-"
        rss = f"{m.peak_rss_bytes / 2**20:.0f}" if m.peak_rss_bytes else "-"
        spilled = "-" if m.spilled_bytes is None else f"{m.spilled_bytes}"
        busy = "-" if m.device_utilisation is None else f"{m.device_utilisation:.0%}"
        first = "-" if m.first_forward_s is None else f"{m.first_forward_s:.1f}"
        lines.append(
            f"| {m.competitor} | {m.items_per_s:.1f} | {m.seconds:.1f} | {first} | {rss} | {spilled} | {busy} | {ratio} |"
        )
    return "\n".join(lines)


def target_lines(workload: str, results: list[Measurement]) -> list[str]:
    taskray = next((m for m in results if m.competitor == "taskray run"), None)
    if taskray is None:
        return []
    pipelines = [m for m in results if m.competitor.startswith("pipeline")]
    named = {m.competitor: m for m in results}
    if pipelines:
        named["best pipeline"] = max(pipelines, key=lambda m: m.items_per_s)
    lines = []
    for name, target in TARGETS.get(workload, {}).items():
        if name not in named:
            continue
        ratio = taskray.items_per_s / named[name].items_per_s
        verdict = "PASS" if ratio >= target else "FAIL"
        lines.append(f"  taskray vs {name} ({named[name].competitor}): {ratio:.2f}x, target >= {target}x -> {verdict}")
    return lines


def machine() -> dict[str, Any]:
    import psutil
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    for name in ("ray", "transformers"):
        info[name] = __import__(name).__version__
    return info


def _exit_on_sigterm(signum, frame) -> None:
    # SystemExit runs the `finally` below, so a killed benchmark stops its Ray too
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("ray").setLevel(logging.WARNING)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="taskray-bench-")
    models_dir = os.path.join(REPO, ".cache", "benchmarks", "models")
    info = machine()
    print("machine:", json.dumps(info), flush=True)
    ray_runtime = RayRuntime()
    report: dict[str, Any] = {"machine": info, "argv": sys.argv[1:], "workloads": {}}
    started = time.perf_counter()
    try:
        if args.scale:
            report["scale"] = scale_check(args, ray_runtime, work_dir, models_dir)
        else:
            names = WORKLOADS if args.workload == "all" else (args.workload,)
            for name in names:
                rows = args.rows or DEFAULT_ROWS[name]
                t = time.perf_counter()
                workload = build_workload(name, rows, models_dir)
                print(f"{name}: {rows} items ({time.perf_counter() - t:.1f} s to generate)", flush=True)
                results = compare(workload, args, ray_runtime, work_dir)
                print(table(name, results), flush=True)
                for line in target_lines(name, results):
                    print(line, flush=True)
                report["workloads"][name] = {"rows": rows, "results": [m.as_dict() for m in results]}
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    report["ray_startup_s"] = ray_runtime.startup_s
    report["total_s"] = time.perf_counter() - started
    print(f"total: {report['total_s']:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
