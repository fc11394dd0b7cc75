"""The prepared GPU run: the GPU-marked tests, DETR and Whisper at full batches, and the three
benchmark workloads, on one CUDA machine within 8 minutes, written up as a RESULTS.md section.

    bash benchmarks/gpu.sh [--dry-run] [--results FILE] [--out DIR]
    python -m benchmarks.gpu ...                  # the same

`--dry-run` prints the plan (each step's command and time limit) and runs nothing; it works
on any machine. Without it, the run needs torch to see a CUDA device, and stops at once (exit
2) naming the torch build when it does not. Each step runs under its own time limit, so that
the whole plan fits BUDGET_S; a step that fails or runs out of time is recorded as such and the
next one still runs. The section appended to RESULTS.md (default benchmarks/RESULTS.md) names
the device, each step's command, exit status and seconds, and the tables it printed; the full
logs and the benchmark's JSON stay under --out. Exit 0 when every step passed, else 1.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUDGET_S = 480  # the bound for the whole run: 8 minutes


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]
    limit_s: int
    # Lines of its output that go into RESULTS.md: those starting with one of these.
    keep: tuple[str, ...] = ("|", "#", "  taskray", "  AGREEMENT", "=")


def plan(out_dir: str) -> list[Step]:
    """The steps, in order. Sizes are picked to fit BUDGET_S on one H100/H200: the workloads'
    default sizes for images and audio; embed-text at 5,000 rows (its default 20,000 runs the
    one-at-a-time pipeline for minutes)."""
    py = sys.executable
    bench = (py, "-m", "benchmarks.run")
    return [
        Step("gpu tests", (py, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                           "tests/operators/test_cuda.py", "tests/test_loading.py"), 150,
             keep=("FAILED", "ERROR", "=")),
        Step("DETR and Whisper at full batches", (py, "-m", "benchmarks.full_batches", "--device", "cuda",
                                                  "--json", os.path.join(out_dir, "full_batches.json")), 60),
        Step("embed-text", (*bench, "--workload", "embed-text", "--rows", "5000",
                            "--json", os.path.join(out_dir, "embed-text.json")), 120),
        Step("classify-images", (*bench, "--workload", "classify-images",
                                 "--json", os.path.join(out_dir, "classify-images.json")), 75),
        Step("asr", (*bench, "--workload", "asr", "--json", os.path.join(out_dir, "asr.json")), 75),
    ]


def command_line(step: Step) -> str:
    argv = ["python" if a == sys.executable else a for a in step.argv]
    return " ".join(shlex.quote(a) for a in argv)


def run_step(step: Step, log_path: str) -> tuple[int | None, float, str]:
    """(exit status or None when it ran out of time, seconds, its output)."""
    started = time.monotonic()
    with open(log_path, "w+", encoding="utf-8") as log:
        proc = subprocess.Popen(step.argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=step.limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # its own session: the step's Ray and workers go with it
            proc.wait()
            rc = None
        log.seek(0)
        return rc, time.monotonic() - started, log.read()


def section(device: str, results: list[tuple[Step, int | None, float, str]]) -> str:
    lines = [
        f"## GPU run, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC ({device})",
        "",
        "    bash benchmarks/gpu.sh",
        "",
        "| step | command | exit | seconds (limit) |",
        "|---|---|---|---:|",
    ]
    for step, rc, seconds, _ in results:
        status = "timed out" if rc is None else str(rc)
        lines.append(f"| {step.name} | `{command_line(step)}` | {status} | {seconds:.0f} ({step.limit_s}) |")
    for step, _, _, output in results:
        kept = [line for line in output.splitlines() if line.startswith(step.keep)]
        if kept:
            lines += ["", f"**{step.name}**", "", *kept]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bash benchmarks/gpu.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the plan and run nothing (any machine)")
    parser.add_argument("--results", default=os.path.join(REPO, "benchmarks", "RESULTS.md"),
                        help="the Markdown file the section is appended to")
    parser.add_argument("--out", default=os.path.join(REPO, ".cache", "gpu-run"), help="logs and JSON of each step")
    args = parser.parse_args(argv)
    steps = plan(args.out)
    total = sum(s.limit_s for s in steps)
    assert total <= BUDGET_S, f"the plan's limits add up to {total} s, over the {BUDGET_S} s budget"
    if args.dry_run:
        print(f"# plan: {len(steps)} steps, {total} s of limits (budget {BUDGET_S} s); nothing is run")
        for i, step in enumerate(steps, 1):
            print(f"{i}. {step.name} (limit {step.limit_s} s): {command_line(step)}")
        print(f"# then: a section appended to {args.results}; logs under {args.out}")
        return 0

    import torch

    from operators.loading import cuda_problem

    problem = cuda_problem()
    if problem:
        print(f"benchmarks/gpu.sh: needs a CUDA device, but {problem}; --dry-run prints the plan", file=sys.stderr)
        return 2
    device = f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    os.makedirs(args.out, exist_ok=True)
    results = []
    for i, step in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] {step.name}: {command_line(step)}", flush=True)
        rc, seconds, output = run_step(step, os.path.join(args.out, f"{i}-{step.name.split()[0].lower()}.log"))
        print(f"    exit {'timed out' if rc is None else rc} in {seconds:.0f} s", flush=True)
        results.append((step, rc, seconds, output))
    text = section(device, results)
    with open(args.results, "a", encoding="utf-8") as f:
        f.write("\n" + text)
    print(text)
    return 0 if all(rc == 0 for _, rc, _, _ in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
