"""token-classification: parity with pipeline() for every aggregation strategy."""

from __future__ import annotations

import pytest

from operators import get_operator
from tests.operators.texts import VARIED_TEXTS

SCORE_TOL = 1e-4  # fp32 on CPU; padding within a micro-batch changes summation order only


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model("token-classification")


def _same_entities(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert set(g) == set(w)
        for key in w:
            if key == "score":
                assert g[key] == pytest.approx(float(w[key]), abs=SCORE_TOL)
            else:
                assert g[key] == w[key], (key, g, w)


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_parity_with_pipeline(model_dir, strategy):
    from transformers import pipeline

    reference = pipeline("token-classification", model=model_dir, device="cpu", aggregation_strategy=strategy)
    op = get_operator("token-classification")(model_dir, aggregation_strategy=strategy, max_batch_rows=4)
    out = op({"text": VARIED_TEXTS})
    assert out["error"] == [None] * len(VARIED_TEXTS)
    found = 0
    for i, text in enumerate(VARIED_TEXTS):
        want = reference(text)
        _same_entities(out["entities"][i], want)
        found += len(want)
    assert found > 0, "calibrated tiny model should find some entities"


def test_bad_rows_are_isolated(model_dir):
    op = get_operator("token-classification")(model_dir)
    clean = op({"text": VARIED_TEXTS[:2]})
    out = op({"text": [VARIED_TEXTS[0], b"bytes", "", VARIED_TEXTS[1]]})
    assert out["error"][1] == "input: expected text as str, got bytes"
    assert out["error"][2] == "input: empty text"
    assert out["entities"][1] is None and out["entities"][2] is None
    _same_entities(out["entities"][0], clean["entities"][0])
    _same_entities(out["entities"][3], clean["entities"][1])
