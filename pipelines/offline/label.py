"""taskray inside your own Ray Data pipeline: `label` appends a task's stages to a Dataset.

    import ray
    from pipelines import label

    ds = ray.data.read_parquet("s3://bucket/photos/")        # any Dataset with the task's input columns
    ds = label(ds, task="image-classification", model="google/vit-base-patch16-224", actors=(1, 4), num_gpus=0.5)
    ds = label(ds, task="object-detection", model="facebook/detr-resnet-50", options={"threshold": 0.8})
    ds.write_parquet("s3://bucket/labels/")                   # one read, both tasks: Ray Data is lazy

The stages are those of `taskray run`, planned by the same code (pipelines/offline/plan.py
`plan_tasks`, which `plan_job` shares) and sized for the running Ray's hardware the same way
(pipelines/hardware.py): on CPU-only clusters the task decodes inside its forward actors, on
GPU clusters a Preprocess CPU actor pool feeds them. Every argument is a TaskSpec field
(pipelines/spec.py) or the job's `block_rows`, validated by the same pydantic models, so a bad
value raises the same SpecError `taskray run` exits 2 with.

Columns: every input column passes through unchanged, and the task adds its result columns
named `<name>.<column>` plus `<name>.error`, where `name` defaults to the task id
(`image-classification.label`, `image-classification.score`, ..., `image-classification.error`).
That is how a multi-task `taskray run` job names them, so chained calls never collide and give
the same columns as that job. Two calls of one task need different `name`s. A bad row gets
its `<name>.error` (`"decode: ..."`), the others their results, one output row per input row.

What `taskray run` adds around these stages and `label` leaves to the caller: the read and
the write, ids and resume (Ray Data's checkpointing needs an id column at the read), Ray
Data's block sizes (taskray run sizes blocks in rows), the error budget and the `_SUCCESS`
manifest.
"""

from __future__ import annotations

from typing import Annotated, Any


def label(
    ds,
    task: str,
    model: str,
    *,
    name: str | None = None,
    block_rows: int | None = None,
    check: bool = True,
    **task_fields: Any,
):
    """`ds` (a `ray.data.Dataset`) with `task`'s result columns `<name>.<column>` appended. Lazy.

    `task`, `model`, `name` and `task_fields` are TaskSpec fields: `options` (operator options
    such as `top_k`), `columns` (input role -> column, e.g. `{"text": "review"}`), `actors`
    (forward pool `(min, max)` or `"1:4"`), `num_gpus`, `batch_size`, `device`, `dtype`,
    `revision`, `trust_remote_code`, `forward_resources`. `block_rows` (rows per Preprocess
    call on GPU clusters) is the JobSpec field. The rest is picked from the hardware.

    `check`: first load the task's processor and config here (never the weights) and check
    its options against the model, as `taskray run`'s preflight does, so a bad setting fails
    now rather than in an actor. Turn it off when the model is only reachable from the workers.

    Raises TypeError when `ds` is not a Dataset and SpecError (a ValueError) for a bad field, an
    input column the dataset lacks or result columns it already has (both checked when the
    dataset's schema is known without running it).
    """
    import ray
    import ray.data
    from pydantic import TypeAdapter, ValidationError

    from pipelines.offline.plan import plan_tasks
    from pipelines.spec import REMOVED_FIELDS, JobSpec, SpecError, TaskSpec, first_error, removed_field_message

    if not isinstance(ds, ray.data.Dataset):
        raise TypeError(f"ds must be a ray.data.Dataset, got {type(ds).__name__}")
    for field in sorted(REMOVED_FIELDS & set(task_fields)):
        raise SpecError(removed_field_message(field))
    try:
        task_spec = TaskSpec(task=task, model=model, name=name, **task_fields)
    except ValidationError as e:
        raise SpecError(first_error(e)) from None
    block_field = JobSpec.model_fields["block_rows"]  # the job's own field and constraints; no job is built
    try:
        block_rows = TypeAdapter(Annotated[block_field.annotation, block_field]).validate_python(block_rows)
    except ValidationError as e:
        raise SpecError(f"block_rows: {e.errors()[0]['msg']} (got {block_rows!r})") from None
    if check:
        from pipelines.offline.preflight import check_operators

        check_operators([task_spec])
    _check_schema(ds, task_spec)
    for stage in plan_tasks([task_spec], block_rows=block_rows).stages:
        ds = stage.apply(ds)
    return ds


def result_columns(task: str, name: str | None = None) -> list[str]:
    """The columns `label(ds, task, ..., name=name)` appends, `error` last."""
    from operators import get_operator

    prefix = name or task
    return [f"{prefix}.{c}" for c in (*get_operator(task).output_columns, "error")]


def _check_schema(ds, task_spec) -> None:
    """Input columns present and result columns absent, when Ray knows the schema without
    running anything (a Dataset read from files usually; not after a map). Otherwise a
    missing column fails the first block, and a clash the forward stage (pipelines/offline/stages.py)."""
    from pipelines.spec import SpecError

    schema = ds.schema(fetch_if_missing=False)
    if schema is None:
        return
    names = list(schema.names)
    for role, column in task_spec.role_columns().items():
        if column not in names:
            raise SpecError(
                f"columns.{role}: column {column!r} not found in the dataset; columns are {names}; "
                f"map the role with columns={{{role!r}: NAME}}"
            )
    clash = [c for c in result_columns(task_spec.task, task_spec.name) if c in names]
    if clash:
        raise SpecError(f"name: the dataset already has the columns {clash}; pass another name= for this task")
