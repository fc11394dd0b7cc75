"""The fingerprint of a job: what determines its outputs, so that a resume can tell whether the
output it finds was written by the same job.

    fp = job_fingerprint(spec, source)          # a JSON-able dict
    differences(old_fp, fp)                     # ["tasks.translation.options.tgt_lang: 'de' -> 'fr'", ...]

It holds the taskray version, the input (resolved URIs, format, id column, kept columns,
limit) and per task: the task id, its options, its column mapping, the model id, revision and
dtype, and a digest that identifies the model's files (`model_digest`). What only changes how
fast the job runs (actor counts, batch sizes, block sizes, threads, micro-batch budgets,
attention kernel, compilation) is left out, so a resume may change it. The kernel and batch
composition move float results in the last places, as batch size does; the answers are the same.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.sources import SourcePlan
    from pipelines.spec import JobSpec, TaskSpec

# Operator options that size or speed up the work without changing what it computes.
EXECUTION_OPTIONS = frozenset(
    {"max_batch_rows", "batch_budget", "max_batch_pixels", "max_batch_samples", "attn_implementation", "torch_compile"}
)
# Files up to this size are hashed whole (configs, tokenizers, small weights).
WHOLE_FILE_BYTES = 16 * 1024 * 1024
SAMPLE_BYTES = 64 * 1024
SAMPLES = 8
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def job_fingerprint(spec: "JobSpec", source: "SourcePlan") -> dict[str, Any]:
    import json

    from pipelines.manifest import versions
    from pipelines.storage import resolve

    fingerprint = {
        "taskray": versions()["taskray"],
        "input": {
            "uris": [resolve(u, spec.storage).uri for u in spec.input],
            "format": source.format,
            "id_column": source.id_column,
            "keep_columns": list(spec.keep_columns),
            "limit": spec.limit,
        },
        "tasks": {t.column_prefix: task_fingerprint(t) for t in spec.tasks},
    }
    if spec.output_format != "parquet":
        # Only when not the default: Parquet outputs of earlier versions recorded no format,
        # and a resume of one must still match. The formats lay the output out differently.
        fingerprint["output_format"] = spec.output_format
    return json.loads(json.dumps(fingerprint))  # as it reads back from the output: lists, not tuples


def task_fingerprint(task: "TaskSpec") -> dict[str, Any]:
    from operators import get_operator

    # The options as the operator reads them, defaults included: top_k=5 given or defaulted
    # is the same job.
    options = get_operator(task.task).Options(**task.options).model_dump(mode="json")
    return {
        "task": task.task,
        "options": {k: v for k, v in sorted(options.items()) if k not in EXECUTION_OPTIONS},
        "columns": task.role_columns(),
        "model": task.model,
        "revision": task.revision,
        "dtype": task.dtype,
        "model_digest": model_digest(task.model, task.revision),
    }


def model_digest(model: str, revision: str | None = None) -> str | None:
    """`commit:<sha>` for a hub model whose snapshot is in the local cache (or a revision that
    is a commit), `files:<sha256>` for a local directory, None when neither can be known."""
    if os.path.isdir(model):
        return "files:" + directory_digest(model)
    if revision and _COMMIT.match(revision):
        return f"commit:{revision}"
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(model, "config.json", revision=revision)
    except Exception:  # not a valid repo id, no cache: the digest is just unknown
        return None
    if isinstance(path, str):
        parts = os.path.normpath(path).split(os.sep)
        if "snapshots" in parts and parts.index("snapshots") + 1 < len(parts):
            commit = parts[parts.index("snapshots") + 1]
            if _COMMIT.match(commit):
                return f"commit:{commit}"
    return None


def directory_digest(root: str) -> str:
    """A digest of a model directory that tells a different model apart without reading GBs.

    Each file's relative path and size go in. Files up to WHOLE_FILE_BYTES (configs,
    tokenizers, generation settings, small weights) are hashed whole. Larger ones (weights)
    contribute their safetensors header (every tensor's name, dtype, shape and offsets) and
    SAMPLES evenly spaced SAMPLE_BYTES slices of the data: a fine-tuned or retrained checkpoint
    has the same header and size as its base, but different values almost everywhere, so the
    samples catch it. That reads under 1 MiB per weight file. Modification times are left out:
    a copy of the same model must give the same digest.
    """
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # .cache, .git
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            size = os.path.getsize(path)
            digest.update(f"{os.path.relpath(path, root)}\0{size}\0".encode())
            with open(path, "rb") as f:
                if size <= WHOLE_FILE_BYTES:
                    digest.update(f.read())
                    continue
                if name.endswith(".safetensors"):
                    header_len = int.from_bytes(f.read(8), "little")
                    digest.update(f.read(min(header_len, size - 8)))
                for i in range(SAMPLES):
                    f.seek((size - SAMPLE_BYTES) * i // (SAMPLES - 1))
                    digest.update(f.read(SAMPLE_BYTES))
    return digest.hexdigest()


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The fields that differ, as `dotted.path: old -> new`. An unknown model digest (None) on
    either side is not a difference: the hub cache may be gone on the machine that resumes."""
    a, b = _flatten(old), _flatten(new)
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if key.endswith(".model_digest") and (va is None or vb is None):
            continue
        if va != vb:
            out.append(f"{key}: {_show(va)} -> {_show(vb)}")
    return out


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _show(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
