"""The operator base's fan-out (row_pieces / merge_pieces): pieces of all rows share
micro-batches, rows come back whole and in order, and a failed piece fails only its row."""

from __future__ import annotations

from typing import Any

from operators.base import Operator


class Splitter(Operator):
    """A model-free operator: each text splits into words (pieces), a "model" upper-cases a
    micro-batch of words, and the merge joins them back."""

    input_roles = ("text",)
    output_columns = ("text",)

    def __init__(self, **options: Any):
        super().__init__("no-model", device="cpu", batch_budget=6, **options)
        self._model = object()  # forward() loads the model first; there is none to load
        self.batches: list[list[str]] = []

    def check_config(self):
        pass  # no checkpoint to check

    def preprocess_rows(self, rows):
        return [{"words": row["text"].split()} for row in rows]

    def row_pieces(self, features):
        return [{"input_ids": word} for word in features["words"]]  # row_length: the word's length

    def forward_batch(self, pieces):
        words = [p["input_ids"] for p in pieces]
        self.batches.append(words)
        if "boom" in words:
            raise RuntimeError("the model failed on 'boom'")
        return [w.upper() for w in words]

    def merge_pieces(self, outputs, features):
        return " ".join(outputs)

    def postprocess_row(self, raw, features):
        return {"text": raw}


def test_pieces_of_many_rows_share_micro_batches_and_merge_in_order():
    op = Splitter(max_batch_rows=4)
    texts = ["ab cd ef", "gh", "ij kl"]
    out = op({"text": texts})
    assert out == {"text": ["AB CD EF", "GH", "IJ KL"], "error": [None, None, None]}
    # 6 two-letter words under a budget of 6 (rows x longest): two micro-batches of 3 words,
    # so one holds words of two rows.
    row_of = {word: row for row, text in enumerate(texts) for word in text.split()}
    assert sorted(len(b) for b in op.batches) == [3, 3]
    assert any(len({row_of[w] for w in batch}) > 1 for batch in op.batches)


def test_a_failed_piece_fails_only_its_row():
    op = Splitter()
    out = op({"text": ["ab boom", "cd", "ef gh"]})
    assert out["error"] == ["forward: the model failed on 'boom'", None, None]
    assert out["text"] == [None, "CD", "EF GH"]


def test_a_row_with_no_pieces_is_a_row_error():
    op = Splitter()
    out = op({"text": ["   ", "ab"]})
    assert out["error"] == ["forward: the row has no model inputs", None]
    assert out["text"] == [None, "AB"]


def test_one_piece_per_row_by_default():
    class Plain(Splitter):
        row_pieces = Operator.row_pieces
        merge_pieces = Operator.merge_pieces

        def preprocess_rows(self, rows):
            return [{"input_ids": row["text"]} for row in rows]

    assert Plain()({"text": ["ab", "cde"]})["text"] == ["AB", "CDE"]
