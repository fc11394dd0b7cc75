"""A finished job's output, read as the job wrote it: the `_SUCCESS` manifest, the Parquet
data files beside it (local or s3://, through pipelines.storage like the job itself), and
which output column holds what for each task.

Reading is in two passes so that an output of millions of rows stays cheap to report on:
`read_index` reads only the id, the `error` columns and the label/score leaves the charts
need (nested leaves such as `segments.label` without the masks beside them); `fetch_rows`
then reads only the row groups that hold the sampled rows.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.manifest import SUCCESS_FILE
from pipelines.storage import Location, is_hidden, read_text, resolve

if TYPE_CHECKING:
    import pyarrow

    from pipelines.spec import JobSpec, without_removed_fields

# Result columns the report never shows and that would only make the row reads larger:
# depth-estimation's float rows (its `depth` PNG is what the page draws).
UNSHOWN_COLUMNS = ("predicted_depth",)
FILE_COLUMN, ROW_COLUMN = "__file__", "__row__"


class ReportInputError(ValueError):
    """OUTPUT is not a finished taskray output (no _SUCCESS, no data, an unreadable manifest)."""


@dataclass
class TaskColumns:
    """One task of the job, as its output columns name it."""

    name: str  # the column prefix: TaskSpec.name or the task id
    task: str
    model: str
    results: dict[str, str]  # result column ("label", "objects", "error", ...) -> output column
    inputs: dict[str, str | None]  # input role -> output column holding it, None when not kept
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> str:
        return self.results["error"]


@dataclass
class JobOutput:
    location: Location
    manifest: dict[str, Any]
    spec: "JobSpec"
    id_column: str
    files: list[str]
    schema: "pyarrow.Schema"
    leaves: list[str]  # Parquet column paths of the first file (nested leaves dotted)
    tasks: list[TaskColumns]

    @property
    def uri(self) -> str:
        return self.location.uri


def open_output(uri: str) -> JobOutput:
    """The finished output at `uri`. Raises ReportInputError when it is not one."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from operators import get_operator
    from pipelines.spec import JobSpec, without_removed_fields

    location = resolve(uri)
    text = read_text(location, posixpath.join(location.path, SUCCESS_FILE))
    if text is None:
        raise ReportInputError(
            f"{location.uri} has no {SUCCESS_FILE}: the job did not finish there (or it is not a taskray output); "
            "resume it with `taskray run ... --resume` first"
        )
    try:
        manifest = json.loads(text)
        # Outputs of earlier versions record sizing fields that taskray now picks itself.
        spec = JobSpec.model_validate(without_removed_fields(manifest["spec"]))
    except Exception as e:  # a manifest from another version or a damaged file: say which
        raise ReportInputError(f"{location.uri}/{SUCCESS_FILE} is not a taskray manifest this version reads: {e}") from e

    infos = location.filesystem.get_file_info(pafs.FileSelector(location.path, recursive=False))
    # The files the job's own finalize counted: visible *.parquet directly under the output.
    files = sorted(
        i.path for i in infos
        if i.type == pafs.FileType.File and i.path.endswith(".parquet") and not is_hidden(posixpath.basename(i.path))
    )
    if not files:
        raise ReportInputError(f"{location.uri} has a {SUCCESS_FILE} but no Parquet data files")
    with location.filesystem.open_input_file(files[0]) as f:
        parquet_schema = pq.ParquetFile(f).schema
        schema = parquet_schema.to_arrow_schema()
    leaves = [parquet_schema.column(i).path for i in range(len(parquet_schema))]
    names = set(schema.names)
    id_column = spec.id_column or "id"
    tasks = []
    for t in spec.tasks:
        op = get_operator(t.task)
        results = {c: spec.output_column(t, c) for c in (*op.output_columns, "error")}
        results = {c: name for c, name in results.items() if name in names}
        if "error" not in results:
            raise ReportInputError(f"{location.uri}: the data files have no {spec.output_column(t, 'error')!r} column")
        inputs = {role: (col if col in spec.keep_columns and col in names else None) for role, col in t.role_columns().items()}
        tasks.append(TaskColumns(t.column_prefix, t.task, t.model, results, inputs, dict(t.options)))
    return JobOutput(location, manifest, spec, id_column, files, schema, leaves, tasks)


def leaf_paths(output: JobOutput, column: str, fields: tuple[str, ...]) -> list[str]:
    """The Parquet leaf paths of `column` that are members `fields` of its list items
    (`objects.list.element.label`), or [column] when it is a plain column. Whole nested columns
    are never selected: `segments` carries a PNG per mask."""
    if column not in output.schema.names:
        return []
    if column in output.leaves:
        return [column]
    found = {}
    for path in output.leaves:
        parts = path[len(column) + 1:].split(".") if path.startswith(column + ".") else []
        # list<struct> leaves: <column>.list.<item>.<member>, the item named "element" in
        # compliant Parquet and "item" by older writers
        if len(parts) == 3 and parts[0] == "list" and parts[2] in fields:
            found[parts[2]] = path
    return [found[f] for f in fields if f in found]


def read_index(output: JobOutput, extra_paths: list[str]) -> "pyarrow.Table":
    """Every row's id and task errors, plus `extra_paths` (plain columns or leaf paths), with
    each row's file and row number in it (FILE_COLUMN, ROW_COLUMN)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    wanted = [output.id_column, *(t.error for t in output.tasks), *extra_paths]
    tables = []
    for i, path in enumerate(output.files):
        with output.location.filesystem.open_input_file(path) as f:
            table = pq.ParquetFile(f).read(columns=list(dict.fromkeys(wanted)))
        table = table.append_column(FILE_COLUMN, pa.array([i] * table.num_rows, pa.int32()))
        table = table.append_column(ROW_COLUMN, pa.array(range(table.num_rows), pa.int64()))
        tables.append(table)
    return pa.concat_tables(tables, promote_options="permissive")


def fetch_rows(output: JobOutput, positions: list[tuple[int, int]]) -> dict[tuple[int, int], dict[str, Any]]:
    """The rows at (file, row) positions, as dicts of every column the report shows. Reads only
    the row groups that hold them."""
    import pyarrow.parquet as pq

    columns = [n for n in output.schema.names if not n.endswith(tuple(f".{c}" for c in UNSHOWN_COLUMNS)) and n not in UNSHOWN_COLUMNS]
    by_file: dict[int, list[int]] = {}
    for file_index, row in positions:
        by_file.setdefault(file_index, []).append(row)
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for file_index, wanted in sorted(by_file.items()):
        with output.location.filesystem.open_input_file(output.files[file_index]) as f:
            parquet = pq.ParquetFile(f)
            present = [c for c in columns if c in parquet.schema_arrow.names]
            start = 0
            for group in range(parquet.metadata.num_row_groups):
                size = parquet.metadata.row_group(group).num_rows
                inside = [r for r in wanted if start <= r < start + size]
                if inside:
                    table = parquet.read_row_group(group, columns=present)
                    for r in inside:
                        rows[(file_index, r)] = table.slice(r - start, 1).to_pylist()[0]
                start += size
    return rows
