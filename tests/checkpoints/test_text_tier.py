"""The text tier: published configurations of the text checkpoints users bring most
(tiny_models/tier_text.py), held to the reference on the same directory:
transformers.pipeline (5.24) for text and token classification, SentenceTransformer.encode for
feature-extraction, and transformers 4.57's pipeline for question-answering.

Stands for: distilbert-base-uncased-finetuned-sst-2-english; cardiffnlp/twitter-roberta-base-
sentiment-latest (and the other twitter-roberta models: no tokenizer_config.json, so no token
limit from the tokenizer); SamLowe/roberta-base-go_emotions (multi-label); Davlan/xlm-roberta-
base-ner-hrl (XLM-R NER, the word heuristic for tokenizers without a subword prefix);
deepset/roberta-base-squad2 (SQuAD2 impossible answers).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from operators import get_operator
from tiny_models.tier_text import squad_examples
from tiny_models.tokenizers import corpus
from tests.operators.texts import VARIED_TEXTS

# fp32 on the CPU. The re-centred heads (weights scaled up so that labels vary) magnify the
# rounding of padded micro-batches; labels must be equal, scores within these.
SCORE_TOL = 1e-3
ENTITY_TOL = 1e-4
QA_TOL = 1e-4  # v4 and v5 run the same RoBERTa kernels; batching only reorders sums
EMBED_ATOL = 1e-5


def long_texts() -> list[str]:
    """Prose of about 2,000 tokens each for the tiny tokenizers: past RoBERTa's 512."""
    docs = corpus()
    return [" ".join(docs[i].split())[:6000] for i in (20, 21, 25)]


@pytest.fixture(scope="module")
def build(checkpoint_model):
    return checkpoint_model


def _classify(op, texts):
    out = op({"text": texts})
    assert out["error"] == [None] * len(texts), out["error"]
    return out


def _same_scores(got: list[dict], want: list[dict], tol: float) -> None:
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=tol)


# ---------------------------------------------------------------------- text-classification


def test_distilbert_sst2_parity_with_pipeline(build):
    from transformers import pipeline

    path = build("distilbert-base-uncased-finetuned-sst-2-english")
    op = get_operator("text-classification")(path, max_batch_rows=4, top_k=2)
    prepared = op.preprocess({"text": VARIED_TEXTS[:2]})
    assert "token_type_ids" not in prepared["features"][0], "DistilBERT takes no token types"
    assert op.max_tokens() == 512
    out = _classify(op, VARIED_TEXTS)
    reference = pipeline("text-classification", model=path, device="cpu")
    for i, text in enumerate(VARIED_TEXTS):
        _same_scores(out["scores"][i], reference(text, top_k=2), SCORE_TOL)
    assert set(out["label"]) == {"NEGATIVE", "POSITIVE"}


@pytest.fixture(scope="module")
def twitter_roberta(build):
    return build("cardiffnlp/twitter-roberta-base-sentiment-latest")


def test_twitter_roberta_ships_no_token_limit_and_the_model_sets_it(twitter_roberta):
    assert not os.path.exists(os.path.join(twitter_roberta, "tokenizer_config.json")), "as published"
    op = get_operator("text-classification")(twitter_roberta)
    assert op.processor.model_max_length >= 10**29  # transformers' unset limit
    assert op.model_config.max_position_embeddings == 514
    assert op.max_tokens() == 512  # positions 2..513: RoBERTa numbers them from padding_idx + 1
    assert op.with_options(max_length=100).max_tokens() == 100
    assert op.with_options(max_length=4096).max_tokens() == 512


def test_twitter_roberta_parity_within_the_limit(twitter_roberta):
    from transformers import pipeline

    op = get_operator("text-classification")(twitter_roberta, max_batch_rows=4, top_k=3)
    out = _classify(op, VARIED_TEXTS)
    reference = pipeline("text-classification", model=twitter_roberta, device="cpu")
    for i, text in enumerate(VARIED_TEXTS):
        _same_scores(out["scores"][i], reference(text, top_k=3), SCORE_TOL)
    assert len(set(out["label"])) > 1


def test_twitter_roberta_long_rows_get_the_pipelines_answer_on_the_truncated_text(twitter_roberta):
    """Problem 3 of issue 24: the tokenizer's limit is 1e30, so nothing truncated these rows and
    every one failed with an index error past position 513 (on CUDA a device-side assert that
    kills the actor). Deliberate difference: pipeline() raises on them even with
    truncation=True (it truncates to the tokenizer's limit); taskray gives the answer the
    pipeline gives when told the model's limit."""
    from transformers import pipeline

    texts = long_texts()
    op = get_operator("text-classification")(twitter_roberta, max_batch_rows=2, top_k=3)
    assert all(len(op.processor(t)["input_ids"]) > 1000 for t in texts)
    out = op({"text": [VARIED_TEXTS[0], *texts, VARIED_TEXTS[1]]})
    assert out["error"] == [None] * (len(texts) + 2)
    reference = pipeline("text-classification", model=twitter_roberta, device="cpu")
    with pytest.raises((IndexError, RuntimeError), match="out of (bounds|range)"):
        reference(texts[0], truncation=True)
    for i, text in enumerate(texts, start=1):
        _same_scores(out["scores"][i], reference(text, top_k=3, truncation=True, max_length=512), SCORE_TOL)
    # with truncation off, the long rows are refused alone, before the model
    refused = op.with_options(truncation=False)({"text": [texts[0], VARIED_TEXTS[0]]})
    assert refused["error"][0].startswith("preprocess: input has ")
    assert refused["error"][0].endswith("the model takes at most 512 (truncation is off)")
    assert refused["error"][1] is None and refused["label"][1] == out["label"][0]


def test_go_emotions_multi_label_scores_are_sigmoids(build):
    from transformers import pipeline

    path = build("SamLowe/roberta-base-go_emotions")
    op = get_operator("text-classification")(path, max_batch_rows=4, top_k=28)
    assert op.model_config.problem_type == "multi_label_classification"
    out = _classify(op, VARIED_TEXTS)
    reference = pipeline("text-classification", model=path, device="cpu")
    for i, text in enumerate(VARIED_TEXTS):
        want = reference(text, top_k=28)
        _same_scores(out["scores"][i], want, SCORE_TOL)
        assert abs(sum(w["score"] for w in want) - 1) > 0.1, "sigmoid per label, not a softmax"
    assert len(set(out["label"])) > 2
    softmax = op.with_options(function_to_apply="softmax", top_k=3)({"text": VARIED_TEXTS[:3]})
    for i, text in enumerate(VARIED_TEXTS[:3]):
        _same_scores(softmax["scores"][i], reference(text, top_k=3, function_to_apply="softmax"), SCORE_TOL)


# ---------------------------------------------------------------------- token-classification


@pytest.fixture(scope="module")
def xlmr_ner(build):
    return build("Davlan/xlm-roberta-base-ner-hrl")


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_xlm_roberta_ner_parity_with_pipeline(xlmr_ner, strategy):
    from transformers import pipeline

    texts = [*VARIED_TEXTS, long_texts()[0]]  # the long one is truncated to 512 tokens by both
    op = get_operator("token-classification")(xlmr_ner, aggregation_strategy=strategy, max_batch_rows=4)
    assert op.max_tokens() == 512
    # sentencepiece Unigram: no continuing-subword prefix, so words come from pipeline()'s heuristic
    assert type(op.processor.backend_tokenizer.model).__name__ == "Unigram"
    out = op({"text": texts})
    assert out["error"] == [None] * len(texts)
    reference = pipeline("token-classification", model=xlmr_ner, device="cpu", aggregation_strategy=strategy)
    found = set()
    for i, text in enumerate(texts):
        want = reference(text)
        assert len(out["entities"][i]) == len(want)
        for got, w in zip(out["entities"][i], want):
            assert {k: v for k, v in got.items() if k != "score"} == {
                k: (int(v) if isinstance(v, np.integer) else v) for k, v in w.items() if k != "score"
            }
            assert got["score"] == pytest.approx(float(w["score"]), abs=ENTITY_TOL)
            found.add(got.get("entity_group") or got["entity"])
    assert len(found) > 2, "the calibrated tiny model should find several entity types"


@pytest.mark.parametrize("strategy", ["simple", "max"])
def test_xlm_roberta_ner_stride_windows_match_the_pipelines(xlmr_ner, strategy):
    """Long texts in overlapping windows (pipeline(stride=...)): entities from the whole text,
    merged where windows overlap by the pipeline's own aggregate_overlapping_entities."""
    from transformers import pipeline

    texts = [VARIED_TEXTS[3], *long_texts()[:2]]
    op = get_operator("token-classification")(xlmr_ner, aggregation_strategy=strategy, stride=64, max_batch_rows=4)
    prepared = op.preprocess({"text": texts})
    assert [len(f["chunks"]) for f in prepared["features"]][0] == 1
    assert min(len(f["chunks"]) for f in prepared["features"][1:]) > 2
    out = op.postprocess(op.forward(prepared), prepared)
    assert out["error"] == [None] * len(texts)
    reference = pipeline("token-classification", model=xlmr_ner, device="cpu", aggregation_strategy=strategy, stride=64)
    truncated = op.with_options(stride=None)({"text": texts[1:]})
    for i, text in enumerate(texts):
        want = reference(text)
        assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in out["entities"][i]] == [
            (w["entity_group"], w["word"], w["start"], w["end"]) for w in want
        ]
        assert [e["score"] for e in out["entities"][i]] == pytest.approx([float(w["score"]) for w in want], abs=ENTITY_TOL)
    for windowed, cut in zip(out["entities"][1:], truncated["entities"]):
        assert max(e["end"] for e in windowed) > max(e["end"] for e in cut), "entities past the first 512 tokens"


def test_ner_stride_settings_the_pipeline_refuses_are_refused_before_any_row(xlmr_ner):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs an aggregation_strategy other than none"):
        get_operator("token-classification")(xlmr_ner, stride=64).check_config()
    with pytest.raises(ValidationError, match=r"stride \(510\) must be below the 510 text tokens of a window"):
        get_operator("token-classification")(xlmr_ner, stride=510, aggregation_strategy="simple").check_config()


# ---------------------------------------------------------------------- question-answering


@pytest.mark.parametrize(
    "options",
    [{"handle_impossible_answer": True}, {}, {"handle_impossible_answer": True, "top_k": 3, "doc_stride": 64}],
    ids=["impossible", "default", "impossible-topk"],
)
def test_roberta_squad2_parity_with_transformers_457(build, legacy_pipeline, options):
    path = build("deepset/roberta-base-squad2")
    examples = squad_examples()
    op = get_operator("question-answering")(path, max_batch_rows=4, **options)
    assert op._window()[0] == 384
    out = op({"question": [e["question"] for e in examples], "context": [e["context"] for e in examples]})
    assert out["error"] == [None] * len(examples)
    expected = legacy_pipeline("question-answering", path, examples, call_kwargs=options)
    for i, want in enumerate(expected):
        want_list = want if isinstance(want, list) else [want]
        got_list = out["answers"][i] if options.get("top_k") else [
            {k: out[k][i] for k in ("answer", "score", "start", "end")}
        ]
        assert [(g["answer"], g["start"], g["end"]) for g in got_list] == [
            (w["answer"], w["start"], w["end"]) for w in want_list
        ]
        assert [g["score"] for g in got_list] == pytest.approx([w["score"] for w in want_list], abs=QA_TOL)
    if options.get("handle_impossible_answer") and not options.get("top_k"):
        empty = sum(a == "" for a in out["answer"])
        assert 0 < empty < len(examples), "SQuAD2: some questions have no answer, others do"


def test_roberta_squad2_windows_are_capped_by_the_models_positions(build, legacy_pipeline):
    """max_seq_len past the 512 positions: 4.57 fails every long context; taskray caps the
    windows at 512 and answers as 4.57 does with max_seq_len=512."""
    path = build("deepset/roberta-base-squad2")
    examples = [e for e in squad_examples() if len(e["context"]) >= 1200][:3]
    op = get_operator("question-answering")(path, max_seq_len=1024)
    prepared = op.preprocess({"question": [e["question"] for e in examples], "context": [e["context"] for e in examples]})
    assert max(len(ids) for f in prepared["features"] for ids in f["ids"]) == 512
    out = op.postprocess(op.forward(prepared), prepared)
    assert out["error"] == [None] * len(examples)
    expected = legacy_pipeline("question-answering", path, examples, call_kwargs={"max_seq_len": 512})
    assert out["answer"] == [w["answer"] for w in expected]
    assert out["score"] == pytest.approx([w["score"] for w in expected], abs=QA_TOL)


# ---------------------------------------------------------------------- feature-extraction


def test_twitter_roberta_embeddings_match_encode_and_long_rows_are_capped(build):
    """A plain RoBERTa checkpoint without tokenizer_config.json: encode() mean-pools with
    max_seq_length min(514 positions, 1e30) = 514 and fails on long texts; taskray caps at 512
    and equals encode() told max_seq_length 512."""
    from sentence_transformers import SentenceTransformer

    path = build("cardiffnlp/twitter-roberta-base")
    op = get_operator("feature-extraction")(path, max_batch_rows=4)
    texts = [*VARIED_TEXTS, *long_texts()[:2]]
    out = op({"text": texts})
    assert out["error"] == [None] * len(texts)
    reference = SentenceTransformer(path, device="cpu")
    assert reference.max_seq_length == 514
    with pytest.raises((IndexError, RuntimeError), match="out of (bounds|range)"):
        reference.encode(texts[-1:])
    reference.max_seq_length = 512
    want = reference.encode(texts, batch_size=1)
    np.testing.assert_allclose(np.asarray(out["embedding"]), want, rtol=1e-4, atol=EMBED_ATOL)


@pytest.mark.parametrize(
    "task, hub_id, options",
    [
        ("token-classification", "Davlan/xlm-roberta-base-ner-hrl", {"aggregation_strategy": "simple"}),
        ("feature-extraction", "cardiffnlp/twitter-roberta-base", {"prompt": "query: "}),
    ],
)
def test_truncation_off_refuses_only_the_long_row(build, task, hub_id, options):
    op = get_operator(task)(build(hub_id), **options)
    column = op.output_columns[0]
    clean = op({"text": VARIED_TEXTS[:2]})
    out = op.with_options(truncation=False)({"text": [VARIED_TEXTS[0], long_texts()[0], VARIED_TEXTS[1]]})
    assert out["error"][1].startswith("preprocess: input has ")
    assert out["error"][1].endswith("the model takes at most 512 (truncation is off)")
    assert out["error"][0] is None and out["error"][2] is None
    assert out[column][1] is None
    if task == "feature-extraction":
        np.testing.assert_allclose([out[column][0], out[column][2]], clean[column], atol=EMBED_ATOL)
    else:
        for got, want in zip([out[column][0], out[column][2]], clean[column]):
            assert [{**e, "score": None} for e in got] == [{**e, "score": None} for e in want]
            assert [e["score"] for e in got] == pytest.approx([e["score"] for e in want], abs=ENTITY_TOL)
