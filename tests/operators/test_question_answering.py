"""question-answering: parity with transformers 4.57's pipeline (v5 removed it), including
contexts longer than one window (doc_stride) and handle_impossible_answer."""

from __future__ import annotations

import pytest

from operators import get_operator
from tiny_models.tokenizers import corpus

SCORE_TOL = 1e-4  # fp32; v4 and v5 run the same BERT kernels, batching only reorders sums


def _examples() -> list[dict[str, str]]:
    docs = [" ".join(d.split()) for d in corpus()[:12]]
    questions = ["What does it do?", "Which statement is used?", "How is the value computed?", "Why?"]
    examples = []
    for i, doc in enumerate(docs[:9]):
        length = [120, 400, 900, 2500][i % 4]  # short contexts and ones spanning several windows
        examples.append({"question": questions[i % len(questions)], "context": doc[:length]})
    return examples


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model("question-answering")


@pytest.mark.parametrize(
    "options",
    [{}, {"handle_impossible_answer": True}, {"top_k": 3, "max_answer_len": 8, "doc_stride": 32}],
    ids=["default", "impossible", "topk-stride"],
)
def test_parity_with_transformers_457(model_dir, legacy_pipeline, options):
    examples = _examples()
    op = get_operator("question-answering")(model_dir, max_batch_rows=3, **options)
    tokenizer = op.processor
    windows = [len(tokenizer(e["question"], e["context"], truncation="only_second", max_length=128,
                             stride=64, return_overflowing_tokens=True)["input_ids"]) for e in examples]
    assert max(windows) > 2, "some contexts must span several windows"

    out = op({"question": [e["question"] for e in examples], "context": [e["context"] for e in examples]})
    assert out["error"] == [None] * len(examples)
    expected = legacy_pipeline("question-answering", model_dir, examples, call_kwargs=options)
    for i, want in enumerate(expected):
        want_list = want if isinstance(want, list) else [want]
        got_list = out["answers"][i] if options.get("top_k") else [
            {k: out[k][i] for k in ("answer", "score", "start", "end")}
        ]
        assert [g["answer"] for g in got_list] == [w["answer"] for w in want_list]
        for g, w in zip(got_list, want_list):
            assert (g["start"], g["end"]) == (w["start"], w["end"])
            assert g["score"] == pytest.approx(w["score"], abs=SCORE_TOL)
        assert examples[i]["context"][out["start"][i]:out["end"][i]] == out["answer"][i]


def test_bad_rows_are_isolated(model_dir):
    op = get_operator("question-answering")(model_dir)
    good = {"question": "What is it?", "context": "A for loop iterates over the items of a sequence."}
    out = op({
        "question": [good["question"], "", None, good["question"]],
        "context": [good["context"], good["context"], good["context"], 7],
    })
    assert out["error"][0] is None
    assert out["error"][1:] == [
        "input: empty question",
        "input: expected question as str, got None",
        "input: expected context as str, got int",
    ]
    alone = op({"question": [good["question"]], "context": [good["context"]]})
    assert (out["answer"][0], out["start"][0]) == (alone["answer"][0], alone["start"][0])


def test_settings_every_row_would_fail_on_are_refused_before_any_row(model_dir, tmp_path):
    import json
    import shutil

    from pydantic import ValidationError

    op = get_operator("question-answering")(model_dir).load()
    assert op._window() == (128, 64)  # min(model_max_length 128, 384), half of it
    with pytest.raises(ValidationError, match=r"doc_stride \(200\) is larger than the window \(128 tokens\)"):
        op.with_options(doc_stride=200)
    left = tmp_path / "left-padding"
    shutil.copytree(model_dir, left)
    config_path = left / "tokenizer_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "padding_side": "left"}))
    with pytest.raises(ValueError, match="pads on the left, which puts the context first"):
        get_operator("question-answering")(str(left)).check_config()
