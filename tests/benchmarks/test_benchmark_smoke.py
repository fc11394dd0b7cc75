"""The benchmark harness end to end at a tiny size: every workload, every competitor, taskray
as the command a user types. Checks that it runs and reports what it should, never its speed,
and that a run whose results leave the references exits non-zero (a tampered reference)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks.measure import Measurement, PeakRss, busy_seconds, device_utilisation, run_command, spilled_bytes_from_logs
from benchmarks.run import AGREEMENT_BARS, agreement, agreement_failures, agreement_lines, table, target_lines

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALL = ["forward only", "pipeline bs=1", "pipeline bs=2", "sentence-transformers", "naive Ray Data", "taskray run"]
# What a user types: nothing that sizes the job.
USER_FLAGS = {"--task", "--model", "--input", "--output", "--id-column"}


def start_bench(tmp_path, name: str, *args: str) -> tuple[subprocess.Popen, str]:
    out = tmp_path / f"{name}.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.run", "--rows", "4", "--batch-sizes", "1,2",
         "--json", str(out), "--work-dir", str(tmp_path / name), *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    return proc, str(out)


def finish_bench(started: tuple[subprocess.Popen, str], returncode: int = 0) -> tuple[dict, str]:
    proc, out = started
    # Each Ray competitor is a command that starts its own Ray and worker processes, which
    # import torch: the timeout bounds a hang, it is not a speed target.
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == returncode, stdout[-3000:] + stderr[-3000:]
    return json.loads(open(out).read()), stdout


@pytest.mark.ray
@pytest.mark.timeout(840)
def test_every_workload_runs_every_competitor(tmp_path):
    # embed-text with all six; the media workloads without naive Ray Data (the same script
    # with the workload's decode, which the in-process pipeline runs too), to keep the test
    # to four Ray jobs. The media run compares with a tampered reference (its first item
    # changed): the agreement gate must fail it.
    # The two runs side by side: each runs its commands one after another, and each command
    # waits on its own start-up (Ray's, the actors') much of the time; nothing here reads their
    # speed. One after the other they took some 110 s of the suite's longest path, one core busy.
    text_run = start_bench(tmp_path, "text", "--workload", "embed-text")
    media_run = start_bench(
        tmp_path, "media", "--workload", "classify-images,asr", "--competitors", "forward,pipeline,taskray",
        "--tamper-reference",
    )
    try:
        text, text_out = finish_bench(text_run)
        media, media_out = finish_bench(media_run, returncode=1)
    finally:
        for proc, _ in (text_run, media_run):  # the other run, when one failed
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    runs = {**text["workloads"], **media["workloads"]}
    assert list(runs) == ["embed-text", "classify-images", "asr"]
    for name, run in runs.items():
        results = {r["competitor"]: r for r in run["results"]}
        expected = ALL if name == "embed-text" else [c for c in ALL if c not in ("sentence-transformers", "naive Ray Data")]
        assert list(results) == expected, name
        for r in results.values():
            assert r["items"] == 4 and r["seconds"] > 0 and r["items_per_s"] > 0, (name, r)
            assert r["peak_rss_bytes"] > 50 * 2**20, (name, r)  # a Python process with torch loaded
        taskray = results["taskray run"]
        command = taskray["config"]["command"].split()
        assert command[1] == "run" and {a for a in command if a.startswith("--")} == USER_FLAGS, command
        assert taskray["config"]["spec"]["tasks"][0]["model"] in command
        assert taskray["config"]["picks"], taskray["config"]  # what --dry-run says it picked
        assert taskray["spilled_bytes"] == 0 and taskray["device_utilisation"] is None
        # the job's own wall time is inside the command's, which adds the interpreter and Ray
        assert 0 < taskray["config"]["job_wall_s"] < taskray["seconds"]
        # the first output file comes after the start-up, inside the run's own time
        assert 0 < taskray["first_output_s"] < taskray["seconds"], taskray
        # the tree sampler saw the command's Ray processes, not just the command
        assert taskray["peak_rss_bytes"] > results["pipeline bs=1"]["peak_rss_bytes"]
        assert taskray["config"]["dtype"] == "float32"  # from _SUCCESS: the CPU's auto
        agrees, failures = taskray["config"]["agrees_with_pipeline"], run["agreement_failures"]
        if name == "embed-text":  # the same work: taskray's results match the pipeline's
            assert agrees == 1.0 and not failures, (taskray["config"], failures)
        else:
            # The tampered first item can match no result: the gate names it and the run exits 1.
            assert agrees <= 0.75 and failures and "with pipeline" in failures[0], (name, agrees, failures)
            if name == "classify-images":
                assert agrees == 0.75  # the other three labels equal the pipeline's
            assert f"AGREEMENT FAIL: {name}: taskray's share of equal" in media_out
        assert f"### {name}" in text_out + media_out
    text_results = {r["competitor"]: r for r in runs["embed-text"]["results"]}
    taskray = text_results["taskray run"]
    assert taskray["config"]["agrees_with_sentence_transformers"] == 1.0
    assert taskray["config"]["min_cosine_with_sentence_transformers"] >= AGREEMENT_BARS["float32"]["embed-text"]
    assert taskray["config"]["min_cosine_with_pipeline"] >= AGREEMENT_BARS["float32"]["embed-text"]
    naive = text_results["naive Ray Data"]
    assert naive["spilled_bytes"] == 0 and 0 < naive["device_utilisation"] <= 1, naive
    assert 0 < naive["first_output_s"] < naive["seconds"], naive
    assert text_results["sentence-transformers"]["setup_seconds"] > 0
    for line in ("taskray vs best pipeline", "taskray vs sentence-transformers", "taskray vs forward only"):
        assert line in text_out
    assert "taskray vs best pipeline" in media_out


def test_ratios_and_targets_are_taskray_over_competitor():
    results = [
        Measurement("pipeline bs=1", 100, 10.0),
        Measurement("pipeline bs=8", 100, 4.0),
        Measurement("forward only", 100, 2.0),
        Measurement("taskray run", 100, 2.5),
    ]
    results.insert(3, Measurement("sentence-transformers", 100, 3.0))
    text = table("embed-text", results)
    assert "| pipeline bs=8 | 25.0 | 4.0 | - |" in text and "| 1.60x |" in text
    lines = target_lines("embed-text", results)
    assert lines[0].startswith("  taskray vs best pipeline (pipeline bs=8): 1.60x") and lines[0].endswith("PASS")
    assert lines[1].startswith("  taskray vs sentence-transformers (sentence-transformers): 1.20x")
    assert lines[1].endswith("target >= 1.3x -> FAIL")
    assert lines[2].startswith("  taskray vs forward only (forward only): 0.80x") and lines[2].endswith("FAIL")
    results[-1].config = {"agrees_with_pipeline": 1.0, "agrees_with_sentence_transformers": 0.5}
    assert agreement_lines(results) == [
        "  taskray agrees with pipeline on 100.0% of items",
        "  taskray agrees with sentence-transformers on 50.0% of items",
    ]


def test_agreement_gate_bars_follow_the_dtype():
    def run(config: dict) -> list:
        return [Measurement("pipeline bs=1", 4, 1.0), Measurement("taskray run", 4, 1.0, config=config)]

    exact = {"dtype": "float32", "min_cosine_with_pipeline": 0.99995, "min_cosine_with_sentence_transformers": 0.9999}
    assert agreement_failures("embed-text", run(exact)) == []
    low = agreement_failures("embed-text", run({**exact, "min_cosine_with_pipeline": 0.9995}))
    assert low == ["embed-text: taskray's lowest embedding cosine with pipeline is 0.9995, below the bar 0.9999 (float32)"]
    assert agreement_failures("embed-text", run({**exact, "dtype": "bfloat16", "min_cosine_with_pipeline": 0.9995})) == []
    assert agreement_failures("asr", run({"dtype": "float32", "agrees_with_pipeline": 0.999}))  # one transcript off
    assert agreement_failures("classify-images", run({"dtype": "bfloat16", "agrees_with_pipeline": 0.98})) == []
    assert agreement_failures("classify-images", run({"dtype": "bfloat16", "agrees_with_pipeline": 0.9}))
    assert agreement_failures("asr", [Measurement("pipeline bs=1", 4, 1.0)]) == []  # no taskray run, nothing to judge


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


def test_run_command_times_the_command_and_its_first_output_file(tmp_path):
    out = tmp_path / "out"
    # a marker file at once (not data), the data file later, then exit
    code = (
        "import os, sys, time; d = sys.argv[1]; os.makedirs(d); open(os.path.join(d, '_job.json'), 'w').close(); "
        "time.sleep(0.6); open(os.path.join(d, 'part-0.parquet'), 'w').close(); time.sleep(0.4); print('done')"
    )
    run = run_command([sys.executable, "-c", code, str(out)], output_dir=str(out), log_path=str(tmp_path / "log"))
    assert 0.6 <= run.first_output_s < run.seconds and run.spilled_bytes == 0
    assert (tmp_path / "log").read_text() == "done\n"
    with pytest.raises(RuntimeError, match="exited with 3:\nbad input"):
        run_command(
            [sys.executable, "-c", "import sys; print('bad input'); sys.exit(3)"],
            output_dir=str(out), log_path=str(tmp_path / "log2"),
        )


def test_spilled_bytes_are_the_raylets_largest_logged_total(tmp_path):
    logs = tmp_path / "ray" / "session_1" / "logs"
    logs.mkdir(parents=True)
    (logs / "raylet.out").write_text(
        "[2026-12-06 05:00:00,000 I 1 1] local_object_manager.cc:1: Spilled 12 MiB, 3 objects, write throughput 400 MiB/s\n"
        "[2026-12-06 05:00:01,000 I 1 1] local_object_manager.cc:1: Spilled 40 MiB, 9 objects, write throughput 380 MiB/s\n"
    )
    assert spilled_bytes_from_logs(str(tmp_path)) == 40 * 2**20
    (logs / "raylet.out").write_text("[2026-12-06 05:00:00,000 I 1 1] raylet started\n")
    assert spilled_bytes_from_logs(str(tmp_path)) == 0
