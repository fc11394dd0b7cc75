"""What a task's results look like to those who read them, declared by each task operator next
to its output columns:

- `response` (ResponseShape): how one row becomes the answer `transformers.pipeline` gives for
  one input; the Serve endpoints (pipelines/serve/codec.py) shape every answer from it.
- `label_source` (LabelSource): where its labels and scores are; the report's charts count them.
- `output_types`: the Arrow type of each result column, so every file an offline job writes
  has one schema by construction (a block whose rows all failed included).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

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


def struct(**fields: pa.DataType) -> pa.DataType:
    return pa.struct(list(fields.items()))


RANKED_LABELS = pa.list_(struct(label=pa.string(), score=pa.float64()))
# text, image and audio classification: the best label, and the top-k list when asked for
CLASSIFICATION_TYPES = {"label": pa.string(), "score": pa.float64(), "scores": RANKED_LABELS}
IMAGE_SIZE_TYPES = {"image_width": pa.int64(), "image_height": pa.int64()}


def missing_or_extra_fields(value: Any, arrow_type: pa.DataType) -> str | None:
    """Where a result value's dict keys differ from its declared struct (Arrow would drop an
    undeclared key without a word), checked along the first value at each level; None if they match."""
    if value is None:
        return None
    if pa.types.is_struct(arrow_type):
        if not isinstance(value, Mapping):
            return None  # Arrow itself refuses a non-mapping for a struct
        declared = {arrow_type.field(i).name for i in range(arrow_type.num_fields)}
        if set(value) != declared:
            return f"keys {sorted(value)} are not the declared {sorted(declared)}"
        for i in range(arrow_type.num_fields):
            field = arrow_type.field(i)
            problem = missing_or_extra_fields(value[field.name], field.type)
            if problem:
                return f"{field.name}: {problem}"
        return None
    if pa.types.is_list(arrow_type) and isinstance(value, (list, tuple)):
        return next((p for p in (missing_or_extra_fields(v, arrow_type.value_type) for v in value[:1]) if p), None)
    return None
