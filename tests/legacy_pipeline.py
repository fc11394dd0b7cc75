"""The reference for tasks transformers 5 removed from `pipeline()`: question-answering,
summarization and translation. We run transformers 4.57's own pipelines in a separate
virtualenv (torch installs from local disk, so building it takes about a minute, once) and
compare taskray's operators against them.

The venv lives at $TASKRAY_LEGACY_VENV or <repo>/.cache/transformers-4.57-venv and is reused.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LEGACY_TRANSFORMERS = "transformers==4.57.6"
LEGACY_TORCH = "torch==2.13.0"

# Runs inside the legacy venv: one pipeline, inputs one at a time (as a user would call it).
_RUNNER = r"""
import json, sys
import torch
torch.manual_seed(0)
from transformers import pipeline
req = json.load(sys.stdin)
pipe = pipeline(req["task"], model=req["model"], device=-1, **req["init_kwargs"])
out = []
for item in req["inputs"]:
    if isinstance(item, dict):
        result = pipe(**item, **req["call_kwargs"])
    else:
        result = pipe(item, **req["call_kwargs"])
    out.append(result)
json.dump({"version": __import__("transformers").__version__, "outputs": out}, sys.stdout)
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
            pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            subprocess.run([*pip, LEGACY_TORCH], check=True)
            subprocess.run([*pip, LEGACY_TRANSFORMERS, "sentencepiece", "protobuf"], check=True)
            marker.write_text(LEGACY_TRANSFORMERS + "\n")
    return venv


def run_legacy_pipeline(
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
    venv = legacy_venv()
    request = {
        "task": task,
        "model": model_dir,
        "inputs": inputs,
        "call_kwargs": call_kwargs or {},
        "init_kwargs": init_kwargs or {},
    }
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", _RUNNER],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"legacy pipeline failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout)
    assert result["version"] == LEGACY_TRANSFORMERS.split("==")[1], result["version"]
    return result["outputs"]
