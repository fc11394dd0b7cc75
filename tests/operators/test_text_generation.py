"""text-generation: greedy parity with transformers' pipeline (one prompt at a time) while the
operator batches with left padding; options; seeded sampling independent of batching."""

from __future__ import annotations

import pytest

from operators import get_operator
from tests.operators.generation_texts import TEXTS, one_torch_thread

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model("text-generation")


@pytest.fixture(scope="module")
def reference(model_dir):
    from transformers import pipeline

    return pipeline("text-generation", model=model_dir, device="cpu")


@pytest.fixture(scope="module")
def op(model_dir):
    # max_batch_rows=4: micro-batches of prompts with different lengths, so left padding is used.
    return get_operator("text-generation")(model_dir, do_sample=False, max_batch_rows=4).load()


def test_greedy_parity_with_pipeline_under_left_padding(op, reference):
    out = op({"text": TEXTS})
    assert out["error"] == [None] * len(TEXTS)
    lengths = {len(op.processor(t)["input_ids"]) for t in TEXTS}
    assert len(lengths) > 4, "prompts must differ in length for padding to matter"
    for text, got in zip(TEXTS, out["generated_text"]):
        assert got == reference(text, do_sample=False)[0]["generated_text"]
        assert got.startswith(text) and len(got) > len(text)
    continuations = {g[len(t) :] for t, g in zip(TEXTS, out["generated_text"])}
    assert len(continuations) == len(TEXTS), "the tiny model's output should depend on the prompt"


def test_return_full_text_false_and_max_new_tokens(op, reference):
    short = op.with_options(return_full_text=False, max_new_tokens=3)
    out = short({"text": TEXTS[:4]})
    for text, got in zip(TEXTS[:4], out["generated_text"]):
        expected = reference(text, do_sample=False, return_full_text=False, max_new_tokens=3)[0]["generated_text"]
        assert got == expected
    new_tokens = short.forward(short.preprocess({"text": TEXTS[:4]}))["raw"]
    assert [len(ids) for ids in new_tokens] == [3] * 4


def test_seeded_sampling_does_not_depend_on_batch_composition(op):
    sampler = op.with_options(do_sample=True, temperature=1.5, seed=7)
    together = sampler({"text": TEXTS})["generated_text"]
    reordered = sampler.with_options(max_batch_rows=2)({"text": TEXTS[::-1]})["generated_text"][::-1]
    alone = [sampler({"text": [t]})["generated_text"][0] for t in TEXTS[:3]]
    assert together == reordered
    assert together[:3] == alone
    greedy = op({"text": TEXTS})["generated_text"]
    assert together != greedy, "sampling at temperature 1.5 should leave the greedy path"
    other_seed = sampler.with_options(seed=8)({"text": TEXTS})["generated_text"]
    assert other_seed != together


def test_sampling_with_top_k_1_is_greedy(op):
    sampled = op.with_options(do_sample=True, top_k=1, seed=3)({"text": TEXTS[:5]})
    assert sampled["generated_text"] == op({"text": TEXTS[:5]})["generated_text"]


def test_beam_sampling_seed_reproducible(op):
    beams = op.with_options(do_sample=True, num_beams=2, seed=5)
    first = beams({"text": TEXTS[:4]})
    assert first["error"] == [None] * 4
    assert beams({"text": TEXTS[:4]}) == first


def test_pipeline_default_generation_settings(model_dir):
    # Nothing set by the caller: the pipeline's sampling defaults apply, the model's
    # max_new_tokens=12 wins over the pipeline's 256.
    settings = get_operator("text-generation")(model_dir).generation_settings
    assert settings["do_sample"] is True and settings["temperature"] == 0.7
    assert "max_new_tokens" not in settings
    assert settings["pad_token_id"] == settings.get("pad_token_id") == 0  # GPT-2: pad with EOS


def test_prompt_too_long_for_positions(op):
    long_prompt = " ".join(["word"] * 200)  # > 128 positions - 12 new tokens
    out = op({"text": [TEXTS[0], long_prompt]})
    assert out["error"][0] is None
    assert out["error"][1].startswith("preprocess: prompt has ") and "truncation=True" in out["error"][1]
    truncated = op.with_options(truncation=True)({"text": [long_prompt]})
    assert truncated["error"] == [None]
    assert truncated["generated_text"][0].startswith(long_prompt)


def test_min_new_tokens_above_max_is_rejected(model_dir):
    with pytest.raises(ValueError, match="min_new_tokens must not exceed max_new_tokens"):
        get_operator("text-generation")(model_dir, min_new_tokens=5, max_new_tokens=2)
