"""What the report counts for each task's charts: labels (one bar each) and scores (a
histogram), over every row of the output, from the columns and nested leaves that hold them
(where they are is the operator's `label_source`, operators/results.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from operators import get_operator
from pipelines.job_output import JobOutput, TaskColumns, leaf_paths

if TYPE_CHECKING:
    import pyarrow

MAX_BARS = 30  # labels beyond the 29 most frequent are summed into one "other" bar


@dataclass
class Distribution:
    unit: str
    labels: list[tuple[str, int]]  # (label, count), most frequent first, "other" last
    scores: list[float]


def index_paths(output: JobOutput, task: TaskColumns) -> list[str]:
    """The columns or nested leaves that read_index must read for this task's charts."""
    source = get_operator(task.task).label_source
    if source is None:
        return []
    if source.label_fields:
        if source.column not in task.results:
            return []
        members = (*source.label_fields, *([source.score] if source.score else []))
        return leaf_paths(output, task.results[source.column], members)
    return [task.results[c] for c in (source.column, source.score) if c in task.results]


def distribution(index: "pyarrow.Table", task: TaskColumns) -> Distribution | None:
    """Label counts and scores of one task over the rows in `index` (see index_paths)."""
    import pyarrow.compute as pc

    source = get_operator(task.task).label_source
    if source is None:
        return None
    labels: list = []
    scores: list = []
    if source.label_fields:
        column = task.results.get(source.column or "")
        if column is None or column not in index.column_names:
            return None
        items = pc.list_flatten(index.column(column))
        members = {items.type.field(i).name for i in range(items.type.num_fields)}
        label_field = next((f for f in source.label_fields if f in members), None)
        if label_field:
            labels = pc.struct_field(items, label_field).to_pylist()
        if source.score in members:
            scores = pc.struct_field(items, source.score).to_pylist()
    else:
        for name, values in ((source.column, labels), (source.score, scores)):
            column = task.results.get(name or "")
            if column is not None and column in index.column_names:
                values.extend(index.column(column).to_pylist())
    counts: dict[str, int] = {}
    for label in labels:
        if label is not None:
            counts[str(label)] = counts.get(str(label), 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) > MAX_BARS:
        rest = ranked[MAX_BARS - 1 :]
        ranked = ranked[: MAX_BARS - 1] + [(f"other ({len(rest)} labels)", sum(c for _, c in rest))]
    return Distribution(source.unit, ranked, [float(s) for s in scores if isinstance(s, (int, float))])
