"""The reference for tasks transformers 5 removed from `pipeline()`: question-answering,
summarization and translation. We run transformers 4.57's own pipelines in a separate
virtualenv and compare taskray's operators against them. The venv holds transformers 4.57 and
the versions of its own dependencies that 4.57 needs; everything else, torch included, it reads
from the test interpreter's environment (a .pth line after its own site-packages), so building
it installs a few small wheels instead of a second torch (14 s instead of about a minute).

The venv lives at $TASKRAY_LEGACY_VENV or <repo>/.cache/transformers-4.57-venv and is reused.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LEGACY_TRANSFORMERS = "transformers==4.57.6"

# Runs inside the legacy venv: one process serves every request of a test session (importing
# torch and transformers costs seconds of CPU per process). A request is one JSON line on stdin:
# one pipeline, its inputs one at a time (as a user would call it); the answer is one line on
# stdout after MARKER. Each request seeds torch afresh and builds its own pipeline, so it sees
# what a fresh process would.
MARKER = "\x1elegacy-pipeline-answer "
_SERVER = r"""
import json, sys, traceback
import torch
import transformers
from transformers import pipeline
MARKER = sys.argv[1]
for line in sys.stdin:
    req = json.loads(line)
    try:
        torch.manual_seed(0)
        pipe = pipeline(req["task"], model=req["model"], device=-1, **req["init_kwargs"])
        out = []
        for item in req["inputs"]:
            if isinstance(item, dict):
                result = pipe(**item, **req["call_kwargs"])
            else:
                result = pipe(item, **req["call_kwargs"])
            out.append(result)
        answer = {"version": transformers.__version__, "outputs": out}
    except Exception:
        answer = {"error": traceback.format_exc()}
    sys.stdout.write(MARKER + json.dumps(answer) + "\n")
    sys.stdout.flush()
"""


def legacy_venv() -> Path:
    """Create (once, under a file lock) and return the transformers 4.57 virtualenv."""
    venv = Path(os.environ.get("TASKRAY_LEGACY_VENV", REPO / ".cache" / "transformers-4.57-venv"))
    python = venv / "bin" / "python"
    marker = venv / ".ready"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(str(venv) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            # The venv's own site-packages come first on its sys.path, the .pth's entry after
            # them: transformers 4.57 and the hub/tokenizers it pins shadow the test
            # environment's, whose torch, numpy, sentencepiece... it uses as they are.
            purelib = subprocess.run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                check=True, capture_output=True, text=True,
            ).stdout.strip()
            Path(purelib, "zz_test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
            pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            # pip warns that the test environment's taskray and sentence-transformers want
            # transformers 5: expected, they are never imported here.
            subprocess.run([*pip, LEGACY_TRANSFORMERS, "sentencepiece", "protobuf"], check=True)
            marker.write_text(LEGACY_TRANSFORMERS + "\n")
    return venv


class LegacyPipelines:
    """The legacy venv's pipeline server, started on the first request; `close()` ends it."""

    def __init__(self, timeout_s: float = 600) -> None:
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._lock = threading.Lock()
        self._lines: queue.Queue[str | None] = queue.Queue()

    def __call__(
        self,
        task: str,
        model_dir: str,
        inputs: list[Any],
        *,
        call_kwargs: dict[str, Any] | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        """Outputs of transformers 4.57's `pipeline(task, model=model_dir)` on each input.

        Inputs are JSON values: a str, or a dict of keyword arguments (QA: question, context).
        """
        request = {
            "task": task,
            "model": model_dir,
            "inputs": inputs,
            "call_kwargs": call_kwargs or {},
            "init_kwargs": init_kwargs or {},
        }
        with self._lock:
            proc = self._started()
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            result = json.loads(self._answer(proc))
        if "error" in result:
            raise RuntimeError(f"legacy pipeline failed:\n{result['error'][-4000:]}")
        assert result["version"] == LEGACY_TRANSFORMERS.split("==")[1], result["version"]
        return result["outputs"]

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()  # it holds no state worth a clean exit
            self._proc.wait()
            self._proc.stdin.close()
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _started(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self.close()
        venv = legacy_venv()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: nothing has to drain it
        self._proc = subprocess.Popen(
            [str(venv / "bin" / "python"), "-u", "-c", _SERVER, MARKER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env,
        )  # fmt: skip
        self._lines = queue.Queue()
        threading.Thread(target=_read_lines, args=(self._proc.stdout, self._lines), daemon=True).start()
        return self._proc

    def _answer(self, proc: subprocess.Popen) -> str:
        """The answer line; anything else a library prints to stdout is skipped."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                proc.kill()
                raise RuntimeError(f"legacy pipeline gave no answer in {self.timeout_s}s:\n{self._stderr_tail()}") from None
            if line is None:
                raise RuntimeError(f"legacy pipeline exited ({proc.wait()}):\n{self._stderr_tail()}")
            if line.startswith(MARKER):
                return line[len(MARKER):]

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]


def _read_lines(stream, lines: "queue.Queue[str | None]") -> None:
    """stdout's lines into `lines`, then None at EOF (a thread: reads block)."""
    for line in stream:
        lines.put(line)
    lines.put(None)
