"""`taskray serve --task text-classification --model DIR` starts, answers curl, and stops on
SIGINT. It runs in its own process with its own Ray, as a user would start it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.serve.conftest import free_port

START_TIMEOUT_S = 300  # a fresh Ray plus one replica; generous for a loaded 2-core machine


def _taskray() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "taskray")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "pipelines.cli"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_cli_serves_one_task_and_answers_curl(tc_model, tc_op):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "TASKRAY_API_TOKEN")}
    proc = subprocess.Popen(
        [*_taskray(), "serve", "--task", "text-classification", "--model", tc_model,
         "--port", str(port), "--num-cpus", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("ready"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.wait(1):
            assert proc.poll() is None, "taskray serve exited early:\n" + "".join(lines[-40:])
            assert time.monotonic() < deadline, "taskray serve not ready in time:\n" + "".join(lines[-40:])
        assert any(f"http://127.0.0.1:{port}/v1/text-classification" in line for line in lines)

        text = "The quick brown fox jumps over the lazy dog."
        curl = subprocess.run(
            ["curl", "-sS", "--fail-with-body", "--max-time", "60", "-H", "Content-Type: application/json",
             "-d", json.dumps({"inputs": text}), f"http://127.0.0.1:{port}/v1/text-classification"],
            capture_output=True, text=True, timeout=90,
        )
        assert curl.returncode == 0, curl.stdout + curl.stderr
        want = tc_op({"text": [text]})
        got = json.loads(curl.stdout)[0]  # one text: [[{label, score}]], as the HF Inference API
        assert got[0]["label"] == want["label"][0]
        assert got[0]["score"] == pytest.approx(want["score"][0], abs=1e-3)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0, "".join(lines[-40:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
