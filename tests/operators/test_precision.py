"""bf16 on the CPU, the opt-in reduced precision (`dtype="bfloat16"`), against float32; the
configurations refused; and options fixed when the model loads.

Agreement is held on the real all-MiniLM-L6-v2 (tests/operators/precision_agreement.py: the
bar the GPU's default bf16 meets in tests/operators/test_cuda.py, which this CPU bf16 path
stands in for on a machine without a GPU): embedding cosine and label agreement against
float32. The tiny random models' labels flip at their near-ties, so for them only the structure
of the results is compared. benchmarks/precision.py measures agreement over more texts, and
why int8 is not offered.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from operators import get_operator
from operators.loading import cpu_has_native_bf16
from tests.operators import precision_agreement
from tests.operators.test_cuda import CASES, IDS, _differences
from tests.operators.texts import VARIED_TEXTS

torch = pytest.importorskip("torch")

needs_bf16_cpu = pytest.mark.skipif(
    not cpu_has_native_bf16(), reason="this CPU has neither AVX512-BF16 nor AMX: dtype bfloat16 is refused here"
)

# The bound for embeddings. bf16 keeps 8 bits of mantissa, so each hidden state moves
# by ~0.4% relative; over 6 layers, mean pooling and 384 dimensions benchmarks/precision.py
# measured cosines of 0.9999 and above on pydoc paragraphs. VARIED_TEXTS adds one- and
# two-word texts, where a pooled vector averages the fewest tokens and moves the most, so
# the bound keeps a wide margin.
COSINE_MIN = 0.99


def _embeddings(path: str, dtype: str) -> np.ndarray:
    op = get_operator("feature-extraction")(path, device="cpu", dtype=dtype)
    out = op({"text": VARIED_TEXTS})
    assert out["error"] == [None] * len(VARIED_TEXTS)
    assert next(op.model.parameters()).dtype == getattr(torch, dtype)
    return np.asarray(out["embedding"], np.float64)


@needs_bf16_cpu
def test_minilm_bf16_embeddings_stay_close_to_float32(minilm_path):
    full, half = _embeddings(minilm_path, "float32"), _embeddings(minilm_path, "bfloat16")
    cosine = (half * full).sum(1) / (np.linalg.norm(half, axis=1) * np.linalg.norm(full, axis=1))
    assert cosine.min() >= COSINE_MIN, np.round(cosine, 5).tolist()
    # Not the same computation: a bound that float32 against itself would also meet proves little.
    assert cosine.min() < 1 - 1e-7


@pytest.fixture(scope="module")
def minilm_classifier(minilm_path, tmp_path_factory) -> str:
    return precision_agreement.classifier(minilm_path, str(tmp_path_factory.mktemp("minilm-classifier")))


@pytest.fixture(scope="module")
def minilm_float32(minilm_path, minilm_classifier):
    """The reference run in float32, shared by the two tests below (the encoder over every text)."""
    return precision_agreement.run(minilm_path, minilm_classifier, "cpu", "float32")


def test_minilm_bf16_agrees_with_float32_embeddings_and_labels(minilm_path, minilm_classifier, minilm_float32, monkeypatch):
    """The GPU default's stand-in: bf16 against float32 on the real encoder, pydoc paragraphs.
    Runs on every CPU: where bf16 has no hardware units taskray refuses it for speed (torch
    emulates it), and the test lifts that refusal to check the numbers anyway."""
    if not cpu_has_native_bf16():
        monkeypatch.setattr("operators.loading.cpu_has_native_bf16", lambda: True)
    full = minilm_float32
    reduced = precision_agreement.run(minilm_path, minilm_classifier, "cpu", "bfloat16")
    assert reduced[2].dtype == torch.bfloat16 and full[2].dtype == torch.float32
    precision_agreement.check(full[:2], reduced[:2])


def test_the_agreement_bar_fails_on_a_real_loss(minilm_float32):
    """The bar can fail: float32 with its embeddings and labels disturbed as a lossy precision
    would (noise of 10% of each vector's norm, cosine ~0.995, milder than the dynamic int8 that
    benchmarks/precision.py measured; a quarter of the labels moved) does not pass."""
    full = minilm_float32[:2]
    rng = np.random.default_rng(0)
    norms = np.linalg.norm(full[0], axis=1, keepdims=True)
    noisy = full[0] + rng.standard_normal(full[0].shape) * 0.1 * norms / np.sqrt(full[0].shape[1])
    with pytest.raises(AssertionError, match="cosine min"):
        precision_agreement.check(full, (noisy, full[1]))
    moved = [label if i % 4 else "class_moved" for i, label in enumerate(full[1])]
    with pytest.raises(AssertionError, match="labels equal"):
        precision_agreement.check(full, (full[0] * (1 + 1e-4 * rng.standard_normal(full[0].shape)), moved))


@needs_bf16_cpu
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_task_runs_in_bf16_on_the_cpu_and_keeps_the_structure(case, tiny_model):
    """Same output structure, finite numbers, no row errors (values not compared: tiny random
    models, see above)."""
    task, variant, options, inputs, _ = case
    results = {}
    for dtype in ("float32", "bfloat16"):
        op = get_operator(task)(tiny_model(task, variant), device="cpu", dtype=dtype, max_batch_rows=4, **options)
        results[dtype] = op(inputs())
        assert results[dtype]["error"] == [None] * len(results[dtype]["error"]), results[dtype]["error"]
    differences = list(_differences(results["float32"], results["bfloat16"], float("inf"), exact_labels=False))
    assert not differences, "\n".join(differences[:10])


def test_bf16_on_a_cpu_without_bf16_units_is_refused_at_load(tiny_model, monkeypatch):
    monkeypatch.setattr("operators.loading.cpu_has_native_bf16", lambda: False)
    op = get_operator("text-classification")(tiny_model("text-classification"), device="cpu", dtype="bfloat16")
    op.check_config()  # the driver's check passes: its CPU need not be the actors'
    with pytest.raises(ValueError, match=r"dtype bfloat16 on the CPU for .*text-classification.*neither AVX512-BF16 nor AMX"):
        op.load()
    assert op._model is None


def test_the_dtype_cannot_change_per_request(tiny_model):
    op = get_operator("text-classification")(tiny_model("text-classification"), device="cpu").load()
    with pytest.raises(ValidationError, match="dtype"):
        op.with_options(dtype="bfloat16")


@pytest.mark.parametrize("name, value", [("torch_compile", True), ("attn_implementation", "eager")])
def test_a_request_cannot_change_how_the_model_was_built(tiny_model, name, value):
    op = get_operator("text-classification")(tiny_model("text-classification"), device="cpu").load()
    with pytest.raises(ValidationError, match=rf"{name}[\s\S]*cannot change per request"):
        op.with_options(**{name: value})
    # The value it was built with is no change.
    assert op.with_options(**{name: getattr(op.options, name)}).options == op.options
