"""The oracle of the Serve tests: what `transformers.pipeline` returns for each task's inputs
(4.57's pipeline for question-answering, summarization and translation, run by the
`legacy_pipeline` fixture), and one comparison that reads the Serve encodings (base64 PNG
masks and depth maps) and the client library's objects against it.

Each task's endpoint in the session Serve app uses ENDPOINT_OPTIONS; the pipeline gets the
same values as call arguments, plus the endpoint defaults of pipelines/serve/codec.py
(the operators' endpoint_defaults) where they differ from the pipeline's.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from tests.operators import images, sounds
from tests.operators.texts import VARIED_TEXTS

# Scores and vectors are fp32 on CPU in both processes, but the server batches rows
# differently from the pipeline's one-at-a-time calls, so padding changes the summation
# order; the tiny classifier heads magnify that rounding (1.3e-4 seen in CI; see
# tests/operators/test_text_classification.py), hence 1e-3 absolute.
FLOAT_TOL = 1e-3
# Boxes are whole pixels truncated toward zero, as the pipeline's box.int(); a coordinate in
# float noise of an integer may land one pixel apart.
BOX_TOL = 1
# Masks are thresholded logits; a pixel whose logit sits within float noise of the threshold
# may flip between batchings (tests/operators/test_image_segmentation.py measured 0 pixels).
MASK_PIXEL_TOL = 0.01

# The tiny DETR's and Mask2Former's scores are 0.3-0.97 and 0.3-0.5: the pipeline's default
# thresholds (0.5, 0.9) would leave few or no objects to compare.
ENDPOINT_OPTIONS: dict[str, dict[str, Any]] = {
    "object-detection": {"threshold": 0.3},
    "image-segmentation": {"threshold": 0.3},
}
# text-generation samples by default (seeded per row by taskray, not as pipeline() seeds):
# parity is checked greedy. return_full_text=False is the endpoint's default (TextGenerationOperator.endpoint_defaults).
REQUEST_PARAMETERS: dict[str, dict[str, Any]] = {"text-generation": {"do_sample": False}}
# taskray-only options of the endpoints (the pipeline has no such keyword). None now: DETR's
# padded buckets (max_padding) are opt-in, so the endpoints batch images of one exact size and
# each request gets its image-alone answer with the default options.
ENDPOINT_ONLY_OPTIONS: dict[str, dict[str, Any]] = {}
PIPELINE_KWARGS: dict[str, dict[str, Any]] = {
    **ENDPOINT_OPTIONS,
    "text-generation": {"do_sample": False, "return_full_text": False},
    # the endpoint's top 5; transformers 5's pipeline call returns every label unless told
    "audio-classification": {"top_k": 5},
}
LEGACY_TASKS = {"question-answering": "question-answering", "summarization": "summarization",
                "translation": "translation_en_to_de"}  # the tiny T5's first translation entry

QA_INPUTS = [
    {"question": "What does the import statement do?",
     "context": "The import statement combines two operations: it searches for the named module, then binds it."},
    {"question": "What chains?", "context": "Comparison operators chain arbitrarily."},
    {"question": "When are exceptions raised?",
     "context": "Exceptions are raised when an error is detected during execution."},
]


def clips() -> list[np.ndarray]:
    return [sounds.clip(seed, s) for seed, s in enumerate((0.3, 1.1, 0.6))]


def raw_inputs(roles: tuple[str, ...]) -> tuple[list, str | None]:
    """Varied inputs as the endpoint takes them (file bytes for media), and the raw-body
    media type for single-media tasks."""
    if roles == ("question", "context"):
        return QA_INPUTS, None
    if roles == ("text",):
        return VARIED_TEXTS[:4], None
    if roles == ("image",):
        return images.varied_images()[:3], "image/png"
    if roles == ("audio",):
        # WAV float32: the bytes decode to exactly the arrays the pipeline gets.
        return [sounds.encode(c) for c in clips()], "audio/wav"
    raise AssertionError(f"no test inputs for roles {roles}")


@dataclass
class Reference:
    inputs: list  # as the endpoint takes them
    media_type: str | None
    single: Any  # pipeline(inputs[0])
    many: Any  # pipeline(inputs)


def pipeline_reference(task: str, model_dir: str, roles: tuple[str, ...], legacy_pipeline) -> Reference:
    inputs, media_type = raw_inputs(roles)
    kwargs = PIPELINE_KWARGS.get(task, {})
    if task in LEGACY_TASKS:
        # One subprocess: the first input alone, then the whole list in one call.
        single, many = legacy_pipeline(LEGACY_TASKS[task], model_dir, [inputs[0], inputs], call_kwargs=kwargs)
        return Reference(inputs, media_type, single, many)
    if roles == ("image",):
        pipe = images.default_pipeline(task, model_dir)
        values = [images.open_for_pipeline(b) for b in inputs]
    else:
        from transformers import pipeline

        pipe = pipeline(task, model=model_dir, device="cpu")
        values = clips() if roles == ("audio",) else list(inputs)
    if task == "feature-extraction":
        # pipeline("feature-extraction") gives per-token states; taskray answers one vector per
        # text, their mean for a plain (not sentence-transformers) checkpoint such as the tiny
        # model, as operators/tasks/feature_extraction.py documents.
        single = np.asarray(pipe(values[0])[0], dtype=np.float32).mean(axis=0)
        return Reference(inputs, media_type, single, [np.asarray(pipe(v)[0], dtype=np.float32).mean(axis=0) for v in values])
    return Reference(inputs, media_type, pipe(values[0], **kwargs), pipe(values, **kwargs))


def _image_array(value: Any) -> np.ndarray:
    """Pixels of a PIL image or of the base64 PNG Serve sends."""
    from PIL import Image

    if isinstance(value, str):
        value = Image.open(io.BytesIO(base64.b64decode(value)))
    return np.asarray(value)


def _plain(value: Any) -> Any:
    if hasattr(value, "numpy"):  # torch tensors
        value = value.numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def assert_matches(got: Any, want: Any, where: str = "response") -> None:
    """`got` (Serve JSON or client objects) equals the pipeline's `want`: labels and texts
    exactly, numbers within FLOAT_TOL, boxes within BOX_TOL, masks within MASK_PIXEL_TOL of
    their pixels. Keys of `want` only: client objects carry unset fields as None."""
    want = _plain(want)
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{where}: {got!r} is not an object"
        extra = {k for k, v in got.items() if k not in want and v is not None}
        assert set(want) <= set(got) and not extra, f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key, value in want.items():
            if key == "mask":
                a, b = _image_array(got[key]), np.asarray(value)
                assert a.shape == b.shape and np.mean(a != b) <= MASK_PIXEL_TOL, f"{where}.mask differs"
            elif key == "depth":
                # taskray's depth map is a 16-bit PNG, pipeline()'s an 8-bit image
                # (floor(255 * normalized)); scaled down, ours sits in [floor, floor + 1).
                levels = _image_array(got[key]).astype(np.float64) * 255 / 65535
                excess = levels - np.asarray(value).astype(np.float64)
                assert excess.min() > -2e-3 and excess.max() < 1 + 2e-3, f"{where}.depth differs"
            elif key == "box":
                assert set(got[key]) >= set(value), f"{where}.box: {got[key]} != {value}"
                assert all(abs(got[key][k] - value[k]) <= BOX_TOL for k in value), f"{where}.box: {got[key]} != {value}"
            else:
                assert_matches(got[key], value, f"{where}.{key}")
    elif isinstance(want, list):
        got = _plain(got)
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_matches(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert _plain(got) == pytest.approx(want, abs=FLOAT_TOL), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"
