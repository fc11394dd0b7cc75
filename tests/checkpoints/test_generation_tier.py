"""The generation families users bring most, rebuilt from their published configurations
(tiny_models/tier_generation.py) and held to the references: transformers 4.57's
translation and summarization pipelines (the `legacy_pipeline` fixture), v5's text-generation
pipeline.

Two issue-24 regressions are pinned here:

* M2M100 translated into no language: taskray forced the token 'de' (an ordinary piece) where
  the tokenizer's `_build_translation_inputs` forces '__de__'
  (`test_m2m100_forces_the_tokenizers_language_token`).
* Batched prompts lost new tokens under a total max_length, which generate() counts over the
  batch's left padding (`test_tinyllama_max_length_is_per_prompt_in_mixed_batches`).

Tiny random seq2seq models emit EOS at once, so the parity calls bound the length (max_length
16, min_new_tokens 4) on both sides; the published lengths and beams are checked as the
operator resolves them. Where a model's num_beams is not 4 (M2M100 and mBART-50: 5, Pegasus:
8), the parity call passes it to both sides: 4.57's pipelines let their own num_beams=4 beat
the model's, the operator keeps the model's (operators/generation.py says why).
"""

from __future__ import annotations

import pytest

from operators import get_operator
from tests.operators.generation_texts import TEXTS, one_torch_thread  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SOURCES = TEXTS[:4]  # 4 to 27 tokens: micro-batches of mixed lengths
SHORT = {"max_length": 16, "min_new_tokens": 4}

# hub id -> (src_lang, tgt_lang, the published target token, published num_beams (None: unset),
#            call options beside SHORT)
TRANSLATION = {
    "facebook/m2m100_418M": ("en", "de", "__de__", 5, {"num_beams": 5}),
    "facebook/nllb-200-distilled-600M": ("eng_Latn", "deu_Latn", "deu_Latn", None, {}),
    "facebook/mbart-large-50-many-to-many-mmt": ("en_XX", "de_DE", "de_DE", 5, {"num_beams": 5}),
    "Helsinki-NLP/opus-mt-en-de": (None, None, None, 4, {}),
}


@pytest.fixture(scope="module")
def m2m100(checkpoint_model):
    return checkpoint_model("facebook/m2m100_418M")


def test_m2m100_forces_the_tokenizers_language_token(m2m100):
    """Fails on cc7967f: the operator forced convert_tokens_to_ids('de'), an ordinary piece of
    the vocabulary, so every translation started in no language."""
    op = get_operator("translation")(m2m100, src_lang="en", tgt_lang="de", **SHORT)
    tokenizer = op.processor
    de, lang_de = tokenizer.convert_tokens_to_ids("de"), tokenizer.convert_tokens_to_ids("__de__")
    assert de != tokenizer.unk_token_id and de != lang_de, "'de' must be a real piece for this test to bite"
    assert op.generation_settings["forced_bos_token_id"] == lang_de == tokenizer.get_lang_id("de")
    prepared = op.preprocess({"text": SOURCES[:2]})
    assert [int(i) for i in prepared["features"][0]["input_ids"][:1]] == [tokenizer.convert_tokens_to_ids("__en__")]
    raw = op.forward(prepared)["raw"]
    assert [int(r[0]) for r in raw] == [lang_de, lang_de]


@pytest.mark.parametrize("hub_id", list(TRANSLATION))
def test_translation_parity_with_legacy_pipeline(hub_id, checkpoint_model, legacy_pipeline):
    model_dir = checkpoint_model(hub_id)
    src, tgt, target_token, beams, extra = TRANSLATION[hub_id]
    langs = {"src_lang": src, "tgt_lang": tgt} if src else {}
    task = "translation" if src else "translation_en_to_de"  # Marian: one pair, no codes
    expected = legacy_pipeline(task, model_dir, SOURCES, call_kwargs={**langs, **SHORT, **extra})
    op = get_operator("translation")(model_dir, max_batch_rows=2, **langs, **SHORT, **extra)
    # The published generation config as the operator reads it, before any weights load.
    assert get_operator("translation")(model_dir, **langs).resolved("num_beams") == (beams or 4)
    assert op.resolved("max_length") == 16 and op._base_generation_config.max_length in (200, 512)
    prepared = op.preprocess({"text": SOURCES})
    raw = op.forward(prepared)
    out = op.postprocess(raw, prepared)
    assert out["error"] == [None] * len(SOURCES)
    assert out["translation_text"] == [e[0]["translation_text"] for e in expected]
    assert len(set(out["translation_text"])) >= 3, "the tiny model's output should depend on the input"
    if target_token is not None:
        forced = op.processor.convert_tokens_to_ids(target_token)
        assert forced != op.processor.unk_token_id
        assert all(int(ids[0]) == forced for ids in raw["raw"]), "the target language is the first token"
        assert all(target_token not in text for text in out["translation_text"]), "a special token, skipped"


@pytest.mark.parametrize(
    ("hub_id", "langs", "bad"),
    [
        ("facebook/m2m100_418M", {"src_lang": "en", "tgt_lang": "xx"}, "tgt_lang"),
        ("facebook/nllb-200-distilled-600M", {"src_lang": "eng_Latn", "tgt_lang": "de"}, "tgt_lang"),
        ("facebook/mbart-large-50-many-to-many-mmt", {"src_lang": "en", "tgt_lang": "de_DE"}, "src_lang"),
    ],
)
def test_unknown_language_codes_fail_the_call(hub_id, langs, bad, checkpoint_model):
    from pydantic import ValidationError

    op = get_operator("translation")(checkpoint_model(hub_id), **langs)
    with pytest.raises(ValidationError) as info:
        op({"text": SOURCES[:1]})
    assert info.value.errors()[0]["loc"] == (bad,)


# ---------------------------------------------------------------------------- summarization


def test_distilbart_settings_come_from_config_json_without_generation_config(checkpoint_model, legacy_pipeline):
    """No generation_config.json, as published: the settings in config.json (read the way
    transformers' from_pretrained reads them, before any weights load) and its task params."""
    import os

    model_dir = checkpoint_model("sshleifer/distilbart-cnn-12-6")
    assert not os.path.exists(os.path.join(model_dir, "generation_config.json"))
    op = get_operator("summarization")(model_dir, max_batch_rows=2)
    base = op._base_generation_config
    assert (base.max_length, base.min_length, base.num_beams, base.length_penalty) == (142, 56, 4, 2.0)
    assert (base.forced_bos_token_id, base.forced_eos_token_id, base.no_repeat_ngram_size) == (0, 2, 3)
    assert op.prompt_prefix() == " " and op._model is None
    call = {"max_length": 20, "min_length": 8}
    expected = legacy_pipeline("summarization", model_dir, SOURCES, call_kwargs=call)
    out = op.with_options(**call)({"text": SOURCES})
    assert out["error"] == [None] * len(SOURCES)
    assert out["summary_text"] == [e[0]["summary_text"] for e in expected]
    assert len(set(out["summary_text"])) == len(SOURCES)


def test_summarization_input_limit_is_the_models_positions_without_a_tokenizer_limit(checkpoint_model, tmp_path):
    """A tokenizer saved without model_max_length (1e30) leaves the limit to BART's 1024
    learned positions: a longer text is truncated there, not sent past the position table
    (an index error, on CUDA a device-side assert that kills the process)."""
    import json
    import shutil

    model_dir = shutil.copytree(checkpoint_model("sshleifer/distilbart-cnn-12-6"), tmp_path / "no-limit")
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    del config["model_max_length"]
    config_path.write_text(json.dumps(config))
    op = get_operator("summarization")(str(model_dir), max_length=12, min_length=4)
    assert op.processor.model_max_length > 10**20 and op.max_input_tokens() == 1024
    long_text = " ".join(SOURCES * 40)
    prepared = op.preprocess({"text": [long_text]})
    assert len(prepared["features"][0]["input_ids"]) == 1024
    out = op.postprocess(op.forward(prepared), prepared)
    assert out["error"] == [None] and out["summary_text"][0]
    refused = op.with_options(truncation=False)({"text": [long_text]})["error"][0]
    assert refused is not None and "at most 1024" in refused


def test_pegasus_xsum_parity_with_legacy_pipeline(checkpoint_model, legacy_pipeline):
    model_dir = checkpoint_model("google/pegasus-xsum")
    op = get_operator("summarization")(model_dir, max_batch_rows=2)
    # The published settings; the dataset-keyed task params are not the pipeline's "summarization".
    assert op.generation_settings == {}
    assert [op.resolved(k) for k in ("num_beams", "length_penalty", "max_length", "forced_eos_token_id")] == [8, 0.6, 64, 1]
    call = {"max_length": 20, "min_length": 8, "num_beams": 8}
    expected = legacy_pipeline("summarization", model_dir, SOURCES, call_kwargs=call)
    out = op.with_options(**call)({"text": SOURCES})
    assert out["error"] == [None] * len(SOURCES)
    assert out["summary_text"] == [e[0]["summary_text"] for e in expected]
    assert len(set(out["summary_text"])) == len(SOURCES)


# ---------------------------------------------------------------------------- text-generation

# 27, 4 and 20 tokens with the TinyLlama tokenizer (BOS included): padded to 27 in one batch.
PROMPTS = [TEXTS[0], TEXTS[2], TEXTS[5]]


@pytest.fixture(scope="module")
def tinyllama(checkpoint_model):
    return checkpoint_model("TinyLlama/TinyLlama-1.1B-Chat-v1.0")


@pytest.fixture(scope="module")
def tinyllama_pipeline(tinyllama):
    from transformers import pipeline

    return pipeline("text-generation", model=tinyllama, device="cpu")


def test_tinyllama_published_max_length_is_a_per_prompt_budget(tinyllama, tinyllama_pipeline):
    """The generation config's max_length 2048 bounds prompt plus continuation; the pipeline
    then adds no max_new_tokens default, and neither does the operator. Each row's budget is
    2048 less its own prompt, whatever it is batched with (generating 2000 tokens is too slow
    for a test, so the batch's generate() arguments are checked here and the same path runs
    under a small max_length below)."""
    op = get_operator("text-generation")(tinyllama, do_sample=False)
    assert tinyllama_pipeline._prepare_generate_kwargs({}) == {"do_sample": True, "temperature": 0.7}
    assert op.generation_settings == {"do_sample": False}
    assert op.resolved("max_length") == 2048 and op.resolved("max_new_tokens") is None
    assert op.prompt_limit() == 2047
    lengths = [len(f["input_ids"]) for f in op.preprocess({"text": PROMPTS})["features"]]
    assert lengths == [27, 4, 20]
    kwargs = {}
    budgets = op._row_length_kwargs(kwargs, lengths, padded=27)
    assert budgets == [2048 - n for n in lengths]
    assert kwargs["max_length"] == 27 + 2048 - 4
    (criterion,) = kwargs["stopping_criteria"]
    assert criterion.limits.tolist() == [27 + b for b in budgets]


def test_tinyllama_max_length_is_per_prompt_in_mixed_batches(tinyllama, tinyllama_pipeline):
    """Fails on cc7967f: the 4-token prompt, left-padded to 27 beside the others, stopped 23
    tokens early (generate() counted the padding against max_length), as a prefix of the
    pipeline's answer."""
    call = {"max_length": 48, "do_sample": False}
    expected = [tinyllama_pipeline(p, **call)[0]["generated_text"] for p in PROMPTS]
    op = get_operator("text-generation")(tinyllama, **call)
    prepared = op.preprocess({"text": PROMPTS})
    assert op.plan_batches(prepared["features"]) == [[0, 2, 1]], "one micro-batch of three lengths"
    raw = op.forward(prepared)
    out = op.postprocess(raw, prepared)
    assert out["error"] == [None] * len(PROMPTS)
    assert out["generated_text"] == expected
    assert [len(ids) for ids in raw["raw"]] == [48 - 27, 48 - 4, 48 - 20], "no EOS: each row's whole budget"
    assert len(set(out["generated_text"])) == len(PROMPTS)


def test_tinyllama_sampled_rows_under_max_length_do_not_depend_on_their_batch(tinyllama):
    """Sampling (the pipeline's default here) with per-row seeds: each row's text alone equals
    its text in a batch of three budgets."""
    op = get_operator("text-generation")(tinyllama, max_length=40)
    assert op.resolved("do_sample") is True and op.resolved("temperature") == 0.7
    batched = op({"text": PROMPTS})
    alone = [op({"text": [p]})["generated_text"][0] for p in PROMPTS]
    assert batched["error"] == [None] * len(PROMPTS)
    assert batched["generated_text"] == alone


def test_tinyllama_beam_search_under_max_length_batches_equal_budgets(tinyllama, tinyllama_pipeline):
    """Beams cannot stop one row of a batch alone, so rows of different budgets run apart."""
    call = {"max_length": 36, "num_beams": 2, "do_sample": False}
    prompts = [TEXTS[0], TEXTS[2], TEXTS[1], TEXTS[4]]  # 27, 4, 10 and 10 tokens
    expected = [tinyllama_pipeline(p, **call)[0]["generated_text"] for p in prompts]
    op = get_operator("text-generation")(tinyllama, **call)
    prepared = op.preprocess({"text": prompts})
    batches = sorted(sorted(b) for b in op.plan_batches(prepared["features"]))
    assert batches == [[0], [1], [2, 3]]
    out = op.postprocess(op.forward(prepared), prepared)
    assert out["error"] == [None] * len(prompts)
    assert out["generated_text"] == expected


def test_tinyllama_prompt_that_fills_max_length_fails_its_row(tinyllama):
    op = get_operator("text-generation")(tinyllama, max_length=20, do_sample=False, max_new_tokens=None)
    out = op({"text": [TEXTS[0], TEXTS[2]]})  # 27 tokens do not fit 20; 4 do
    assert out["error"][0] is not None and "max_length=20" in out["error"][0] and out["error"][1] is None
    assert op.with_options(truncation=True)({"text": [TEXTS[0]]})["error"] == [None]


@pytest.fixture(scope="module")
def qwen(checkpoint_model):
    return checkpoint_model("Qwen/Qwen2.5-0.5B-Instruct")


def test_qwen_instruct_settings_and_greedy_parity(qwen):
    """The published sampling settings, eos list and repetition penalty as the v5 pipeline
    resolves them; greedy decoding (which keeps the repetition penalty and the eos list)
    matches the pipeline prompt by prompt in mixed-length micro-batches."""
    from transformers import pipeline

    reference = pipeline("text-generation", model=qwen, device="cpu")
    op = get_operator("text-generation")(qwen)
    assert reference._prepare_generate_kwargs({}) == {"max_new_tokens": 256}
    assert op.generation_settings == {"max_new_tokens": 256}
    tokenizer = op.processor
    im_end, endoftext = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert op.eos_token_ids() == {im_end, endoftext} and op.pad_token_id == endoftext
    assert [op.resolved(k) for k in ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty")] == [
        True, 0.7, 0.8, 20, 1.1,
    ]
    call = {"do_sample": False, "max_new_tokens": 24}
    expected = [reference(p, **call)[0]["generated_text"] for p in PROMPTS]
    out = get_operator("text-generation")(qwen, **call)({"text": PROMPTS})
    assert out["error"] == [None] * len(PROMPTS)
    assert out["generated_text"] == expected
    assert len(set(out["generated_text"])) == len(PROMPTS)
