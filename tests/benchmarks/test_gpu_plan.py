"""The prepared GPU run (benchmarks/gpu.sh) on a machine without a GPU: its dry mode prints the
plan and runs nothing, a real run refuses at once naming the torch build, the RESULTS.md section
records each step's outcome, and the full-batch step runs its DETR family end to end."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from benchmarks import gpu

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path):
    results, out = tmp_path / "RESULTS.md", tmp_path / "out"
    proc = subprocess.run(
        ["bash", "benchmarks/gpu.sh", "--dry-run", "--results", str(results), "--out", str(out)],
        # timeout: a hang only; this worker runs at SCHED_IDLE (tests/conftest.py), after the Ray tests
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    steps = [line for line in lines if line[:2] in {f"{i}." for i in range(1, 10)}]
    assert len(steps) == 5 and f"{gpu.BUDGET_S} s" in lines[0], proc.stdout
    assert "-m pytest -q -m gpu" in steps[0] and "benchmarks.full_batches --device cuda" in steps[1]
    for step, workload in zip(steps[2:], ("embed-text", "classify-images", "asr")):
        assert f"benchmarks.run --workload {workload}" in step
    assert not results.exists() and not out.exists(), "a dry run writes nothing"


def test_the_plan_fits_eight_minutes():
    assert sum(s.limit_s for s in gpu.plan("/tmp/x")) <= gpu.BUDGET_S <= 8 * 60


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_real_run_without_cuda_exits_2_naming_the_torch_build(tmp_path, capsys):
    assert gpu.main(["--results", str(tmp_path / "R.md"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"torch {torch.__version__}" in err and "--dry-run" in err
    assert not (tmp_path / "R.md").exists()


def test_the_section_records_each_step():
    steps = gpu.plan("/tmp/x")
    results = [
        (steps[0], 0, 95.2, "...\n= 30 passed in 90.1s =\n"),
        (steps[2], 1, 110.0, "noise\n| competitor | items/s |\n  AGREEMENT FAIL: embed-text: ...\n"),
        (steps[4], None, 75.0, "| asr | 1 |\n"),
    ]
    text = gpu.section("NVIDIA H100, torch 2.14", results)
    assert text.startswith("## GPU run, ") and "(NVIDIA H100, torch 2.14)" in text.splitlines()[0]
    assert "| gpu tests | `python -m pytest -q -m gpu" in text and "| 0 | 95 (150) |" in text
    assert "| 1 | 110 (120) |" in text and "| timed out | 75 (75) |" in text
    assert "= 30 passed in 90.1s =" in text and "  AGREEMENT FAIL: embed-text: ..." in text and "noise" not in text


def test_full_batches_runs_detr_through_its_operator(tmp_path):
    from benchmarks.full_batches import run_family

    rows = run_family("detr", "cpu", 3, str(tmp_path))
    assert [r["dtype"] for r in rows] == ["float32", "float32"]  # auto is float32 on the CPU
    for r in rows:
        assert r["rows"] == 3 and r["row_errors"] == 0 and r["micro_batches"] >= 1 and r["largest_micro_batch"] >= 1
        assert r["equal_to_float32"] == 1.0
