"""Every task's operator on CUDA against the same operator on the CPU (`pytest -m gpu`).

The per-task tests hold the CPU operators to transformers.pipeline; these hold the CUDA path
(device moves, pinned host buffers, the auto dtype) to the CPU's results:

* float32 on CUDA, with TF32 off: the same labels and texts, numbers within FP32_TOL;
* the auto dtype (bf16, else fp16), every task: no row errors, the model in that dtype, and
  the same output structure with finite numbers. Values are not compared on the tiny models:
  their random labels, texts and masks flip at their near-ties;
* the auto dtype's values, on the real all-MiniLM-L6-v2: embedding cosine and label agreement
  with float32 on CUDA, held to tests/operators/precision_agreement.py's bars (the CPU's bf16
  meets the same bars in tests/operators/test_precision.py).

CI has no GPU and deselects these (`-m "not gpu"`).
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pytest

from operators import get_operator
from tests.operators import precision_agreement, sounds
from tests.operators.images import one_pixel_png, varied_images
from tests.operators.texts import VARIED_TEXTS

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

# CUDA and CPU kernels sum in other orders, TF32 off or not. The calibrated tiny models' large
# logits amplify that: on an H200 one text-classification score moved by 1.1e-4 (0.55829 against
# 0.55839) in one run of two. 1e-3 is the CPU parity tests' loosest score tolerance too.
FP32_TOL = 1e-3
# A decoded 16-bit depth PNG or a mask may differ in a few pixels where values tie.
PIXEL_SHARE_TOL = 0.01


def _qa_inputs() -> dict[str, list[str]]:
    contexts = VARIED_TEXTS[3:7]
    questions = ["What is raised?", "What do loops do?", "How are numbers made?", "What does import do?"]
    return {"question": questions, "context": contexts}


def _images() -> dict[str, list[bytes]]:
    return {"image": varied_images()[:6] + [one_pixel_png()]}


def _audio() -> dict[str, list[bytes]]:
    return {"audio": [sounds.encode(c) for c in sounds.varied_clips()]}


# A one-pixel image resizes to a constant one, and Mask2Former's normalizations divide by its
# near-zero variance: on the CPU, input noise of 1e-6 moved its class logits by 6.7 (by 6e-7
# for a varied image). Its segments are not compared; it must still run without an error.
ONE_PIXEL_ROW = 6

# (task, tiny model variant, operator options, inputs, rows whose values are not compared)
CASES: list[tuple[str, str | None, dict[str, Any], Any, set[int]]] = [
    ("text-classification", None, {}, lambda: {"text": VARIED_TEXTS}, set()),
    ("token-classification", None, {}, lambda: {"text": VARIED_TEXTS}, set()),
    ("feature-extraction", None, {}, lambda: {"text": VARIED_TEXTS}, set()),
    ("question-answering", None, {}, _qa_inputs, set()),
    ("text-generation", None, {"do_sample": False, "max_new_tokens": 8}, lambda: {"text": VARIED_TEXTS[:4]}, set()),
    ("summarization", None, {"max_new_tokens": 8}, lambda: {"text": VARIED_TEXTS[:4]}, set()),
    ("translation", None, {"max_new_tokens": 8}, lambda: {"text": VARIED_TEXTS[:4]}, set()),
    ("image-classification", None, {}, _images, set()),
    ("image-classification", "convnext", {}, _images, set()),
    ("object-detection", None, {"threshold": 0.3}, _images, set()),
    ("image-segmentation", None, {"threshold": 0.3}, _images, {ONE_PIXEL_ROW}),
    ("depth-estimation", None, {}, _images, set()),
    ("audio-classification", None, {}, _audio, set()),
    ("automatic-speech-recognition", None, {}, _audio, set()),
]
IDS = [task if variant is None else f"{task}-{variant}" for task, variant, *_ in CASES]


@pytest.fixture(autouse=True)
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _run(case, tiny_model, device: str, dtype: str) -> tuple[Any, dict[str, list]]:
    task, variant, options, inputs, _ = case
    op = get_operator(task)(tiny_model(task, variant), device=device, dtype=dtype, max_batch_rows=4, **options)
    out = op(inputs())
    assert out["error"] == [None] * len(out["error"]), f"{task} on {device}/{dtype}: {out['error']}"
    return op, out


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float32_on_cuda_matches_cpu(case, tiny_model):
    op, on_cuda = _run(case, tiny_model, "cuda", "float32")
    assert op.device.type == "cuda" and next(op.model.parameters()).is_cuda
    _, on_cpu = _run(case, tiny_model, "cpu", "float32")
    unstable = case[4]
    expected, got = _without(on_cpu, unstable), _without(on_cuda, unstable)
    mismatches = list(_differences(expected, got, FP32_TOL, exact_labels=True))
    assert not mismatches, "\n".join(mismatches[:10])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_auto_dtype_on_cuda_runs_and_keeps_the_structure(case, tiny_model):
    op, half = _run(case, tiny_model, "cuda", "auto")
    assert op.dtype in (torch.bfloat16, torch.float16)
    assert next(op.model.parameters()).dtype == op.dtype
    _, full = _run(case, tiny_model, "cuda", "float32")
    # Structure only: the random tiny models' calibrated logits are large, so one flip of
    # the top label moved a text score from 0.999 to 0.818 in bf16 (on the CPU). What must
    # hold is finite numbers in the same places, vectors of the same length, decodable images.
    differences = list(_differences(full, half, math.inf, exact_labels=False))
    assert not differences, "\n".join(differences[:10])


def test_auto_dtype_on_cuda_agrees_with_float32_on_real_minilm(minilm_path, tmp_path):
    """What the GPU default (bf16) costs in agreement, on a real encoder and a classifier of it:
    a bar that can fail, unlike the structure-only check above."""
    classifier = precision_agreement.classifier(minilm_path, str(tmp_path / "classifier"))
    full = precision_agreement.run(minilm_path, classifier, "cuda", "float32")
    reduced = precision_agreement.run(minilm_path, classifier, "cuda", "auto")
    assert reduced[2].dtype in (torch.bfloat16, torch.float16) and full[2].dtype == torch.float32
    precision_agreement.check(full[:2], reduced[:2])


def _without(out: dict[str, list], rows: set[int]) -> dict[str, list]:
    return {column: [v for i, v in enumerate(values) if i not in rows] for column, values in out.items()}


def _differences(expected: Any, got: Any, tol: float, *, exact_labels: bool, path: str = "") -> Any:
    """Yield a line per difference beyond `tol` between two result trees."""
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(expected) != set(got):
            yield f"{path}: keys {sorted(expected)} != {sorted(got) if isinstance(got, dict) else type(got)}"
            return
        for key in expected:
            yield from _differences(expected[key], got[key], tol, exact_labels=exact_labels, path=f"{path}.{key}")
    elif isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            yield f"{path}: {type(expected).__name__} != {type(got).__name__}"
        elif exact_labels and len(expected) != len(got):
            yield f"{path}: {len(expected)} items != {len(got)}"
        elif len(expected) != len(got) and expected and all(isinstance(v, float) for v in expected):
            yield f"{path}: vector of {len(expected)} != {len(got)}"
        else:
            for i, (a, b) in enumerate(zip(expected, got)):
                yield from _differences(a, b, tol, exact_labels=exact_labels, path=f"{path}[{i}]")
    elif isinstance(expected, float) or isinstance(got, float):
        if not isinstance(got, (int, float)) or not isinstance(expected, (int, float)):
            yield f"{path}: {expected!r} != {got!r}"
        elif math.isfinite(expected) and not math.isfinite(got):
            yield f"{path}: {expected} became {got}"
        elif not math.isclose(expected, got, rel_tol=tol, abs_tol=tol):
            yield f"{path}: {expected} != {got} (tol {tol})"
    elif isinstance(expected, bytes):
        if not isinstance(got, bytes):
            yield f"{path}: bytes != {type(got).__name__}"
        elif not exact_labels:  # a mask or a min/max-normalized depth map may change wholesale
            if _decoded(expected).shape != _decoded(got).shape:
                yield f"{path}: image of shape {_decoded(expected).shape} != {_decoded(got).shape}"
        else:
            share = _pixel_share_differing(expected, got)
            if share > PIXEL_SHARE_TOL:
                yield f"{path}: {share:.1%} of the pixels differ"
    elif exact_labels and expected != got:
        yield f"{path}: {expected!r} != {got!r}"
    elif type(expected) is not type(got) and expected is not None and got is not None:
        yield f"{path}: {type(expected).__name__} != {type(got).__name__}"


def _decoded(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data))).astype(np.float64)


def _pixel_share_differing(a: bytes, b: bytes) -> float:
    """The share of pixels of two encoded images (masks, depth PNGs) that differ by more than
    1% of the full scale."""
    x, y = _decoded(a), _decoded(b)
    if x.shape != y.shape:
        return 1.0
    scale = 65535.0 if max(x.max(initial=0), y.max(initial=0)) > 255 else 255.0
    return float(np.mean(np.abs(x - y) > 0.01 * scale)) if x.size else 0.0
