"""A device out-of-memory in forward splits the micro-batch instead of failing its rows.

The OOM is injected on the CPU by the test: the operator's `forward_batch` is wrapped so that
it raises torch.cuda.OutOfMemoryError (or the generic "CUDA out of memory" RuntimeError) for
micro-batches above a size, the way a GPU fails for batches that do not fit.
"""

from __future__ import annotations

import pytest
import torch

from operators import get_operator
from operators.errors import error_kind
from tests.operators.texts import VARIED_TEXTS

TASK = "text-classification"
# The planner cuts max_batch_rows=8 micro-batches (the budget is set far above them).
TEXTS = (VARIED_TEXTS * 2)[:16]
OPTIONS = {"max_batch_rows": 8, "batch_budget": 1_000_000}
# Same tolerance as tests/operators/test_text_classification.py (padding changes rounding).
SCORE_TOL = 1e-3


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model(TASK)


@pytest.fixture(scope="module")
def reference(model_dir):
    """transformers.pipeline, one text at a time: the parity oracle."""
    from transformers import pipeline

    pipe = pipeline(TASK, model=model_dir, device="cpu")
    return [pipe(t)[0] for t in TEXTS]


def inject_oom(op, fits, error=lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")):
    """Wrap op.forward_batch: micro-batches for which `fits(features)` is false raise `error()`.
    Returns the list of micro-batch sizes forward_batch was called with."""
    real = op.forward_batch
    sizes: list[int] = []

    def forward_batch(features):
        sizes.append(len(features))
        if not fits(features):
            raise error()
        return real(features)

    op.forward_batch = forward_batch
    return sizes


def assert_parity(out, reference, skip=()):
    for i, want in enumerate(reference):
        if i in skip:
            continue
        assert out["error"][i] is None, (i, out["error"][i])
        assert out["label"][i] == want["label"], i
        assert out["score"][i] == pytest.approx(want["score"], abs=SCORE_TOL), i


@pytest.mark.parametrize(
    "error",
    [
        lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        lambda: RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.78 GiB total capacity)"),
    ],
    ids=["OutOfMemoryError", "RuntimeError"],
)
def test_oom_halves_the_micro_batch_and_every_row_succeeds(model_dir, reference, error):
    op = get_operator(TASK)(model_dir, **OPTIONS)
    sizes = inject_oom(op, lambda f: len(f) <= 2, error)
    out = op({"text": TEXTS})
    assert_parity(out, reference)
    # First micro-batch: 8 -> 4 -> 2 + 2, then the other half 4 -> 2 + 2; the second planned
    # batch of 8 already runs at the lowered size.
    assert sizes == [8, 4, 2, 2, 4, 2, 2, 2, 2, 2, 2]


def test_lowered_budget_persists_into_the_next_call(model_dir, reference):
    op = get_operator(TASK)(model_dir, **OPTIONS)
    sizes = inject_oom(op, lambda f: len(f) <= 3)
    op({"text": TEXTS})
    first_attempts = len(sizes)
    sizes.clear()
    out = op({"text": TEXTS})
    assert_parity(out, reference)
    # 8 rows -> halves of 4 (OOM) -> 2 fit: the operator now runs 2 of every 8 planned rows,
    # so the second call never runs out of memory and needs fewer forward calls.
    assert sizes == [2] * 8
    assert len(sizes) < first_attempts
    # The lowered budget is shared with option copies (same model, same memory).
    sizes.clear()
    op.with_options(top_k=1)({"text": TEXTS[:8]})
    assert sizes == [2] * 4


def test_a_row_that_runs_out_of_memory_alone_fails_as_oom(model_dir, reference):
    op = get_operator(TASK)(model_dir, **OPTIONS)
    lengths = [len(f["input_ids"]) for f in op.preprocess({"text": TEXTS})["features"]]
    too_long = max(lengths)
    # The longest rows never fit, even alone; the others fit in micro-batches of up to 4.
    bad = {i for i, n in enumerate(lengths) if n >= too_long}
    inject_oom(op, lambda f: len(f) <= 4 and all(len(x["input_ids"]) < too_long for x in f))
    out = op({"text": TEXTS})
    for i in bad:
        assert error_kind(out["error"][i]) == "oom", out["error"][i]
        assert "out of device memory" in out["error"][i]
        assert out["label"][i] is None
    assert_parity(out, reference, skip=bad)


def test_other_forward_failures_still_retry_row_by_row(model_dir, reference):
    op = get_operator(TASK)(model_dir, **OPTIONS)
    lengths = [len(f["input_ids"]) for f in op.preprocess({"text": TEXTS})["features"]]
    n_poison = lengths[2]
    sizes = inject_oom(
        op, lambda f: all(len(x["input_ids"]) != n_poison for x in f), lambda: ValueError("bad kernel input")
    )
    out = op({"text": TEXTS})
    bad = {i for i, n in enumerate(lengths) if n == n_poison}
    for i in bad:
        assert out["error"][i] == "forward: bad kernel input"
    assert_parity(out, reference, skip=bad)
    assert op._batch_scale.value == 1.0, "a non-OOM failure must not lower the budget"
    assert 1 in sizes
