"""The task an export reads: a finished job output opened as `taskray report` opens it
(pipelines/job_output.py: `_SUCCESS`, the Parquet files beside it, local or s3:// through
pipelines.storage), one of its tasks, the model's labels, and where each row's media is named.

Rows are read in batches of a few hundred with only the columns an export needs, so an output
of millions of rows exports in bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from pipelines.job_output import JobOutput, ReportInputError, TaskColumns, open_output

if TYPE_CHECKING:
    import pyarrow

READ_BATCH_ROWS = 256  # rows per read: a batch of segmentation rows carries their PNG masks
SIZE_COLUMNS = ("image_width", "image_height")


class ExportError(ValueError):
    """The output cannot be exported as asked (not finished, no such task, a column the export
    needs was not kept, a missing package). The message says what to do."""


@dataclass
class ExportSource:
    output: JobOutput
    task: TaskColumns
    id2label: dict[int, str] | None  # the model's labels by id, None when neither recorded nor loadable
    label_source: str  # where id2label came from, or why there is none
    name_column: str | None  # the column that names each row's media; None: the row id
    name_field: str | None = None  # the struct member of name_column holding it (HF {bytes, path})

    @property
    def model_version(self) -> str:
        spec = self.task_spec()
        return f"{self.task.model}@{spec.revision}" if spec is not None and spec.revision else self.task.model

    def task_spec(self):
        return next((t for t in self.output.spec.tasks if t.column_prefix == self.task.name), None)

    def media_name(self, row: dict[str, Any]) -> str:
        """What names the row's media: the kept path (column or HF struct member), else the id."""
        value = row.get(self.name_column) if self.name_column else None
        if isinstance(value, dict):
            value = value.get(self.name_field or "path")
        return str(value) if value not in (None, "") else str(row[self.output.id_column])

    def columns(self, *results: str, inputs: tuple[str, ...] = ()) -> list[str]:
        """Parquet column paths to read: the id, the task's error, `results` (result column
        names), the kept input columns of `inputs` (roles), and the media name."""
        paths = [self.output.id_column, self.task.error]
        paths += [self.task.results[r] for r in results if r in self.task.results]
        paths += [self.task.inputs[r] for r in inputs if self.task.inputs.get(r)]
        if self.name_column:
            paths.append(f"{self.name_column}.{self.name_field}" if self.name_field else self.name_column)
        return list(dict.fromkeys(paths))

    def batches(self, columns: list[str]) -> Iterator["pyarrow.RecordBatch"]:
        import pyarrow.parquet as pq

        for path in self.output.files:
            with self.output.location.filesystem.open_input_file(path) as f:
                parquet = pq.ParquetFile(f)
                yield from parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=columns)

    def rows(self, columns: list[str]) -> Iterator[dict[str, Any]]:
        """The rows whose task succeeded, in file order, as dicts keyed by output column (a
        nested path such as `image.path` comes back as its top column, a struct)."""
        for batch in self.batches(columns):
            for row in batch.to_pylist():
                if row.get(self.task.error) is None:
                    yield row

    def failed_rows(self) -> int:
        counts = self.output.manifest.get("tasks", {}).get(self.task.name, {})
        return int(counts.get("failed", 0))

    def result(self, row: dict[str, Any], column: str) -> Any:
        name = self.task.results.get(column)
        return None if name is None else row.get(name)

    def image_size(self, row: dict[str, Any]) -> tuple[int, int]:
        """(width, height) of the row's image, as the job recorded it."""
        width, height = (self.result(row, c) for c in SIZE_COLUMNS)
        if not isinstance(width, int) or not isinstance(height, int):
            raise ExportError(f"row {row[self.output.id_column]!r} has no recorded image size")
        return width, height

    def labels(self) -> list[str]:
        """The model's labels in id order, each once."""
        return list(dict.fromkeys(self.id2label.values())) if self.id2label else []


def open_source(uri: str, task: str | None, supported: tuple[str, ...], what: str, file_name: str | None = None) -> ExportSource:
    """The task of the finished output at `uri` that an export of `what` (a format name) reads.
    `task`: the task name (column prefix) in a multi-task output; None picks the only task of
    a `supported` kind. `file_name`: the kept column that names each row's media, or "id";
    None picks the kept `path` column, else the path member of the kept media column, else the id."""
    try:
        output = open_output(uri)
    except (ReportInputError, FileNotFoundError) as e:
        raise ExportError(str(e)) from None
    names = [t.name for t in output.tasks]
    if task is not None:
        chosen = next((t for t in output.tasks if t.name == task), None)
        if chosen is None:
            raise ExportError(f"{output.uri} has no task {task!r}; its tasks: {', '.join(names)}")
        if chosen.task not in supported:
            raise ExportError(f"task {task!r} is {chosen.task}; {what} exports {', '.join(supported)}")
    else:
        fitting = [t for t in output.tasks if t.task in supported]
        if not fitting:
            kinds = ", ".join(f"{t.name} ({t.task})" for t in output.tasks)
            raise ExportError(f"{output.uri} has no task that {what} exports ({', '.join(supported)}); its tasks: {kinds}")
        if len(fitting) > 1:
            raise ExportError(f"{output.uri} has several tasks {what} can export ({', '.join(t.name for t in fitting)}); name one with --task")
        chosen = fitting[0]
    id2label, label_source = _labels(output, chosen)
    name_column, name_field = _name_column(output, chosen, file_name)
    return ExportSource(output, chosen, id2label, label_source, name_column, name_field)


def _labels(output: JobOutput, task: TaskColumns) -> tuple[dict[int, str] | None, str]:
    """id2label as the job recorded it in `_SUCCESS`; for outputs written before it was
    recorded, the model's config loaded through the job's own loading code."""
    recorded = output.manifest.get("tasks", {}).get(task.name, {}).get("id2label")
    if recorded:
        return {int(k): str(v) for k, v in recorded.items()}, "the job's _SUCCESS"
    from pipelines.manifest import LABELLED_TASKS, model_id2label

    if task.task not in LABELLED_TASKS:
        return None, "the task has no class labels"
    spec = next(t for t in output.spec.tasks if t.column_prefix == task.name)
    loaded = model_id2label(spec.model_dump(mode="json"))
    if loaded:
        return {int(k): v for k, v in loaded.items()}, f"the config of {task.model}"
    return None, f"not recorded in _SUCCESS and the config of {task.model!r} did not load"


def _name_column(output: JobOutput, task: TaskColumns, file_name: str | None) -> tuple[str | None, str | None]:
    import pyarrow.types as pat

    schema = output.schema
    if file_name == "id":
        return None, None
    if file_name is not None:
        if file_name not in schema.names:
            raise ExportError(f"--file-name {file_name!r}: the output has no such column; its columns: {', '.join(schema.names)}")
        kind = schema.field(file_name).type
        if pat.is_struct(kind) and kind.get_field_index("path") >= 0:
            return file_name, "path"
        if not (pat.is_string(kind) or pat.is_large_string(kind)):
            raise ExportError(f"--file-name {file_name!r} is a {kind} column; name a column of strings (or 'id')")
        return file_name, None
    if "path" in output.spec.keep_columns and "path" in schema.names:
        return "path", None
    for role in ("image", "audio"):
        column = task.inputs.get(role)
        kind = schema.field(column).type if column else None
        if kind is not None and pat.is_struct(kind) and kind.get_field_index("path") >= 0:
            return column, "path"
    return None, None


def require(module: str, package: str, what: str):
    """`module` imported, or an ExportError naming the extra that installs `package`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ExportError(
            f"{what} needs {package}, which is not installed ({e}); install it with pip install 'taskray[export]'"
        ) from None
