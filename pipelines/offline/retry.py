"""`taskray run --retry-failed`: run the failed rows of a finished output again, in place.

    from pipelines.offline.retry import retry_failed
    summary = retry_failed(spec)     # spec.mode == "retry-failed"; spec.output holds _SUCCESS

A row is retried for a task when that task's `error` column is set (`<task>.error` in a
multi-task output), e.g. after a transient S3 failure, a device OOM, or input files fixed
since. The retried rows replace the old ones in the files that held them, and `_SUCCESS` is
rewritten with the new counts and a `history` entry (mode "retry-failed").

The invariant: at every instant, including after a SIGKILL at any point, the output's data
files hold every id exactly once, each row with either its old or its retried values.

* Everything new is written under `<output>/_retry/`, which readers skip (a leading `_`,
  like `_checkpoint`), until it is complete:
  1. `plan.parquet`: the ids to retry and, per task, whether that task failed on the row.
     It is fixed once, from the output as it was, and a rerun reuses it, so the set of rows
     never changes under a retry (after a partial merge some of them no longer fail).
  2. `data/`: the retried rows, computed by the ordinary job (`run_job`) with mode resume.
     Its Ray Data checkpoint is seeded with the ids *not* to retry, so Ray's own checkpoint
     filter drops them after the read, and a killed retry resumes like any run: committed
     blocks are kept, uncommitted ones recomputed (pipelines/offline/job.py). Its own `_SUCCESS`
     says the staged rows are complete.
* Then each data file that holds planned ids is rewritten with those rows replaced: the new
  file, with exactly the ids of the old one in the same order, is written under
  `_retry/files/` and moved over the old file. A local move is one rename(2); on S3 it is a
  server-side copy onto the key, which replaces the object at once, so readers see one file
  or the other, never both, never neither. Replacing a file that was already replaced gives
  the same file (the values come from the staged rows, the mask from the plan), so a rerun
  after a kill mid-merge simply merges again.
* `_SUCCESS` is rewritten last, from the files themselves (job.finalize: unified schemas,
  counts, the distinct-id check), and `_retry/` deleted. The history entry carries the
  plan's start time, so a rerun after a kill between the two does not add it twice.

`_SUCCESS` stays in place during a retry: the data stay whole throughout; only its counts
are stale until the end.

tests/offline_reliability SIGKILLs a retry while it stages (test_retry_failed.py), and at
named steps of the merge (pipelines/offline/halt_points.py): inside a replacement and between two, on
local disk (test_retry_failed.py) and on S3 (test_s3_job.py), checking every id once after
each kill and after the rerun.

A Lance output (`output_format: lance`) is refused: its rows live in a Lance dataset, not in
Parquet files that can be replaced one at a time.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
from typing import TYPE_CHECKING

from pipelines.offline.halt_points import halt_point
from pipelines.manifest import SUCCESS_FILE, TIME_FORMAT, JobSummary
from pipelines.spec import JobSpec, SpecError
from pipelines.storage import Location, read_text, resolve, uri_of, write_text

if TYPE_CHECKING:
    import pyarrow

logger = logging.getLogger(__name__)

RETRY_DIR = "_retry"
PLAN_FILE = "plan.parquet"
PLAN_META = "plan.json"
STAGING_DIR = "data"
FILES_DIR = "files"
# A committed Ray Data checkpoint file (no ".pending" in its name) listing the ids that the
# staging run must skip.
SKIP_IDS_FILE = "00000000-not-retried.parquet"


def retry_failed(spec: JobSpec) -> JobSummary:
    """Retry the failed rows of the finished output `spec.output` and return the new summary.

    Raises SpecError when the output is not a finished job of these tasks and models.
    """
    from pipelines.offline.job import data_files, finalize, run_job
    from pipelines.offline.plan import plan_job
    from pipelines.sources import plan_source

    if spec.output_format != "parquet":
        raise SpecError(
            f"--retry-failed replaces failed rows in the Parquet files of an output; output_format "
            f"{spec.output_format!r} has none. Rerun the job with --overwrite, or write Parquet to retry it"
        )
    out = resolve(spec.output, spec.storage)
    retry_dir = posixpath.join(out.path, RETRY_DIR)
    source = plan_source(spec)
    manifest = _finished_manifest(spec, out, source)
    id_column = source.id_column
    # The output's plan (its columns); the staged rows are computed by run_job's own.
    job_plan = plan_job(spec, source)

    meta_text = read_text(out, posixpath.join(retry_dir, PLAN_META))
    if meta_text is None:
        # No plan yet: whatever a killed planning step left is incomplete; start over.
        _delete_dir(out, retry_dir)
        meta = _write_plan(job_plan.error_columns, out, retry_dir, id_column, data_files(out))
        if meta is None:
            logger.info("no failed rows in %s; nothing to retry", out.uri)
            return _unchanged_summary(manifest, out)
    else:
        meta = json.loads(meta_text)
    plan = _read_table(out, posixpath.join(retry_dir, PLAN_FILE))
    tasks = [t for t in spec.tasks if t.column_prefix in meta["tasks"]]

    staging_uri = uri_of(out, posixpath.join(retry_dir, STAGING_DIR))
    # The staged rows are the failed ones, so most may fail again (rows that fail for good):
    # the error budget of a whole job does not apply to them.
    staging = spec.model_copy(
        update={"output": staging_uri, "mode": "resume", "tasks": tasks, "keep_columns": [], "max_failed_fraction": 1.0}
    )
    logger.info("retrying %d failed rows of %s (tasks %s)", plan.num_rows, out.uri, meta["tasks"])
    staged_summary = run_job(staging)
    staged_dir = resolve(staging_uri, spec.storage)
    staged = _read_dataset(staged_dir, data_files(staged_dir))
    present = 0 if staged is None else _count_present(plan, staged, id_column)
    if present:
        merged_files = _merge(spec, staging, out, retry_dir, id_column, plan, staged)
        logger.info("replaced retried rows in %d files of %s", merged_files, out.uri)
    halt_point("retry:merged")
    entry = {
        "mode": "retry-failed",
        "started": meta["started"],
        "finished": time.strftime(TIME_FORMAT, time.gmtime()),
        "rows": plan.num_rows,
        "failed": _still_failed(plan, staging, staged, id_column),
    }
    history = [h for h in _history(manifest) if h.get("started") != meta["started"] or h.get("mode") != "retry-failed"]
    snapshot = {
        "nodes": {t.column_prefix: staged_summary.tasks.get(t.column_prefix, _no_task()).nodes for t in spec.tasks},
        # The output's rows were computed in the first run's dtype and the retried ones in this run's.
        "dtypes": {t.column_prefix: _dtypes(manifest, staged_summary, t.column_prefix) for t in spec.tasks},
    }
    summary = finalize(
        job_plan,
        out,
        snapshot,
        time.time() - meta["started_unix"],
        history=[*history, entry],
        rows_processed=staged_summary.rows_processed,
        compact=False,  # the files were replaced in place, under their names
    )
    _delete_dir(out, retry_dir)
    return summary


def _finished_manifest(spec: JobSpec, out: Location, source) -> dict:
    """The output's `_SUCCESS`, checked against the spec: the same tasks and models, and the
    same fingerprint (pipelines/offline/fingerprint.py) where the output records one, so that the
    retried rows are computed as the others were. Batch sizes and other settings that only
    change speed may differ (a smaller micro-batch budget after an OOM, for example)."""
    from pipelines.offline.fingerprint import job_fingerprint
    from pipelines.offline.job import check_fingerprint

    text = read_text(out, posixpath.join(out.path, SUCCESS_FILE))
    if text is None:
        raise SpecError(
            f"output: {out.uri} has no {SUCCESS_FILE}, so there is no finished job to retry; "
            "finish it first with --resume"
        )
    manifest = json.loads(text)
    done = {name: (t.get("task"), t.get("model")) for name, t in manifest.get("tasks", {}).items()}
    for t in spec.tasks:
        if done.get(t.column_prefix) != (t.task, t.model):
            raise SpecError(
                f"tasks[{t.column_prefix}]: {out.uri} was written by {done.get(t.column_prefix) or 'no such task'}, "
                f"not ({t.task!r}, {t.model!r}); retried rows must come from the same task and model"
            )
    check_fingerprint(out, SUCCESS_FILE, manifest.get("fingerprint"), lambda: job_fingerprint(spec, source))
    return manifest


def _write_plan(error_columns: dict[str, str], out: Location, retry_dir: str, id_column: str, files: list[str]) -> dict | None:
    """Fix the rows to retry: `plan.parquet`, the ids to skip seeded into the staging
    checkpoint, then `plan.json` last (it marks the plan complete). None: nothing failed.
    `error_columns`: task name -> its error column in the output."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipelines.offline.plan import CHECKPOINT_DIR

    started = time.time()
    table = _read_dataset(out, files, [id_column, *error_columns.values()])
    if table is None:
        return None
    failed = {name: pc.is_valid(table.column(col)) for name, col in error_columns.items()}
    failed = {name: mask for name, mask in failed.items() if pc.any(mask).as_py()}
    if not failed:
        return None
    any_failed = None
    for mask in failed.values():
        any_failed = mask if any_failed is None else pc.or_(any_failed, mask)
    plan = pa.table({id_column: table.column(id_column), **failed}).filter(any_failed)
    skip = table.select([id_column]).filter(pc.invert(any_failed))
    fs = out.filesystem
    fs.create_dir(retry_dir, recursive=True)
    with fs.open_output_stream(posixpath.join(retry_dir, PLAN_FILE)) as f:
        pq.write_table(plan, f)
    if skip.num_rows:
        checkpoint = posixpath.join(retry_dir, STAGING_DIR, CHECKPOINT_DIR)
        fs.create_dir(checkpoint, recursive=True)
        with fs.open_output_stream(posixpath.join(checkpoint, SKIP_IDS_FILE)) as f:
            pq.write_table(skip, f)
    meta = {
        "started": time.strftime(TIME_FORMAT, time.gmtime(started)),
        "started_unix": started,
        "tasks": list(failed),
        "rows": plan.num_rows,
    }
    write_text(out, posixpath.join(retry_dir, PLAN_META), json.dumps(meta))
    return meta


def _merge(spec: JobSpec, staging: JobSpec, out: Location, retry_dir: str, id_column: str, plan, staged) -> int:
    """Replace the planned rows of every data file that holds some, one file at a time.
    Returns the number of files rewritten."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from operators import get_operator
    from pipelines.offline.job import data_files

    fs = out.filesystem
    tmp_dir = posixpath.join(retry_dir, FILES_DIR)
    fs.create_dir(tmp_dir, recursive=True)
    planned_ids = plan.column(id_column).combine_chunks()
    staged_ids = staged.column(id_column).combine_chunks()
    rewritten = 0
    for path in data_files(out):
        with fs.open_input_file(path) as f:
            ids = pq.read_table(f, columns=[id_column]).column(id_column)
        if not pc.any(pc.is_in(ids, value_set=planned_ids)).as_py():
            continue
        with fs.open_input_file(path) as f:
            table = pq.read_table(f)
        for t in staging.tasks:
            mask = _task_mask(table.column(id_column), plan, id_column, t.column_prefix, staged_ids)
            positions = pc.index_in(table.column(id_column), value_set=staged_ids)
            for column in (*get_operator(t.task).output_columns, "error"):
                name = spec.output_column(t, column)
                new = staged.column(staging.output_column(t, column)).take(positions)
                table = table.set_column(table.schema.get_field_index(name), name, _choose(mask, new, table.column(name)))
        rewritten += 1
        _replace_file(fs, table, posixpath.join(tmp_dir, posixpath.basename(path)), path, rewritten)
        halt_point(f"retry:replaced:{rewritten}")  # test-only: between two replacements
    return rewritten


def _replace_file(fs, table, tmp: str, path: str, number: int = 0) -> None:
    """Write `table` to `tmp`, then move it over `path`: the one step that changes what
    readers of the output see (see the module docstring). `number`: the file's place in the
    merge, for the test-only halt points."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    with fs.open_output_stream(tmp) as f:
        pq.write_table(table, f)
    halt_point(f"retry:written:{number}")  # test-only: inside a replacement, before the switch
    if isinstance(fs, pafs.S3FileSystem):
        # What pyarrow's S3 move does (CopyObject onto the key, which replaces the object at
        # once, then DeleteObject), spelled out so that a test can stop between the two.
        fs.copy_file(tmp, path)
        halt_point(f"retry:copied:{number}")
        fs.delete_file(tmp)
    else:
        fs.move(tmp, path)


def _task_mask(ids, plan, id_column: str, task: str, staged_ids):
    """Rows of a file to take from the staged rows for `task`: planned for that task and
    present in the staged rows (an id the input no longer has keeps its old row)."""
    import pyarrow.compute as pc

    planned_for_task = plan.filter(plan.column(task)).column(id_column).combine_chunks()
    return pc.and_(pc.is_in(ids, value_set=planned_for_task), pc.is_in(ids, value_set=staged_ids))


def _choose(mask, new, old) -> "pyarrow.ChunkedArray":
    """`new` where `mask`, else `old`, in one type. A column whose rows all failed is typed
    `null` by Arrow, so either side may be null-typed; other types are cast to the output's."""
    import pyarrow as pa
    import pyarrow.compute as pc

    old = old.combine_chunks() if isinstance(old, pa.ChunkedArray) else old
    new = new.combine_chunks() if isinstance(new, pa.ChunkedArray) else new
    target = new.type if pa.types.is_null(old.type) else old.type
    return pc.if_else(mask, new.cast(target), old.cast(target))


def _still_failed(plan, staging: JobSpec, staged, id_column: str) -> int:
    """Planned rows that still fail: a task retried for the row failed again, or the input
    no longer has the row's id (it keeps its old row, error included)."""
    import pyarrow.compute as pc

    ids = plan.column(id_column)
    if staged is None:
        return plan.num_rows
    staged_ids = staged.column(id_column).combine_chunks()
    positions = pc.index_in(ids, value_set=staged_ids)
    failed = pc.invert(pc.is_valid(positions))
    for t in staging.tasks:
        error = staged.column(staging.output_column(t, "error")).take(positions)
        failed = pc.or_(failed, pc.and_(plan.column(t.column_prefix), pc.is_valid(error)))
    return pc.sum(failed.cast("int64")).as_py() or 0


def _count_present(plan, staged, id_column: str) -> int:
    import pyarrow.compute as pc

    staged_ids = staged.column(id_column).combine_chunks()
    return pc.sum(pc.is_in(plan.column(id_column), value_set=staged_ids).cast("int64")).as_py() or 0


def _read_dataset(location: Location, files: list[str], columns: list[str] | None = None):
    """The data files as one table with unified types, or None when there are none."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in files:
        with location.filesystem.open_input_file(path) as f:
            tables.append(pq.read_table(f, columns=columns))
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


def _read_table(location: Location, path: str):
    import pyarrow.parquet as pq

    with location.filesystem.open_input_file(path) as f:
        return pq.read_table(f)


def _history(manifest: dict) -> list[dict]:
    """The runs so far; an output written before runs were recorded gets its one run."""
    from pipelines.manifest import run_entry

    if manifest.get("history"):
        return list(manifest["history"])
    return [run_entry(manifest)]


def _dtypes(manifest: dict, staged_summary, task: str) -> list[str]:
    """The dtypes the output's rows of `task` were computed in: the manifest's and this retry's."""
    names = {(manifest.get("tasks", {}).get(task) or {}).get("dtype"), staged_summary.tasks.get(task, _no_task()).dtype}
    return sorted({n for name in names if name for n in name.split(", ")})


def _no_task():
    from pipelines.manifest import TaskCounts

    return TaskCounts(task="", model="")


def _unchanged_summary(manifest: dict, out: Location) -> JobSummary:
    from pipelines.manifest import summary_from_manifest

    summary = summary_from_manifest(json.dumps(manifest))
    summary.output = out.uri
    return summary


def _delete_dir(out: Location, path: str) -> None:
    import pyarrow.fs as pafs

    if out.filesystem.get_file_info(path).type != pafs.FileType.NotFound:
        out.filesystem.delete_dir(path)
