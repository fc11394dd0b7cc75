"""The plan of an offline job, made once: what to read, how each pool is sized, the stages
between the read and the write, and the schema the job writes. Everything that runs or
prints the job reads this one object.

    plan = plan_job(spec, source)                  # taskray run: pipelines/offline/job.py
    plan = plan_tasks([task], block_rows=None)     # label(): no input, output or JobSpec
    plan.describe()          # --dry-run
    plan.stages              # what build_dataset (and label) apply, in order: the objects describe() prints
    plan.actor_requests()    # each pool's Ray bundle and minimum size: preflight's resource check
    plan.forwards            # per task: its OperatorSpec, columns, thread plan and actor bundle
    plan.output_schema       # id + kept columns + every task's declared result types

The picks and their reasons come from pipelines/hardware.py (`pick_sizing`); this module
turns them and the tasks' own settings into what each actor gets. A forward actor receives its
`ForwardPlan` (pipelines/offline/stages.py Forward), not the job's TaskSpec: the operator to build, the
columns to read and write and how to thread, nothing it could size again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from operators.runtime import OperatorSpec

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pyarrow

    from pipelines.hardware import Hardware, JobSizing
    from pipelines.sources import SourcePlan
    from pipelines.spec import JobSpec, TaskSpec

# Inside the output: Ray Data's checkpoint (resume) and, for a Lance job, the Parquet files the
# Lance dataset is written from (see pipelines/offline/job.py).
CHECKPOINT_DIR = "_checkpoint"
LANCE_STAGING_DIR = "_parquet"


@dataclass(frozen=True)
class ForwardPlan:
    """One task's forward actor pool: what each actor builds and computes, and what it asks
    Ray for. `outputs` maps each result column of the operator (and `error`) to its column in
    the output; `result_schema` holds their declared Arrow types, under the operator's names."""

    name: str
    operator: OperatorSpec
    roles: dict[str, str]
    outputs: dict[str, str]
    result_schema: "pyarrow.Schema"
    torch_threads: int
    forward_calls: int
    # Decode inside the forward actor (CPU-only layout). The last task then drops the input
    # columns the job does not write and puts `keep` first; earlier ones pass them on.
    preprocess: bool
    drop: tuple[str, ...]
    keep: tuple[str, ...]
    num_cpus: float
    num_gpus: float
    resources: dict[str, float]
    actors: tuple[int, int]
    concurrent_calls: int  # forward_calls, plus the calls decoding images or audio inline
    batch_size: int
    gpus_picked: bool  # num_gpus picked for the cluster, not set by the task

    def bundle(self) -> dict[str, float]:
        """One actor's Ray resources."""
        return {"CPU": self.num_cpus, **({"GPU": self.num_gpus} if self.num_gpus else {}), **self.resources}

    def map_batches_kwargs(self) -> dict[str, Any]:
        from ray.data import ActorPoolStrategy

        pool: dict[str, Any] = {"min_size": self.actors[0], "max_size": self.actors[1]}
        if self.concurrent_calls > 1:
            pool.update(max_concurrent_calls_per_actor=self.concurrent_calls, enable_true_multi_threading=True)
        kwargs: dict[str, Any] = {
            "batch_format": "pyarrow",
            "batch_size": self.batch_size,
            "num_cpus": self.num_cpus,
            "compute": ActorPoolStrategy(**pool),
        }
        if self.num_gpus:
            kwargs["num_gpus"] = self.num_gpus
        if self.resources:
            kwargs["resources"] = dict(self.resources)
        return kwargs


@dataclass(frozen=True)
class ActorRequest:
    """One actor pool as the preflight checks it: one actor's bundle, the pool's minimum size,
    and the spec field that asks for each resource (`*`: any other)."""

    name: str
    bundle: dict[str, float]
    min_actors: int
    fields: dict[str, str]

    def field_for(self, resource: str) -> str:
        return self.fields.get(resource, self.fields["*"])


@dataclass(frozen=True)
class Stage:
    """One `map_batches` stage of the graph, as Ray's ray.data.llm stages are: the UDF class,
    its constructor kwargs and the `map_batches` kwargs. build_dataset applies a plan's stages
    in order and describe() prints the same objects, so the two cannot differ."""

    name: str
    fn: type
    fn_constructor_kwargs: dict[str, Any]
    map_batches_kwargs: dict[str, Any]

    def apply(self, ds, *, stats=None):
        """`ds` with this stage appended. `stats`: the job's stats actor, for the stages that
        report to it (made when the job starts, after the plan)."""
        kwargs = self.fn_constructor_kwargs
        if stats is not None and "stats" in kwargs:
            kwargs = {**kwargs, "stats": stats}
        return ds.map_batches(self.fn, fn_constructor_kwargs=kwargs, **self.map_batches_kwargs)

    def describe(self) -> str:
        kwargs = dict(self.map_batches_kwargs)
        pool = kwargs.pop("compute")
        kwargs.pop("batch_format", None)
        shown = {"actors": f"{pool.min_size}:{pool.max_size}", **kwargs}
        if pool.max_concurrent_calls_per_actor:
            shown["concurrent_calls"] = pool.max_concurrent_calls_per_actor
        forward = self.fn_constructor_kwargs.get("plan")
        if forward is not None:
            shown.update(torch_threads=forward.torch_threads, forward_calls=forward.forward_calls, preprocess=forward.preprocess)
        args = ", ".join(f"{k}={v}" for k, v in shown.items())
        return f"map_batches {self.name}  {self.fn.__name__}: {args}"


@dataclass(frozen=True)
class JobPlan:
    """The plan of a job (`spec` and `source` set) or of label()'s stages (neither)."""

    sizing: "JobSizing"
    forwards: tuple[ForwardPlan, ...]
    stages: tuple[Stage, ...]
    # id + kept columns (typed as the source's first file types them) + every task's results
    # (declared types); None without a source (label(): the columns are the caller's dataset's).
    output_schema: "pyarrow.Schema | None" = None
    spec: "JobSpec | None" = None
    source: "SourcePlan | None" = None

    @property
    def block_rows(self) -> int:
        return self.sizing.block_rows

    @property
    def error_columns(self) -> dict[str, str]:
        """Task name -> its `error` column in the output."""
        return {f.name: f.outputs["error"] for f in self.forwards}

    def actor_requests(self) -> list[ActorRequest]:
        """Every actor pool of the graph; a picked CPU reservation names `actors` (the pool size
        the user can lower), not a field."""
        out = []
        for stage in self.stages:
            forward = stage.fn_constructor_kwargs.get("plan")
            if forward is None:  # the Preprocess pool
                pool = stage.map_batches_kwargs["compute"]
                out.append(ActorRequest(stage.name, {"CPU": stage.map_batches_kwargs["num_cpus"]}, pool.min_size, {"*": "actors"}))
                continue
            where = f"tasks[{forward.name}]"
            fields = {"CPU": f"{where}.actors", "GPU": f"{where}.num_gpus", "*": f"{where}.forward_resources"}
            out.append(ActorRequest(stage.name, forward.bundle(), forward.actors[0], fields))
        return out

    def describe(self) -> str:
        """The resolved spec, the hardware picks and why, and the Ray Data graph, for
        `taskray run --dry-run`."""
        import yaml

        spec, sizing = self.spec, self.sizing
        lines = []
        if spec is not None:
            lines += ["# resolved job spec", yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False).rstrip(), ""]
        lines += ["# picked for the hardware", *sizing.lines(), "", "# Ray Data plan"]
        if spec is not None:
            lines.append(
                f"0. read        input={spec.input}, format={self.source.format if self.source else spec.input_format}, "
                f"limit={spec.limit}, rows_per_block={sizing.block_rows}, num_cpus={sizing.io_cpus}"
            )
        lines += [f"{i}. {stage.describe()}" for i, stage in enumerate(self.stages, 1)]
        if spec is not None:
            n, output = len(self.stages), spec.output.rstrip("/")
            lines.append(
                f"{n + 1}. write       output={output}{'/' + LANCE_STAGING_DIR if spec.output_format == 'lance' else ''}, "
                f"format=parquet, min_rows_per_file={sizing.block_rows}, "
                f"num_cpus={sizing.io_cpus}, checkpoint={output}/{CHECKPOINT_DIR}"
            )
            if spec.output_format == "lance":
                lines.append(
                    f"{n + 2}. finalize    write_lance output={spec.output} (from {LANCE_STAGING_DIR}/), "
                    f"target_file_size={spec.target_file_size}"
                )
            else:
                lines.append(f"{n + 2}. compact     committed files into files of target_file_size={spec.target_file_size} bytes")
        if self.output_schema is not None:
            lines += ["", "# output columns", ", ".join(self.output_schema.names)]
            lines += ["", "# output types (kept columns: as the first input file has them)"]
            lines += [f"{f.name}: {f.type}" for f in self.output_schema]
        return "\n".join(lines)


def plan_job(spec: "JobSpec", source: "SourcePlan", hardware: "Hardware | None" = None) -> JobPlan:
    """The plan of `spec` reading `source` (pipelines/sources.py plan_source), sized for
    `hardware` (default: the running Ray's nodes, else this machine)."""
    import pyarrow as pa

    keep = list(dict.fromkeys([source.id_column, *spec.keep_columns]))
    drop = [c for c in source.columns if c not in keep]
    sizing = _sizing(spec.tasks, hardware, spec.block_rows)
    forwards, stages = _stages(spec.tasks, sizing, spec.output_column, keep, drop)
    results = [pa.field(f.outputs[c.name], c.type) for f in forwards for c in f.result_schema]
    schema = pa.schema([*(source.schema.field(c) for c in keep), *results])
    return JobPlan(sizing, forwards, stages, schema, spec, source)


def plan_tasks(tasks: "Sequence[TaskSpec]", hardware: "Hardware | None" = None, *, block_rows: int | None = None) -> JobPlan:
    """The stages of `tasks` over a dataset the caller holds (pipelines/offline/label.py): every input
    column passes through, and results are named `<name>.<column>` even for one task (calls
    chain on one dataset). `block_rows`: rows per Preprocess call (default: picked)."""
    sizing = _sizing(tasks, hardware, block_rows)
    forwards, stages = _stages(tasks, sizing, lambda t, c: f"{t.column_prefix}.{c}", None, [])
    return JobPlan(sizing, forwards, stages)


def _sizing(tasks, hardware, block_rows) -> "JobSizing":
    from pipelines.hardware import current_hardware, pick_sizing

    return pick_sizing(tasks, hardware or current_hardware(), block_rows)


def _stages(tasks, sizing, output_column, keep, drop) -> tuple[tuple[ForwardPlan, ...], tuple[Stage, ...]]:
    """The Preprocess pool (when `sizing` says so) and one Forward stage per task. `keep`: the
    input columns written (None: all); `drop`: the input columns not written."""
    from ray.data import ActorPoolStrategy

    from operators import get_operator
    from pipelines.offline.stages import Forward, Preprocess

    inline = sizing.preprocess == "inline"
    forwards = []
    for i, t in enumerate(tasks):
        picked = sizing.tasks[t.column_prefix]
        cls = get_operator(t.task)
        last = inline and i == len(tasks) - 1
        forwards.append(
            ForwardPlan(
                name=t.column_prefix,
                operator=OperatorSpec(**t.model_dump(include=set(OperatorSpec.model_fields))),
                roles=t.role_columns(),
                outputs={c: output_column(t, c) for c in (*cls.output_columns, "error")},
                result_schema=cls.output_schema_for(t.options),
                torch_threads=picked.torch_threads,
                forward_calls=picked.forward_calls,
                preprocess=inline,
                drop=tuple(drop) if last else (),
                keep=tuple(keep or ()) if last else (),
                num_cpus=picked.num_cpus,
                num_gpus=picked.num_gpus,
                resources=dict(t.forward_resources),
                actors=picked.actors,
                concurrent_calls=picked.concurrent_calls,
                batch_size=picked.batch_size,
                gpus_picked=t.num_gpus is None and bool(picked.num_gpus),
            )
        )
    stages = []
    if not inline:
        lo, hi = sizing.preprocess_actors
        stages.append(
            Stage(
                "Preprocess",
                Preprocess,
                {"tasks": list(forwards), "keep": None if keep is None else list(keep)},
                {
                    "batch_format": "pyarrow",
                    "batch_size": sizing.block_rows,
                    "num_cpus": sizing.preprocess_cpus,
                    "compute": ActorPoolStrategy(min_size=lo, max_size=hi),
                },
            )
        )
    for f in forwards:
        stages.append(Stage(f"Forward[{f.name}]", Forward, {"plan": f, "stats": None}, f.map_batches_kwargs()))
    return tuple(forwards), tuple(stages)
