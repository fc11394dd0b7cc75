"""`taskray submit` against a real local Ray head (`ray start --head`, dashboard + Jobs API):
the job ships this checkout, runs `taskray run`, streams its logs and sets the exit code."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import requests
import yaml

from tests.cluster.local_head import BIN, LocalRayHead, free_port
from tests.operators.texts import VARIED_TEXTS

pytestmark = pytest.mark.ray

SUBMIT_TIMEOUT_S = 240  # one tiny job on 2 shared cores; the head is already up


@pytest.fixture(scope="module")
def head():
    # 4 logical CPUs (on 2 cores); the job's actors are sized to leave room for its read and
    # write tasks (pipelines/hardware.py).
    h = LocalRayHead(num_cpus=4)
    try:
        h.start()
        yield h
    finally:
        h.stop()  # also when start() or a test fails: only this head's processes


@pytest.fixture
def tiny_job(tmp_path, tiny_model):
    rows = [{"id": f"r{i}", "text": VARIED_TEXTS[i % len(VARIED_TEXTS)]} for i in range(24)]
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    job = tmp_path / "job.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "input": str(data),
                "output": str(out),
                "block_rows": 8,
                "tasks": [{"task": "text-classification", "model": tiny_model("text-classification"), "batch_size": 8}],
            }
        )
    )
    return job, out, len(rows)


def _job_id(stdout: str) -> str:
    match = re.search(r"job (taskray-run-\S+) submitted", stdout)
    assert match, f"no job id in:\n{stdout}"
    return match.group(1)


def test_submit_runs_a_job_and_exits_0(head, tiny_job):
    job, out, n_rows = tiny_job
    proc = head.taskray("submit", "--address", head.address, "--no-pip", "--", "run", str(job), timeout_s=SUBMIT_TIMEOUT_S)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    job_id = _job_id(proc.stdout)
    assert f"job {job_id} SUCCEEDED" in proc.stdout, log
    # The job's own output streamed back: `taskray run`'s summary table.
    assert re.search(rf"rows total\s+{n_rows}\b", proc.stdout), log
    # The job file lives outside the shipped checkout: it goes by absolute path, with a warning.
    assert "is not shipped with the job" in proc.stderr, log

    manifest = json.loads((out / "_SUCCESS").read_text())
    assert manifest["rows"] == {"total": n_rows, "ok": n_rows, "failed": 0}

    # The job ran from an uploaded copy of this checkout, not from the local directory.
    info = requests.get(
        f"{head.address}/api/jobs/{job_id}",
        headers={"Authorization": f"Bearer {head.env['RAY_AUTH_TOKEN']}"},
        timeout=30,
    ).json()
    assert info["status"] == "SUCCEEDED"
    assert info["entrypoint"] == f"python -m pipelines.cli run {job}"
    assert info["runtime_env"]["working_dir"].startswith("gcs://_ray_pkg_"), info["runtime_env"]
    assert ".venv" in info["runtime_env"]["excludes"] and ".git" in info["runtime_env"]["excludes"]


def test_failed_job_exits_1_with_its_error(head, tmp_path, tiny_model):
    proc = head.taskray(
        "submit", "--address", head.address, "--no-pip", "--",
        "run", "--task", "text-classification", "--model", tiny_model("text-classification"),
        "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "out"),
        timeout_s=SUBMIT_TIMEOUT_S,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log
    assert re.search(r"job taskray-run-\S+ FAILED", proc.stdout), log
    assert "missing.jsonl" in proc.stdout, log  # `taskray run`'s own message reached us


def test_unreachable_address_fails_clearly():
    port = free_port()  # nothing listens there
    proc = subprocess.run(
        [os.path.join(BIN, "taskray"), "submit", "--address", f"http://127.0.0.1:{port}", "--no-pip", "--", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"cannot reach the Ray Jobs API at http://127.0.0.1:{port}" in proc.stderr
