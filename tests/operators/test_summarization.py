"""summarization: parity with transformers 4.57's summarization pipeline (removed in v5), run
in its own virtualenv; BART, and T5 with its "summarize: " prefix from task_specific_params."""

from __future__ import annotations

import pytest

from operators import get_operator
from tests.operators.generation_texts import TEXTS, one_torch_thread

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bart_dir(tiny_model):
    return tiny_model("summarization")


@pytest.fixture(scope="module")
def t5_dir(tiny_model):
    return tiny_model("translation")  # the tiny T5 carries a "summarization" entry too


def test_parity_with_legacy_pipeline_bart(bart_dir, legacy_pipeline):
    expected = legacy_pipeline("summarization", bart_dir, TEXTS)
    # max_batch_rows=3: several right-padded micro-batches of different lengths, beam search.
    out = get_operator("summarization")(bart_dir, max_batch_rows=3)({"text": TEXTS})
    assert out["error"] == [None] * len(TEXTS)
    assert out["summary_text"] == [e[0]["summary_text"] for e in expected]
    assert len(set(out["summary_text"])) == len(TEXTS), "the tiny model's output should depend on the input"
    assert all(out["summary_text"])


def test_t5_prefix_and_task_params_match_legacy_pipeline(t5_dir, legacy_pipeline):
    texts = TEXTS[:4]
    expected = legacy_pipeline("summarization", t5_dir, texts, call_kwargs={"max_new_tokens": 6})
    op = get_operator("summarization")(t5_dir, max_new_tokens=6)
    assert op.prompt_prefix() == "summarize: "
    assert op.generation_settings["num_beams"] == 2  # from task_specific_params, not the default 4
    out = op({"text": texts})
    assert out["summary_text"] == [e[0]["summary_text"] for e in expected]
    prepared = op.preprocess({"text": texts[:1]})
    assert list(prepared["features"][0]["input_ids"]) == op.processor("summarize: " + texts[0])["input_ids"]


def test_settings_order(bart_dir):
    op = get_operator("summarization")(bart_dir)
    # The model sets max_length (so the pipeline's max_new_tokens=256 stays out) but not
    # num_beams (so the pipeline's 4 applies); options override both.
    assert op.generation_settings == {"num_beams": 4}
    assert op.resolved("max_length") == 12 and op.resolved("min_new_tokens") == 4
    op = op.with_options(num_beams=1, max_new_tokens=5)
    assert op.generation_settings == {"num_beams": 1, "max_new_tokens": 5}
    raw = op.forward(op.preprocess({"text": TEXTS[:2]}))["raw"]
    assert [len(ids) for ids in raw] == [5, 5]  # min_new_tokens=4 keeps EOS out before


def test_seeded_sampling_does_not_depend_on_batch_composition(bart_dir):
    op = get_operator("summarization")(bart_dir, do_sample=True, num_beams=1, seed=11)
    together = op.with_options(max_batch_rows=4)({"text": TEXTS})["summary_text"]
    reordered = op.with_options(max_batch_rows=2)({"text": TEXTS[::-1]})["summary_text"][::-1]
    assert together == reordered
    assert together[:2] == [op({"text": [t]})["summary_text"][0] for t in TEXTS[:2]]
    assert together != op.with_options(seed=12)({"text": TEXTS})["summary_text"]
