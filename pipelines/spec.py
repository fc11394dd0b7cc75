"""The typed job spec of an offline run: YAML file and/or CLI flags -> JobSpec.

    spec = load_job_spec("job.yaml", {"output": "/tmp/out", "batch_size": 32})

Flags override the file. Task-level keys in `overrides` (model, batch_size, num_gpus, ...)
apply to every task of the file; `task` and `model` only to a single-task job. Every error is
a SpecError whose message names the field, so the CLI can exit 2 with it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from operators.runtime import OperatorSpec

# Sizing fields of earlier versions that taskray now picks from the hardware
# (pipelines/hardware.py). A job file or flag that still sets one fails naming it, pointing at
# --dry-run, rather than being silently ignored.
REMOVED_TASK_FIELDS = frozenset({"forward_cpus", "torch_threads", "forward_calls", "preprocess_cpus"})
REMOVED_JOB_FIELDS = frozenset({"block_growth", "io_cpus", "preprocess_actors", "preprocess", "error_budget_min_rows"})
REMOVED_FIELDS = REMOVED_TASK_FIELDS | REMOVED_JOB_FIELDS

INPUT_FORMATS = ("auto", "parquet", "images", "audio", "jsonl", "csv", "webdataset")
MODES = ("error-if-exists", "resume", "overwrite", "retry-failed")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


def _parse_pool(value: Any) -> Any:
    """MIN:MAX as "1:4", "2" (fixed size), 3 or [1, 4]."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"expected MIN:MAX like 1:4, got {value!r}")
        return (int(parts[0]), int(parts[1]))
    return value


def _check_pool(value: tuple[int, int]) -> tuple[int, int]:
    lo, hi = value
    if lo < 1 or hi < lo:
        raise ValueError(f"expected 1 <= MIN <= MAX, got {lo}:{hi}")
    return value


class SpecError(ValueError):
    """A bad job spec. The message names the offending field."""


def removed_field_message(name: str) -> str:
    return (
        f"{name}: no longer a setting; taskray picks it per node from the hardware "
        "(see `taskray run --dry-run` for what it picked and why)"
    )


def _refuse_removed_fields(data: Any, removed: frozenset[str]) -> Any:
    if isinstance(data, dict):
        for name in sorted(removed & set(data)):
            raise ValueError(removed_field_message(name))
    return data


def without_removed_fields(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec dict as earlier versions recorded it (in _SUCCESS), minus the removed fields."""
    out = {k: v for k, v in spec.items() if k not in REMOVED_JOB_FIELDS}
    if isinstance(out.get("tasks"), list):
        out["tasks"] = [
            {k: v for k, v in t.items() if k not in REMOVED_TASK_FIELDS} if isinstance(t, dict) else t for t in out["tasks"]
        ]
    return out


class StorageOptions(BaseModel):
    """How to reach s3:// URIs. Unset values come from the standard AWS environment."""

    model_config = ConfigDict(extra="forbid")

    endpoint_url: str | None = Field(
        None, description="S3 endpoint, e.g. http://127.0.0.1:9000 (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)."
    )
    region: str | None = Field(None, description="S3 region (default: AWS_REGION / AWS_DEFAULT_REGION).")
    profile: str | None = Field(None, description="Named AWS profile for credentials (default: AWS_PROFILE).")
    anonymous: bool = Field(False, description="Access public buckets without credentials.")


class TaskSpec(OperatorSpec):
    """One task of a job: its operator (OperatorSpec: task, model, options, how it loads), its
    inputs and name. How its stages are sized on Ray is picked from the hardware
    (pipelines/hardware.py); `batch_size`, `num_gpus`, `actors` and `forward_resources` override
    or pin those picks."""

    name: str | None = Field(
        None,
        description="Column-group name of this task in a multi-task output (`<name>.<column>`); default: the task id.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="Input role -> dataset column (roles: text, image, audio, question, context)."
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        description="Rows per forward call of an actor. The operator sorts them by length and cuts micro-batches, "
        "so more rows pad less. Default: the operator's rows_per_call.",
    )
    num_gpus: float | None = Field(
        None,
        ge=0,
        description="GPUs per forward actor; fractional values share a GPU. Default: picked for the cluster "
        "(one GPU per actor, shared by the tasks of a multi-task job; none on a CPU-only cluster).",
    )
    actors: tuple[int, int] | None = Field(
        None,
        description="Forward actor pool size MIN:MAX (Ray Data ActorPoolStrategy min_size, max_size). "
        "Default: picked for the cluster (1:<GPUs>, or 1:<nodes> on CPU-only nodes).",
    )
    forward_resources: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources each forward actor requests, e.g. {taskray_gpu_node: 0.01} to pin actors to GPU nodes.",
    )

    @field_validator("actors", mode="before")
    @classmethod
    def _parse_actors(cls, value: Any) -> Any:
        return _parse_pool(value)

    @field_validator("actors")
    @classmethod
    def _check_actors(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        return None if value is None else _check_pool(value)

    @model_validator(mode="before")
    @classmethod
    def _refuse_removed(cls, data: Any) -> Any:
        return _refuse_removed_fields(data, REMOVED_TASK_FIELDS)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(f"expected letters, digits, '_' or '-', got {value!r}")
        return value

    @field_validator("columns")
    @classmethod
    def _check_roles(cls, value: dict[str, str]) -> dict[str, str]:
        from operators.base import INPUT_ROLES

        unknown = sorted(set(value) - set(INPUT_ROLES))
        if unknown:
            raise ValueError(f"unknown input roles {unknown}; roles are {list(INPUT_ROLES)}")
        return value

    @field_validator("options")
    @classmethod
    def _check_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from operators import get_operator

        if "task" not in info.data:  # the task itself is invalid; that error is enough
            return value
        try:
            get_operator(info.data["task"]).Options(**value)
        except ValidationError as e:
            raise ValueError(first_error(e)) from None
        return value

    @model_validator(mode="after")
    def _check_columns(self) -> "TaskSpec":
        from operators import get_operator

        roles = get_operator(self.task).input_roles
        unused = sorted(set(self.columns) - set(roles))
        if unused:
            raise ValueError(f"columns: {self.task} has no input roles {unused}; it reads {list(roles)}")
        return self

    @property
    def column_prefix(self) -> str:
        return self.name or self.task

    def role_columns(self) -> dict[str, str]:
        """Every input role of the operator -> its dataset column (default: the role name)."""
        from operators import get_operator

        return {role: self.columns.get(role, role) for role in get_operator(self.task).input_roles}


class JobSpec(BaseModel):
    """An offline labeling job: one dataset in, one Parquet output, one or more tasks."""

    model_config = ConfigDict(extra="forbid")

    input: list[str] = Field(..., min_length=1, description="Input URI(s): directory, glob or files; local, s3://, or an fsspec URL (gs://, az://, hf://).")
    input_format: Literal["auto", "parquet", "images", "audio", "jsonl", "csv", "webdataset"] = Field(
        "auto", description="Input format; auto guesses from file extensions. webdataset: tar shards of <key>.<ext> members."
    )
    output: str = Field(..., min_length=1, description="Output directory URI (local, s3:// or an fsspec URL) for Parquet files and _SUCCESS.")
    id_column: str | None = Field(
        None,
        description="Unique id column of the input. Default: `id` when present, else one derived as '<file>#<row>' (or the file path for media files).",
    )
    keep_columns: list[str] = Field(default_factory=list, description="Input columns copied into the output as-is.")
    tasks: list[TaskSpec] = Field(..., min_length=1, description="The tasks to run over every row.")
    limit: int | None = Field(None, ge=1, description="Only the first N input rows (in file order), e.g. for a trial run.")
    mode: Literal["error-if-exists", "resume", "overwrite", "retry-failed"] = Field(
        "error-if-exists",
        description="What to do with a non-empty output: refuse, resume the job there, delete it first, or "
        "(retry-failed) run the rows of a finished output whose error is set again and replace them in place.",
    )
    storage: StorageOptions = Field(default_factory=StorageOptions, description="S3 endpoint, region, profile, anonymous access.")
    block_rows: int | None = Field(
        None,
        ge=1,
        description="Rows per Ray Data block: the unit of parallel work, of output files and of resume. "
        "Default: picked per job (fewer rows for audio, whose first block must decode before the first forward).",
    )
    ray_address: str | None = Field(
        None, description="Ray cluster address for ray.init (default: RAY_ADDRESS, else a local Ray)."
    )
    output_format: Literal["parquet", "lance"] = Field(
        "parquet",
        description="parquet: Parquet files and _SUCCESS. lance: a Lance dataset at the output URI (local or s3://), "
        "written by Ray Data's Lance writer when the job finishes, with float vectors (embeddings) as fixed-size "
        "lists that lance/LanceDB vector search reads as they are. Needs `pip install 'taskray[lance]'`; "
        "--retry-failed is Parquet-only.",
    )
    target_file_size: int = Field(
        128 * 1024 * 1024,
        gt=0,
        description="Bytes of data per output file (e.g. 134217728, or '128MiB', '64MB'). Blocks, the unit of "
        "resume, stay small; committed blocks are compacted into files of this size while the job runs and at "
        "the end. For lance: the rows per file Ray's Lance writer gets, from the rows' mean size.",
    )
    max_failed_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Error budget: when more than this share of a task's rows fail, the job stops with exit 1 and "
        "no _SUCCESS, printing the error kinds seen. Checked while the job runs (once a task has seen enough "
        "rows that a few bad first files do not decide it) and over the whole output at the end. 0.5 because "
        "real-world media has some corrupt or unreadable files (they come back as per-row errors), while a "
        "broken setting fails nearly every row: more than half failing is never a healthy labelling job. 1.0 "
        "turns it off; 0 tolerates no failed row.",
    )

    @field_validator("input", mode="before")
    @classmethod
    def _input_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("target_file_size", mode="before")
    @classmethod
    def _size_bytes(cls, value: Any) -> Any:
        return parse_bytes(value) if isinstance(value, str) else value

    @field_validator("keep_columns", mode="before")
    @classmethod
    def _keep_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [c.strip() for c in value.split(",") if c.strip()]
        return value

    @model_validator(mode="before")
    @classmethod
    def _refuse_removed(cls, data: Any) -> Any:
        return _refuse_removed_fields(data, REMOVED_JOB_FIELDS)

    @model_validator(mode="after")
    def _check_names(self) -> "JobSpec":
        prefixes = [t.column_prefix for t in self.tasks]
        dupes = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if dupes:
            raise ValueError(f"tasks: names must be unique, {dupes} repeat; set `name` on each")
        return self

    @property
    def multi_task(self) -> bool:
        return len(self.tasks) > 1

    def output_column(self, task: TaskSpec, column: str) -> str:
        """Single-task jobs write plain result columns; multi-task jobs `<name>.<column>`."""
        return f"{task.column_prefix}.{column}" if self.multi_task else column


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """'134217728', '128MiB', '128M', '64MB' -> bytes. KiB/MiB/GiB/TiB (and K/M/G/T) are powers of
    1024, KB/MB/GB/TB powers of 1000."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"expected a size such as 134217728, '128MiB' or '64MB', got {text!r}")
    number, unit = float(match.group(1)), (match.group(2) or "B").upper()
    if unit == "B":
        return int(number)
    power = "KMGT".index(unit[0]) + 1
    base = 1000 if unit.endswith("B") and not unit.endswith("IB") else 1024
    return int(number * base**power)


TASK_FIELDS = frozenset(TaskSpec.model_fields)
JOB_FIELDS = frozenset(JobSpec.model_fields) - {"tasks"}


def load_job_spec(path: str | None, overrides: dict[str, Any] | None = None) -> JobSpec:
    """The JobSpec from a YAML file (or none) with `overrides` (CLI flags) applied on top."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(path)
    return build_job_spec(data, overrides or {})


def build_job_spec(data: dict[str, Any], overrides: dict[str, Any]) -> JobSpec:
    data = dict(data)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for name in sorted(REMOVED_FIELDS & set(overrides)):
        raise SpecError(removed_field_message(name))
    unknown = sorted(set(overrides) - TASK_FIELDS - JOB_FIELDS)
    if unknown:
        raise SpecError(f"unknown override field(s) {unknown}")
    for key in JOB_FIELDS & set(overrides):
        data[key] = overrides[key]
    task_overrides = {k: v for k, v in overrides.items() if k in TASK_FIELDS}
    tasks = data.get("tasks")
    if tasks is None:
        tasks = [{}] if task_overrides else []
    if not isinstance(tasks, list):
        raise SpecError(f"tasks: expected a list of task mappings, got {type(tasks).__name__}")
    if len(tasks) > 1:
        for key in ("task", "model", "name"):
            if key in task_overrides:
                raise SpecError(f"{key}: this job has {len(tasks)} tasks; set {key} per task in the job file")
    merged = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise SpecError(f"tasks.{i}: expected a mapping, got {type(task).__name__}")
        task = dict(task)
        for key, value in task_overrides.items():
            if key in ("options", "columns", "forward_resources"):  # flags add to the file's dict
                task[key] = {**(task.get(key) or {}), **value}
            else:
                task[key] = value
        merged.append(task)
    data["tasks"] = merged
    try:
        return JobSpec(**data)
    except ValidationError as e:
        raise SpecError(first_error(e)) from None


def first_error(e: ValidationError) -> str:
    """'<field.path>: <message>' for each error, the field first so the user sees it."""
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        if "no longer a setting" in msg:  # names the field itself
            parts.append(f"{loc}.{msg}" if loc else msg)
        elif err["type"] in ("missing",):
            parts.append(f"{loc}: field required")
        elif not loc:
            parts.append(f"spec: {msg}")
        elif err["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown field")
        else:
            parts.append(f"{loc}: {msg}" + ("" if "got" in msg or isinstance(got, dict) else f" (got {got!r})"))
    return "; ".join(parts)


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise SpecError(f"job file: cannot read {path!r}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"job file: {path!r} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"job file: expected a mapping at the top of {path!r}, got {type(data).__name__}")
    return data
