"""What a task's results look like to those who read them, declared by each task operator next
to its output columns:

- `response` (ResponseShape): how one row becomes the answer `transformers.pipeline` gives for
  one input; the Serve endpoints (pipelines/serve/codec.py) shape every answer from it.
- `label_source` (LabelSource): where its labels and scores are; the report's charts count them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Row = Mapping[str, Any]


@dataclass(frozen=True)
class ResponseShape:
    """`single`: one row's answer.

    `unwrap_in_list`: for a list of inputs, pipeline() returns the lone record of a one-record
    answer instead of a one-item list (text-classification without top_k, summarization,
    translation in transformers 4.57).

    `wrap_single`: a single input's answer is `[answer]`, one list per input as the HF
    Inference API answers text-classification (`[[{label, score}, ...]]`). A deliberate
    difference from pipeline(text): InferenceClient.text_classification reads `response[0]`
    as the list of labels of its one text.
    """

    single: Callable[[Row], Any]
    unwrap_in_list: bool = False
    wrap_single: bool = False


def ranked(row: Row) -> list[dict[str, Any]]:
    """Classification: the top-k list when `scores` was asked for, else the best label."""
    if row.get("scores") is not None:
        return list(row["scores"])
    return [{"label": row["label"], "score": row["score"]}]


def column(name: str) -> Callable[[Row], Any]:
    return lambda row: row[name]


def fields(*names: str) -> Callable[[Row], dict[str, Any]]:
    return lambda row: {n: row[n] for n in names}


def one_record(*names: str) -> Callable[[Row], list[dict[str, Any]]]:
    return lambda row: [{n: row[n] for n in names}]


@dataclass(frozen=True)
class LabelSource:
    """Where a task's labels and scores are. Plain: `column` is the label column and `score`
    the score column. Nested (`label_fields` set): `column` is a list column and `score` and
    `label_fields` are members of its items (the first label field present wins)."""

    column: str | None
    score: str | None
    label_fields: tuple[str, ...] = ()
    unit: str = "rows"  # what one count is
