"""translation: parity with transformers 4.57's translation pipeline (removed in v5), run in
its own virtualenv, on a tiny T5 whose task_specific_params give the task prefixes."""

from __future__ import annotations

import pytest

from operators import get_operator
from tests.operators.generation_texts import TEXTS, one_torch_thread

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model("translation")


def test_parity_with_legacy_pipeline_en_to_de(model_dir, legacy_pipeline):
    expected = legacy_pipeline("translation_en_to_de", model_dir, TEXTS)
    op = get_operator("translation")(model_dir, src_lang="en", tgt_lang="de", max_batch_rows=3)
    assert op.prompt_prefix() == "translate English to German: "
    out = op({"text": TEXTS})
    assert out["error"] == [None] * len(TEXTS)
    assert out["translation_text"] == [e[0]["translation_text"] for e in expected]
    assert len(set(out["translation_text"])) == len(TEXTS), "the tiny model's output should depend on the input"
    # Without languages, the first translation entry of task_specific_params, as
    # pipeline("translation") picks it.
    default = get_operator("translation")(model_dir)
    assert default.prompt_prefix() == "translate English to German: "
    assert default({"text": TEXTS[:3]})["translation_text"] == out["translation_text"][:3]


def test_target_language_changes_prefix_and_output(model_dir):
    de = get_operator("translation")(model_dir, src_lang="en", tgt_lang="de")
    fr = de.with_options(tgt_lang="fr")
    assert fr.prompt_prefix() == "translate English to French: "
    ids = fr.preprocess({"text": [TEXTS[0]]})["features"][0]["input_ids"]
    assert list(ids) == fr.processor("translate English to French: " + TEXTS[0])["input_ids"]
    assert fr({"text": TEXTS[:4]})["translation_text"] != de({"text": TEXTS[:4]})["translation_text"]


# A language pair the model lacks is a configuration error (issue 17.5): the call fails with
# one error naming the option and the model, instead of every row failing alike.
def test_unknown_language_pair_fails_the_call_naming_known_pairs(model_dir):
    from pydantic import ValidationError

    op = get_operator("translation")(model_dir, src_lang="en", tgt_lang="es")
    with pytest.raises(ValidationError) as info:
        op({"text": TEXTS[:2]})
    error = info.value.errors()[0]
    assert error["loc"] == ("tgt_lang",) and f"model {model_dir!r}" in error["msg"]
    assert "'translation_en_to_es'" in error["msg"] and "translation_en_to_de" in error["msg"]


def test_half_a_language_pair_is_rejected(model_dir):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="give both src_lang and tgt_lang .*got src_lang=None, tgt_lang='de'"):
        get_operator("translation")(model_dir, tgt_lang="de")({"text": TEXTS[:1]})


def test_language_codes_parity_with_legacy_pipeline_mbart(tiny_model, legacy_pipeline):
    mbart_dir = tiny_model("translation", "mbart")
    langs = {"src_lang": "en_XX", "tgt_lang": "de_DE"}
    expected = legacy_pipeline("translation", mbart_dir, TEXTS, call_kwargs=langs)
    op = get_operator("translation")(mbart_dir, max_batch_rows=3, **langs)
    de_id = op.processor.convert_tokens_to_ids("de_DE")
    assert op.generation_settings["forced_bos_token_id"] == de_id
    prepared = op.preprocess({"text": TEXTS[:1]})
    ids = list(prepared["features"][0]["input_ids"])
    assert ids[-2:] == [op.processor.eos_token_id, op.processor.convert_tokens_to_ids("en_XX")]
    out = op({"text": TEXTS})
    assert out["error"] == [None] * len(TEXTS)
    assert out["translation_text"] == [e[0]["translation_text"] for e in expected]
    assert len(set(out["translation_text"])) == len(TEXTS)
    raw = op.forward(prepared)["raw"][0]
    assert raw[0] == de_id  # the target language is forced as the first generated token
    fr = op.with_options(tgt_lang="fr_XX")({"text": TEXTS[:3]})["translation_text"]
    assert fr != out["translation_text"][:3]
