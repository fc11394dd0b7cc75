"""Tiny random models built offline from small configs, with locally trained tokenizers.

They power the offline demo and the test suite: nothing here touches a hub. Each builder
writes a complete model directory (safetensors weights, config, tokenizer or processor) that
`transformers.pipeline(task, model=dir)` and taskray's operators load alike.

    from tiny_models import build_tiny_model
    path = build_tiny_model("text-classification", "/tmp/models")
"""

from __future__ import annotations

import os
import shutil
from importlib import import_module
from typing import Callable

# task id -> (module, builder function name); builders take the output directory.
_BUILDERS: dict[str, tuple[str, str]] = {
    "text-classification": ("text", "build_text_classification"),
    "token-classification": ("text", "build_token_classification"),
    "question-answering": ("text", "build_question_answering"),
    "feature-extraction": ("text", "build_feature_extraction"),
    "text-generation": ("generation", "build_text_generation"),
    "summarization": ("generation", "build_summarization"),
    "translation": ("generation", "build_translation"),
    "image-classification": ("vision", "build_image_classification"),
    "object-detection": ("vision", "build_object_detection"),
    "image-segmentation": ("vision", "build_image_segmentation"),
    "depth-estimation": ("vision", "build_depth_estimation"),
    "audio-classification": ("audio", "build_audio_classification"),
    "automatic-speech-recognition": ("audio", "build_speech_recognition"),
}


def tiny_model_tasks() -> list[str]:
    return sorted(_BUILDERS)


def build_tiny_model(task: str, root: str, *, variant: str | None = None) -> str:
    """Build (once) the tiny model for `task` under `root` and return its directory.

    `variant` selects an alternative family where a task has several (e.g. "convnext").
    A directory that already holds a config.json is reused.
    """
    if task not in _BUILDERS:
        raise ValueError(f"no tiny model for task {task!r}; known: {', '.join(tiny_model_tasks())}")
    name = task if variant is None else f"{task}-{variant}"
    module, fn = _BUILDERS[task]
    builder: Callable[..., str] = getattr(import_module(f"{__name__}.{module}"), fn)
    if variant is None:
        return build_once(os.path.join(root, name), builder)
    return build_once(os.path.join(root, name), lambda tmp: builder(tmp, variant=variant))


def build_once(out: str, builder: Callable[[str], str]) -> str:
    """Run `builder` into a temporary directory and move it to `out`, unless `out` already
    holds a config.json (then it is reused). Processes that share `out`'s parent (the test
    suite's workers) build each model once: the build holds a lock file beside it."""
    import fcntl

    if os.path.exists(os.path.join(out, "config.json")):
        return out
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(out, "config.json")):
            return out  # another process built it while this one waited
        tmp = out + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)  # what an interrupted build left
        os.makedirs(tmp)
        builder(tmp)
        if not os.path.exists(out):
            os.replace(tmp, out)
    return out
