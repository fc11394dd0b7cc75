"""Bad text input to the generation operators: per-row errors, one output row per input row,
and the good rows beside them unchanged."""

from __future__ import annotations

import pytest

from operators import get_operator
from tests.operators.generation_texts import TEXTS, one_torch_thread

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TASKS = {
    "text-generation": ("text-generation", "generated_text", {"do_sample": False}),
    "summarization": ("summarization", "summary_text", {"num_beams": 1}),
    "translation": ("translation", "translation_text", {"num_beams": 1}),
}
HUGE = "word " * 250_000  # 1.25 M characters, above the 1 M default limit


@pytest.fixture(scope="module", params=sorted(TASKS))
def task_op(request, tiny_model):
    task, column, options = TASKS[request.param]
    return get_operator(task)(tiny_model(task), max_batch_rows=3, **options).load(), column


def test_bad_rows_become_errors_and_neighbours_keep_their_output(task_op):
    op, column = task_op
    good = op({"text": [TEXTS[0], TEXTS[3]]})
    out = op({"text": [TEXTS[0], "", None, 42, "   \n\t", HUGE, b"bytes", TEXTS[3]]})
    assert len(out[column]) == len(out["error"]) == 8
    assert out["error"][1:7] == [
        "input: empty text",
        "input: expected text as str, got None",
        "input: expected text as str, got int",
        "input: empty text",
        f"input: text too long: {len(HUGE)} characters exceeds 1000000",
        "input: expected text as str, got bytes",
    ]
    assert out[column][1:7] == [None] * 6
    assert out["error"][0] is None and out["error"][7] is None
    assert [out[column][0], out[column][7]] == good[column]


def test_long_input_is_truncated_or_refused_per_row(task_op):
    op, column = task_op
    long_text = " ".join(["statement"] * 400)  # a few hundred tokens, more than the 128 the models take
    out = op({"text": [long_text, TEXTS[1]]})
    if op.task == "text-generation":
        # Off by default, as in the pipeline: the prompt would overrun the positions.
        assert out["error"][0].startswith("preprocess: prompt has ")
        assert op.with_options(truncation=True)({"text": [long_text]})["error"] == [None]
    else:
        assert out["error"][0] is None and out[column][0]
        refused = op.with_options(truncation=False)({"text": [long_text]})
        assert refused["error"][0].startswith("preprocess: input has ") and "truncation is off" in refused["error"][0]
    assert out["error"][1] is None and out[column][1] == op({"text": [TEXTS[1]]})[column][0]


def test_all_rows_bad_and_empty_batch(task_op):
    op, column = task_op
    out = op({"text": [None, ""]})
    assert out == {column: [None, None], "error": ["input: expected text as str, got None", "input: empty text"]}
    assert op({"text": []}) == {column: [], "error": []}


# ---------------------------------------------------------------------- the token limit
# (operators/text_inputs.py: one limit for classification, NER, embeddings and QA windows)


ROBERTA_LIKE = {"pad_token_id": 1, "max_position_embeddings": 514}


@pytest.mark.parametrize(
    "config_class, fields, auto_model, expected",
    [
        ("RobertaConfig", ROBERTA_LIKE, "AutoModelForSequenceClassification", 512),  # numbered from padding_idx + 1
        ("XLMRobertaConfig", ROBERTA_LIKE, "AutoModelForTokenClassification", 512),
        ("CamembertConfig", ROBERTA_LIKE, "AutoModelForSequenceClassification", 512),
        ("MPNetConfig", {"max_position_embeddings": 512}, "AutoModel", 510),  # padding_idx 1, fixed by the model
        ("BertConfig", {"max_position_embeddings": 512}, "AutoModelForQuestionAnswering", 512),  # numbered from 0
        ("DistilBertConfig", {"max_position_embeddings": 512}, "AutoModelForSequenceClassification", 512),
        # relative positions, no table: the config's max_position_embeddings
        ("DebertaV2Config", {"max_position_embeddings": 512, "position_biased_input": False}, "AutoModel", 512),
    ],
)
def test_model_positions_ask_the_models_own_embeddings(config_class, fields, auto_model, expected):
    import transformers

    from operators.text_inputs import model_positions

    small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    if config_class == "DistilBertConfig":
        small = {"dim": 32, "n_layers": 1, "n_heads": 2, "hidden_dim": 64}
    config = getattr(transformers, config_class)(**small, **fields)
    assert model_positions(config, auto_model) == expected


def test_token_limit_is_the_smallest_known_one():
    from types import SimpleNamespace

    from operators.text_inputs import UNSET_TOKENIZER_LIMIT, token_limit

    unset = SimpleNamespace(model_max_length=UNSET_TOKENIZER_LIMIT)
    assert token_limit(unset, 512) == 512  # cardiffnlp: no tokenizer_config.json
    assert token_limit(unset, 512, option=4096) == 512
    assert token_limit(unset, 512, option=64) == 64
    assert token_limit(SimpleNamespace(model_max_length=128), 512) == 128
    assert token_limit(SimpleNamespace(model_max_length=128), None, option=100) == 100
    assert token_limit(unset, None) == 512  # nothing says: the usual encoder length
