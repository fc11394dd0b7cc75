"""The offline job: the Ray Data graph of a JobSpec, its execution, resume and _SUCCESS.

    from pipelines.offline.job import run_job
    summary = run_job(spec)          # JobSummary(total, ok, failed, errors_by_kind, ...)

Graph (one read and one decode pass, one actor pool per task, one output), sized for the
hardware by pipelines/hardware.py (`taskray run --dry-run` prints the picks and why):

    Read[files, id column added here]      a fraction of a CPU per task
      -> (CheckpointFilter, added by Ray Data on --resume; an actor with 1 CPU)
      -> MapBatches(Preprocess)             GPU clusters: CPU actor pool; processors only, never weights
      -> MapBatches(Forward[t])             one actor pool per task: ActorPoolStrategy(min, max), num_gpus
         (CPU-only clusters: no Preprocess pool; Forward[t] decodes inside the forward actor)
      -> Write[parquet]                     files of >= block_rows rows, checkpointed
    then: committed files compacted into files of target_file_size (pipelines/offline/compaction.py),
    as the job goes and at the end; for output_format lance, Ray Data's Lance writer at the end

The job is planned once (pipelines/offline/plan.py `plan_job`: the source, the sizing, the stages
between read and write as objects, the output schema); build_dataset applies the plan's
stages in order, describe_plan prints the same objects, the preflight checks each pool's
bundle from it and finalize reads the tasks' columns from it.

Blocks are sized in rows: Ray Data sizes blocks in bytes (DataContext.target_max_block_size,
128 MiB by default), so the job sets it from the estimated size of `block_rows` input rows,
times a growth factor picked per job. One setting holds for every stage, and rows grow on the
way (embeddings are many times the size of their text): sized for the input alone, Forward's
output was cut into small blocks and the forward actor sat idle between calls (measured, see
benchmarks/RESULTS.md). The price of a growth factor is read blocks of up to that many times
block_rows rows, so it is picked only for tasks whose results outgrow their inputs.
Ray's default packed a 10k-row text dataset into one block, which then ran as one task and
wrote one file at the very end, leaving nothing for a resume (measured; ARCHITECTURE.md).
A `repartition(target_num_rows_per_block=...)` would do the same job, but it runs as an extra
1-CPU task stage (Ray 2.60 fuses it only behind task-pool maps, and Preprocess is an actor
pool); next to resume's 1-CPU CheckpointFilter actor that deadlocked a 2-CPU Ray (measured).

Resume is Ray Data's own checkpointing (`DataContext.checkpoint_config`, id based, kept in
`<output>/_checkpoint`). Ray 2.60 writes a pending checkpoint before each data file and
commits it after, and on restart deletes data files whose checkpoint never committed, so a
killed run leaves nothing written twice. We keep the checkpoint until `_SUCCESS` is written
(delete_checkpoint_on_success=False) because the finalize step runs after Ray's execution;
a kill in between must still be resumable.

Before the graph starts, pipelines/offline/preflight.py checks the input, each task's processor,
config and options (the operator's own check_config()), the output (a probe write) and the
actors' resources; each failure is a SpecError. The job's fingerprint (pipelines/offline/fingerprint.py:
what determines the outputs) goes into `<output>/_taskray_job.json` when the graph starts and
into `_SUCCESS`; a resume over an output of another job is refused, naming the fields that
differ. The error budget (pipelines/offline/error_budget.py) stops the job, without _SUCCESS, once more
than `max_failed_fraction` of a task's rows failed: while it runs (the stats actor) and over
the finished output.

`output_format: lance` writes a Lance dataset at the output URI, through Ray Data's own Lance
writer (`Dataset.write_lance`), once the job has finished: the job itself writes Parquet under
`<output>/_parquet/` with everything above (checkpoint, resume, error budget, the final
checks), and the finalize step reads those files into `write_lance(mode=overwrite)` before
`_SUCCESS`. Why not write Lance from the graph: Ray's Lance datasink is not a file datasink, so
Ray Data checkpoints it after the write (at-least-once, it warns), and it commits the
fragments of every task in one Lance version only when the whole write ends; a killed job would
leave ids checkpointed whose rows no Lance version holds, and resume would skip them. One Lance
commit of the finished rows is atomic, and a kill before `_SUCCESS` is resumed like any other
(the overwrite replaces whatever version a killed finalize committed).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import gc
import json
import logging
import os
import posixpath
import time
import traceback
from typing import Any, Callable

from operators.errors import error_kind
from pipelines.manifest import SUCCESS_FILE, JobSummary, TaskCounts, manifest_json, summary_from_manifest
# The output's layout: the checkpoint directory, and where a Lance job's Parquet files live
# until the Lance dataset is written (see the docstring); the plan prints them for --dry-run.
from pipelines.offline.plan import CHECKPOINT_DIR, LANCE_STAGING_DIR, JobPlan
from pipelines.spec import JobSpec, SpecError
from pipelines.storage import Location, delete_dir_contents, is_hidden, output_state, read_text, resolve, uri_of, write_text

logger = logging.getLogger(__name__)

# The fingerprint of the job writing the output, from the start of its first run until
# _SUCCESS (which repeats it) is written. A leading "_": dataset readers skip it.
JOB_FILE = "_taskray_job.json"
# Output blocks a running map task may hold before it waits for the driver to take them
# (Ray Data's default is 2). Ray sized that for 128 MiB blocks; ours are a few hundred rows,
# and one forward call's results (embeddings: 11x its input) span several blocks, so the
# actor stopped after each 2 and sat idle until the driver's loop took them: 0.3 s between
# calls, 2.0 s of a 22 s embed-text run (benchmarks/RESULTS.md). Upstream: ray-project/ray#42217.
# 16 such blocks are a few MiB per task.
STREAMING_GEN_BUFFER_BLOCKS = 16
# Parquet writers dictionary-encode every column until its dictionary passes this size, then
# write the rest of the column chunk plain. pyarrow's 1 MiB default holds the whole chunk of a
# few hundred 384-float embeddings, all distinct: 2,262 bytes a row instead of 1,536. At 16 KiB
# the floats fall back after the first page, while labels and error strings (a small
# vocabulary) stay dictionary-encoded.
DICTIONARY_PAGE_BYTES = 16 * 1024
PARQUET_WRITE_OPTIONS = {"dictionary_pagesize_limit": DICTIONARY_PAGE_BYTES}


class OutputExistsError(SpecError):
    """The output holds data and the spec did not say resume or overwrite."""


class JobFailedError(RuntimeError):
    """The job ran but did not finish (the data files are incomplete; no _SUCCESS)."""


class FingerprintMismatchError(OutputExistsError):
    """--resume found an output written by a job with another fingerprint."""


class ErrorBudgetError(JobFailedError):
    """More than `max_failed_fraction` of a task's rows failed; no _SUCCESS."""


def describe_plan(spec: JobSpec, hardware=None) -> str:
    """What `taskray run --dry-run` prints: the plan's description (pipelines/offline/plan.py), for
    the input as it is now (its listing and first file are read). Starts nothing."""
    from pipelines.offline.plan import plan_job
    from pipelines.offline.preflight import check_input

    return plan_job(spec, check_input(spec), hardware).describe()


def build_dataset(plan: JobPlan, *, stats=None):
    """The lazy Ray Dataset of a job's plan (pipelines/offline/plan.py JobPlan), up to (not including)
    the write: the read, then `plan.stages` in order. `stats`: the job's stats actor.
    Needs an initialized Ray (the datasource puts its file list in the object store).
    """
    from pipelines.sources import read_dataset

    ds = read_dataset(plan.source, plan.sizing.block_rows, num_cpus=plan.sizing.io_cpus)
    for stage in plan.stages:
        ds = stage.apply(ds, stats=stats)
    return ds


def run_job(spec: JobSpec) -> JobSummary:
    """Run a job to completion and return its summary.

    Raises SpecError (bad spec, missing column), OutputExistsError (non-empty output without
    resume/overwrite) before any work, and JobFailedError when the run does not finish.
    Uses the running Ray when `ray.is_initialized()`, else starts one (RAY_ADDRESS / spec).
    """
    from pipelines.offline import error_budget
    from pipelines.offline.compaction import compacting
    from pipelines.offline.error_budget import ErrorBudget
    from pipelines.offline.fingerprint import job_fingerprint
    from pipelines.offline.plan import plan_job
    from pipelines.offline.preflight import check_input, check_operators, check_output, check_resources

    started = time.monotonic()
    source = check_input(spec)  # input and column errors first, before touching the output
    out = resolve(spec.output, spec.storage)
    check_output_format(spec, out)
    # The operators' check (transformers and torch imported, each task's config and processor
    # read: 2 s here) runs in a thread beside the Ray start-up below (4 s), which is mostly
    # other processes starting; its SpecError is raised where fingerprint() is first called.
    # Ray is started from this thread, not a helper: Ray's processes die with the thread that
    # started them (PR_SET_PDEATHSIG), and ray.init sets its SIGTERM handler in the main thread only.
    operators_checked = _in_thread(check_operators, spec.tasks)

    @functools.cache
    def fingerprint() -> dict[str, Any]:
        # Processors and configs first: they name a bad option clearly, and a hub model's
        # files are then in the local cache, where its digest (the commit) is read.
        operators_checked.result()
        return job_fingerprint(spec, source)

    # A non-empty output without --resume/--overwrite is refused before any model loads.
    try:
        done = _prepare_output(spec, out, fingerprint)
    except BaseException:
        # The check's thread must not outlive this call: mid-import, transformers is a module
        # that another thread of the caller's process finds without its attributes (seen:
        # "module 'transformers' has no attribute 'AutoTokenizer'" in the caller's next job).
        concurrent.futures.wait([operators_checked])
        raise
    if done is not None:
        concurrent.futures.wait([operators_checked])
        return done
    try:
        _ensure_ray(spec)
    except BaseException:
        fingerprint()  # a bad spec is what to report (exit 2), not what followed it
        raise
    fingerprint()
    # Nothing is deleted (--overwrite) until every check that can fail has passed.
    check_output(out)
    plan = plan_job(spec, source)  # sized for the running Ray's nodes
    sizing = plan.sizing
    logger.info("sizing: %s", "; ".join(sizing.lines()))
    check_resources(plan)
    if spec.mode == "overwrite":
        delete_dir_contents(out)
    _write_job_file(out, spec, fingerprint())
    data = data_location(spec, out)
    compactor = _compactor(spec, out, data)
    if compactor is not None:
        compactor.recover()  # a compaction a kill interrupted: before Ray's checkpoint filter reads

    import ray
    from ray.data.checkpoint import CheckpointConfig

    from pipelines.offline.job_stats import JobStats

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    budget = ErrorBudget(spec.max_failed_fraction, error_budget.MIN_ROWS)
    # Pinned to the driver's node: a stats actor on a worker that is lost mid-job would take
    # every forward call down with it (seen in the node-loss test).
    stats = ray.remote(num_cpus=0)(JobStats).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    ).remote(budget)
    try:
        with job_data_context(
            block_bytes=int(source.block_bytes(sizing.block_rows) * sizing.block_growth),
            checkpoint=CheckpointConfig(
                id_column=source.id_column,
                checkpoint_path=_uri(out, posixpath.join(out.path, CHECKPOINT_DIR)),
                override_filesystem=out.filesystem,
                delete_checkpoint_on_success=False,
            ),
        ):
            ds = build_dataset(plan, stats=stats)
            failure = None
            try:
                with compacting(compactor):
                    ds.write_parquet(
                        data.path,
                        filesystem=out.filesystem,
                        min_rows_per_file=sizing.block_rows,
                        ray_remote_args={"num_cpus": sizing.io_cpus},
                        **PARQUET_WRITE_OPTIONS,
                    )
            except Exception as e:  # any execution failure: the job did not finish
                failure = (f"{type(e).__name__}: {_first_line(e)}", "".join(traceback.format_exception(e)))
            if failure is not None:
                del ds
                _release_failed_execution()
                verdict = ray.get(stats.snapshot.remote())["verdict"]
                if verdict is not None:  # a forward actor stopped the job on the error budget
                    error: Exception = ErrorBudgetError(f"job stopped: {verdict}; no {SUCCESS_FILE} written")
                else:
                    error = JobFailedError(f"job did not finish: {failure[0]}")
                error.add_note(f"the execution failed with:\n{failure[1]}")
                raise error
        snapshot = ray.get(stats.snapshot.remote())
    finally:
        ray.kill(stats)
    summary = finalize(plan, out, snapshot, time.monotonic() - started, fingerprint=fingerprint())
    return summary


def _release_failed_execution() -> None:
    """Let a failed execution's actors go now, not whenever Python's cycle collector next runs.

    The failure's traceback frames hold Ray Data's operators, and through them the actor
    handles of the job's pools, in reference cycles: the forward actors, and the CPUs they
    reserve, outlived the job until the collector ran. In a process that goes on (label(), a
    notebook, the test suite) that was up to a minute later, and the next job waited for those
    CPUs (seen: a resume after a job stopped by the error budget waited 76 s). So run_job keeps
    the failure as text (the error it raises carries it as a note), and collects here, once
    nothing of ours holds the exception. (A logging handler that keeps records, as pytest's
    log capture does until the test ends, keeps the frames through the records' exc_info.)
    """
    gc.collect()


@contextlib.contextmanager
def job_data_context(*, block_bytes: int, checkpoint=None):
    """Ray Data's current DataContext set up for one job, and restored afterwards.

    Enter it before the dataset is built: a Dataset copies the context when it is created.
    `block_bytes` is the block byte target (block_rows input rows times the picked growth);
    `checkpoint` a `ray.data.checkpoint.CheckpointConfig`, or None for no checkpointing.
    """
    from ray.data import DataContext

    ctx = DataContext.get_current()
    names = ("checkpoint_config", "target_max_block_size", "target_min_block_size", "_max_num_blocks_in_streaming_gen_buffer")
    saved = {name: getattr(ctx, name) for name in names}
    try:
        ctx.checkpoint_config = checkpoint
        ctx.target_max_block_size = block_bytes
        ctx.target_min_block_size = min(ctx.target_min_block_size or 0, block_bytes)
        ctx._max_num_blocks_in_streaming_gen_buffer = max(
            ctx._max_num_blocks_in_streaming_gen_buffer or 0, STREAMING_GEN_BUFFER_BLOCKS
        )
        yield ctx
    finally:
        for name, value in saved.items():
            setattr(ctx, name, value)


def _prepare_output(spec: JobSpec, out: Location, fingerprint: Callable[[], dict[str, Any]]) -> JobSummary | None:
    """Check the output against the mode (deleting nothing: run_job empties it for --overwrite
    once every check has passed). Returns the stored summary when a resume finds this job
    finished; refuses a resume over another job's output (FingerprintMismatchError).
    `fingerprint()` gives this job's; it is called only to compare with a stored one."""
    try:
        names = output_state(out)
    except ValueError as e:  # the output is a file
        raise SpecError(f"output: {e}") from None
    if not names or spec.mode == "overwrite":
        return None
    if spec.mode == "error-if-exists":
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise OutputExistsError(
            f"output: {out.uri} is not empty ({len(names)} entries: {shown}); "
            "pass --resume to continue the job there or --overwrite to replace it"
        )
    # resume
    if SUCCESS_FILE in names:
        text = read_text(out, posixpath.join(out.path, SUCCESS_FILE))
        check_fingerprint(out, SUCCESS_FILE, json.loads(text).get("fingerprint"), fingerprint)
        return summary_from_manifest(text)
    if JOB_FILE in names:
        stored = json.loads(read_text(out, posixpath.join(out.path, JOB_FILE)) or "{}")
        check_fingerprint(out, JOB_FILE, stored.get("fingerprint"), fingerprint)
    data = [n for n in names if not is_hidden(n)]
    if data and CHECKPOINT_DIR not in names:
        raise OutputExistsError(
            f"output: {out.uri} holds data files but no {CHECKPOINT_DIR}/, so it was not written by an "
            "unfinished taskray job; resuming could duplicate rows. Use --overwrite or another output"
        )
    return None


def check_fingerprint(
    out: Location, where: str, stored: dict[str, Any] | None, current: Callable[[], dict[str, Any]]
) -> None:
    """Refuse to resume over an output whose recorded fingerprint differs from this job's.
    Outputs of taskray versions that recorded none are resumed as before."""
    from pipelines.offline.fingerprint import differences

    if stored is None:
        return
    changed = differences(stored, current())
    if changed:
        raise FingerprintMismatchError(
            f"output: {out.uri} was written by a different job ({where}); fields that differ: "
            f"{'; '.join(changed)}. Resume with the same settings, or use --overwrite or another output"
        )


def _write_job_file(out: Location, spec: JobSpec, fingerprint: dict[str, Any]) -> None:
    """Record the fingerprint before any data file is written; a resume keeps the first run's."""
    path = posixpath.join(out.path, JOB_FILE)
    if spec.mode == "resume" and read_text(out, path) is not None:
        return
    write_text(out, path, json.dumps({"fingerprint": fingerprint, "spec": spec.model_dump(mode="json")}, indent=2))


def _in_thread(fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
    """`fn(*args)` started in a daemon thread; the Future's result() returns or raises its outcome."""
    import threading

    future: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as e:  # handed to whoever calls result(), in the calling thread
            future.set_exception(e)

    threading.Thread(target=run, name=f"taskray-{fn.__name__}", daemon=True).start()
    return future


def _ensure_ray(spec: JobSpec) -> None:
    import ray

    if ray.is_initialized():
        # A process that ran jobs before (label(), a notebook): an earlier job's actors that
        # only unreachable reference cycles still hold (a failure's frames, once its error is
        # dropped) go now, not when Python's cycle collector next runs, so that this job finds
        # their CPUs free (see _release_failed_execution).
        gc.collect()
        return
    address = spec.ray_address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":
        # Its workers inherit this process's environment (pipelines/local_ray.py).
        from pipelines.local_ray import start_local_ray

        start_local_ray()
        return
    # The workers of a cluster this process did not start get the variables they need here
    # through the job's runtime_env.
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_") or k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:
        # Inside a submitted Ray job the job's runtime_env already reaches the workers, and
        # Ray refuses to merge a second one that sets any of the same env_vars.
        env = {}
    ray.init(address=address, runtime_env={"env_vars": env} if env else None, include_dashboard=False)


def finalize(
    plan: JobPlan, out: Location, snapshot: dict, wall_s: float,
    history: list[dict] | None = None, rows_processed: int | None = None, fingerprint: dict[str, Any] | None = None,
    compact: bool = True,
) -> JobSummary:
    """Make every data file share one schema, count rows from the files themselves, check
    that no id was written twice and that each task is within the error budget, then write
    _SUCCESS and drop the checkpoint. `plan`: the job's (pipelines/offline/plan.py JobPlan), whose
    source names the id column and whose tasks name their error columns.
    `history` and `rows_processed` (default: from `snapshot`): see pipelines/offline/retry.py.
    `fingerprint`: see write_success. `compact`: compact the committed blocks first
    (pipelines/offline/compaction.py); a retry, which replaced files in place under their names, does not."""
    from pipelines.offline import error_budget
    from pipelines.offline.error_budget import ErrorBudget

    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    spec, id_column = plan.spec, plan.source.id_column
    data = data_location(spec, out)
    compactor = _compactor(spec, out, data) if compact else None
    if compactor is not None:
        compacted = compactor.compact(final=True)
        logger.info("final compaction: %d files written", compacted)
    files = data_files(data)
    schema = _unify_file_schemas(data, files)
    error_columns = plan.error_columns
    dataset = pads.dataset(files, schema=schema, filesystem=out.filesystem, format="parquet")
    table = dataset.to_table(columns=[id_column, *error_columns.values()]) if files else None
    total = 0 if table is None else table.num_rows
    if table is not None:
        unique = pc.count_distinct(table.column(id_column)).as_py()
        if unique != total:
            raise JobFailedError(
                f"output has {total} rows but {unique} distinct ids in {id_column!r}: the id column is "
                "not unique or rows were written twice; no _SUCCESS written"
            )
    tasks: dict[str, TaskCounts] = {}
    all_kinds: dict[str, int] = {}
    failed_mask = None
    budget = ErrorBudget(spec.max_failed_fraction, error_budget.MIN_ROWS)
    verdicts = []
    for f in plan.forwards:
        dtype = ", ".join(snapshot.get("dtypes", {}).get(f.name, [])) or None
        counts = TaskCounts(task=f.operator.task, model=f.operator.model, nodes=snapshot["nodes"].get(f.name, {}), dtype=dtype)
        if table is not None:
            errors = table.column(error_columns[f.name])
            mask = pc.is_valid(errors)
            failed_mask = mask if failed_mask is None else pc.or_(failed_mask, mask)
            examples: dict[str, str] = {}
            for value in errors.filter(mask).to_pylist():
                kind = error_kind(value)
                counts.errors_by_kind[kind] = counts.errors_by_kind.get(kind, 0) + 1
                all_kinds[kind] = all_kinds.get(kind, 0) + 1
                examples.setdefault(kind, value)
            counts.failed = pc.sum(mask.cast("int64")).as_py() or 0
            counts.ok = total - counts.failed
            worst = max(counts.errors_by_kind, key=counts.errors_by_kind.get, default=None)
            verdict = budget.verdict(
                f.name, total, counts.failed, counts.errors_by_kind, examples.get(worst), final=True
            )
            if verdict is not None:
                verdicts.append(verdict)
        tasks[f.name] = counts
    if verdicts:
        # The data files and the checkpoint stay: --resume with a larger max_failed_fraction
        # finishes this output, and --retry-failed can run the failed rows again.
        raise ErrorBudgetError(f"job failed: {' | '.join(verdicts)}; no {SUCCESS_FILE} written")
    failed = 0 if failed_mask is None else (pc.sum(failed_mask.cast("int64")).as_py() or 0)
    processed = sum(snapshot["nodes"].get(plan.forwards[0].name, {}).values()) if rows_processed is None else rows_processed
    summary = JobSummary(
        output=out.uri,
        total=total,
        ok=total - failed,
        failed=failed,
        errors_by_kind=all_kinds,
        wall_s=wall_s,
        rows_per_s=processed / wall_s if wall_s > 0 else 0.0,
        rows_processed=processed,
        tasks=tasks,
    )
    if spec.output_format == "lance" and files:
        write_lance(spec, out, data, files, schema)
    write_success(out, spec, summary, fingerprint=fingerprint, history=history)
    if spec.output_format == "lance":
        with contextlib.suppress(FileNotFoundError, OSError):
            out.filesystem.delete_dir(data.path)  # the Lance dataset holds the rows now
    with contextlib.suppress(FileNotFoundError, OSError):
        out.filesystem.delete_dir(posixpath.join(out.path, CHECKPOINT_DIR))
    with contextlib.suppress(FileNotFoundError, OSError):
        out.filesystem.delete_file(posixpath.join(out.path, JOB_FILE))  # _SUCCESS holds its fingerprint now
    return summary


def check_output_format(spec: JobSpec, out: Location) -> None:
    """Refuse, before any work, an output format this installation or this output cannot take."""
    if spec.output_format != "lance":
        return
    try:
        import lance  # noqa: F401
    except ImportError:
        raise SpecError(
            "output_format: lance needs the pylance package; install it with: pip install 'taskray[lance]'"
        ) from None
    if out.prefix not in ("", "s3://"):
        raise SpecError(
            f"output_format: lance writes to a local path or s3:// here, got {out.uri!r}; "
            "write Parquet there, or Lance to a local or S3 output"
        )


def data_location(spec: JobSpec, out: Location) -> Location:
    """Where the job's Parquet files are: the output itself, or for a Lance job the staging
    directory inside it that the Lance dataset is written from."""
    if spec.output_format != "lance":
        return out
    path = posixpath.join(out.path, LANCE_STAGING_DIR)
    return Location(out.filesystem, path, uri_of(out, path), out.prefix)


def _compactor(spec: JobSpec, out: Location, data: Location):
    """The compactor of a Parquet output; None for Lance, whose writer sizes its own files."""
    from pipelines.offline.compaction import Compactor

    if spec.output_format == "lance":
        return None
    return Compactor(data, spec.target_file_size, posixpath.join(out.path, CHECKPOINT_DIR), PARQUET_WRITE_OPTIONS)


def write_lance(spec: JobSpec, out: Location, data: Location, files: list[str], schema) -> None:
    """Write the job's Parquet files as the Lance dataset at `out`, through Ray Data's Lance
    writer, in one commit (mode overwrite: a finalize killed after its commit is redone whole).

    Float vectors become fixed-size lists: lance's vector search (and LanceDB's) refuses a
    variable-size list ("Query column embedding must be a vector"), and the width is known only
    from the rows (the model's hidden size), so it is read from them; a failed row's vector is
    null, which both keep."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import ray
    from ray.data import SaveMode

    from pipelines.storage import lance_storage_options

    dataset = pads.dataset(files, schema=schema, filesystem=data.filesystem, format="parquet")
    fields = []
    for field in schema:
        width = None
        if pa.types.is_list(field.type) and pa.types.is_floating(field.type.value_type):
            lengths = set()
            for batch in dataset.to_batches(columns=[field.name]):
                column = pc.drop_null(pc.list_value_length(batch.column(0)))
                if len(column):
                    lengths.update({pc.min(column).as_py(), pc.max(column).as_py()})
            width = lengths.pop() if len(lengths) == 1 else None
        fields.append(pa.field(field.name, pa.list_(pa.float32(), width)) if width else field)
    lance_schema = pa.schema(fields)
    # Rows per Lance file from the Parquet bytes per row: floats (most of an embedding row)
    # barely compress, so this is close to what Lance stores.
    total_bytes = sum(i.size for i in data.filesystem.get_file_info(files))
    rows = dataset.count_rows()
    rows_per_file = max(1, int(spec.target_file_size * rows / max(total_bytes, 1)))
    ds = ray.data.read_parquet(files, filesystem=data.filesystem).map_batches(
        _cast_batch, fn_kwargs={"schema": lance_schema}, batch_format="pyarrow"
    )
    ds.write_lance(
        uri_of(out, out.path),
        schema=lance_schema,
        mode=SaveMode.OVERWRITE,
        min_rows_per_file=min(rows_per_file, rows),
        max_rows_per_file=rows_per_file,
        storage_options=lance_storage_options(out, spec.storage),
    )


def _cast_batch(batch, schema):
    return batch.select(schema.names).cast(schema)


def write_success(
    out: Location,
    spec: JobSpec,
    summary: JobSummary,
    *,
    fingerprint: dict[str, Any] | None = None,
    history: list[dict] | None = None,
) -> None:
    """Write `<output>/_SUCCESS` (atomically): the one place that writes it. The manifest of
    pipelines/manifest.py plus `fingerprint` (pipelines/offline/fingerprint.py), which a later
    --resume compares. `fingerprint` None keeps the one the output records (its _SUCCESS,
    else its job file), as a rewrite of a finished output (pipelines/offline/retry.py) needs.
    `history`: see manifest_json."""
    if fingerprint is None:
        for name in (SUCCESS_FILE, JOB_FILE):
            text = read_text(out, posixpath.join(out.path, name))
            if text is not None and json.loads(text).get("fingerprint") is not None:
                fingerprint = json.loads(text)["fingerprint"]
                break
    manifest = json.loads(manifest_json(spec.model_dump(mode="json"), summary, history))
    manifest["fingerprint"] = fingerprint
    write_text(out, posixpath.join(out.path, SUCCESS_FILE), json.dumps(manifest, indent=2, sort_keys=False))


def data_files(out: Location) -> list[str]:
    import pyarrow.fs as pafs

    infos = out.filesystem.get_file_info(pafs.FileSelector(out.path, recursive=False, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and not is_hidden(posixpath.basename(i.path)) and i.path.endswith(".parquet"))


def _unify_file_schemas(out: Location, files: list[str]):
    """One schema for all data files. Result columns have their operator's declared types in
    every file (the plan's output schema, pipelines/offline/plan.py), but the kept input columns are the
    input files' own, which the plan knows only from the first file: one input file's all-null
    column is typed `null`, CSV and JSONL types are inferred file by file (int64 in one, double
    in another), and WebDataset json fields have no declared type at all. Casting them to the
    first file's types in the stages would fail where this promotes (null or int64 to double);
    reading every input file's types before the job starts would cost a pass over the input.
    Readers that take the first file's schema would fail on such files: rewrite only those,
    with the unified types."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs = out.filesystem
    schemas = {}
    for path in files:
        with fs.open_input_file(path) as f:
            schemas[path] = pq.read_schema(f).remove_metadata()
    if not schemas:
        return None
    unified = pa.unify_schemas(list(schemas.values()), promote_options="permissive")
    for path, schema in schemas.items():
        if schema.equals(unified):
            continue
        with fs.open_input_file(path) as f:
            table = pq.read_table(f)
        table = table.select(unified.names).cast(unified)
        tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.tmp")
        with fs.open_output_stream(tmp) as f:
            pq.write_table(table, f)
        fs.move(tmp, path)
    return unified


def _uri(out: Location, path: str) -> str:
    return f"s3://{path}" if out.is_s3 else path


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""
