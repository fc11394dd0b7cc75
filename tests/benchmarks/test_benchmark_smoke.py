"""The benchmark harness end to end at a tiny size: every workload, every competitor, one
Ray. Checks that it runs and reports what it should, never its speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks.run import agreement, table, target_lines
from benchmarks.measure import Measurement, PeakRss, busy_seconds, device_utilisation, first_forward_s

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPETITORS = ["forward only", "pipeline bs=1", "pipeline bs=2", "naive Ray Data", "taskray run"]


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_every_workload_runs_every_competitor(tmp_path):
    out = tmp_path / "bench.json"
    # Six Ray jobs, each starting its own worker processes, which import torch and (with
    # torchvision installed) torchvision: a bound against a hang, not a speed target.
    # A subprocess: the harness starts and stops its own Ray, which must not meet a Ray
    # that another test of this session started.
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--rows", "4", "--batch-sizes", "1,2",
         "--block-rows", "2", "--json", str(out), "--work-dir", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=570,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["workloads"]) == {"embed-text", "classify-images", "asr"}
    assert report["ray_startup_s"] > 0
    for name, run in report["workloads"].items():
        results = {r["competitor"]: r for r in run["results"]}
        assert list(results) == COMPETITORS, name
        for r in results.values():
            assert r["items"] == 4 and r["seconds"] > 0 and r["items_per_s"] > 0, (name, r)
            assert r["peak_rss_bytes"] > 50 * 2**20, (name, r)  # a Python process with torch loaded
        taskray = results["taskray run"]
        assert taskray["spilled_bytes"] == 0 and results["naive Ray Data"]["spilled_bytes"] == 0
        assert 0 < taskray["device_utilisation"] <= 1, taskray
        # start-up is paid before the first forward call, inside the run's own time
        for ray_run in (taskray, results["naive Ray Data"]):
            assert 0 < ray_run["first_forward_s"] < ray_run["seconds"], ray_run
        # the same work: taskray's results match the pipeline's on these items. The tiny random
        # CTC model sits near argmax ties, so its transcripts can flip with the torch thread
        # count (the forward actor runs 1 thread, the in-process pipeline 2; seen once in a
        # CI run: 1 of 2 clips). Exact ASR parity is tested with fixed threads in
        # tests/operators/test_speech_recognition.py; here the harness must still compute it.
        agrees = taskray["config"]["agrees_with_pipeline"]
        if name == "asr":
            assert 0.0 <= agrees <= 1.0, (name, taskray["config"])
        else:
            assert agrees == 1.0, (name, taskray["config"])
        assert f"### {name}" in proc.stdout
    assert "taskray vs best pipeline" in proc.stdout
    # the tree sampler saw Ray's worker processes, not just the driver
    assert results["taskray run"]["peak_rss_bytes"] > results["pipeline bs=1"]["peak_rss_bytes"]


def test_ratios_and_targets_are_taskray_over_competitor():
    results = [
        Measurement("pipeline bs=1", 100, 10.0),
        Measurement("pipeline bs=8", 100, 4.0),
        Measurement("forward only", 100, 2.0),
        Measurement("taskray run", 100, 2.5),
    ]
    text = table("embed-text", results)
    assert "| pipeline bs=8 | 25.0 | 4.0 | - |" in text and "| 1.60x |" in text
    lines = target_lines("embed-text", results)
    assert lines[0].startswith("  taskray vs best pipeline (pipeline bs=8): 1.60x") and lines[0].endswith("PASS")
    assert lines[1].startswith("  taskray vs forward only (forward only): 0.80x") and lines[1].endswith("PASS")


def test_agreement_counts_matching_items():
    assert agreement("embed-text", [[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.001], [1.0, 0.0]]) == 0.5
    assert agreement("asr", ["A", "B", "C", "D"], ["A", "B", "X", "D"]) == 0.75


def test_peak_rss_sees_child_processes(tmp_path):
    # A child holding ~200 MiB must raise the tree's peak above the parent's own RSS.
    code = "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    with PeakRss(interval_s=0.05) as alone:
        pass
    with PeakRss(interval_s=0.05) as with_child:
        subprocess.run([sys.executable, "-c", code], check=True)
    assert with_child.bytes - alone.bytes > 150 * 2**20


def test_device_utilisation_uses_each_actors_last_record(tmp_path):
    path = tmp_path / "clock.jsonl"
    records = [
        {"pid": 1, "forward_s": 1.0, "wall_s": 4.0, "spans": [[10.0, 1.0]]},
        {"pid": 1, "forward_s": 3.0, "wall_s": 6.0, "spans": [[10.0, 1.0], [12.0, 2.0]]},
        {"pid": 2, "forward_s": 1.0, "wall_s": 4.0, "spans": [[10.0, 1.0]]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert device_utilisation(str(path)) == pytest.approx(4.0 / 10.0)
    assert device_utilisation(str(tmp_path / "missing.jsonl")) is None


def test_overlapping_forward_calls_count_once():
    # forward_calls=2: two calls in flight at once keep the device busy, not twice as busy
    assert busy_seconds([(10.0, 2.0), (11.0, 2.0), (20.0, 1.0), (20.5, 0.2)]) == pytest.approx(4.0)
    assert busy_seconds([]) == 0.0


def test_first_forward_is_the_earliest_call_of_any_actor(tmp_path):
    path = tmp_path / "clock.jsonl"
    records = [
        {"pid": 1, "forward_s": 1.0, "wall_s": 4.0, "spans": [[1012.0, 1.0]]},
        {"pid": 1, "forward_s": 2.0, "wall_s": 6.0, "spans": [[1012.0, 1.0], [1014.0, 1.0]]},
        {"pid": 2, "forward_s": 1.0, "wall_s": 4.0, "spans": [[1011.5, 1.0]]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert first_forward_s(str(path), started_epoch=1000.0) == pytest.approx(11.5)
    assert first_forward_s(str(tmp_path / "missing.jsonl"), 1000.0) is None
