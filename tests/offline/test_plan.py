"""The job plan (pipelines/offline/plan.py), made once and read by everything: --dry-run prints the
stages build_dataset applies, the preflight's resource check reads the bundles the stages ask
Ray for, and a forward actor gets its ForwardPlan (OperatorSpec, columns, thread plan), not
the job's TaskSpec. No Ray: the cluster the resource check sees is faked.
(The plan's output schema against the files a multi-task job writes: test_tasks_end_to_end.py.)"""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

from operators.runtime import OperatorSpec
from pipelines.hardware import Hardware, Node, preprocess_pool_on_cpu
from pipelines.offline.plan import JobPlan, Stage, plan_job
from pipelines.sources import plan_source
from pipelines.spec import SpecError, build_job_spec
from pipelines.offline.stages import Forward, Preprocess
from tests.offline.conftest import write_parquet

TWO_CORES = Hardware((Node(2),), "fake")


@pytest.fixture(scope="module")
def input_dir(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("plan-in"))
    write_parquet(root, {"uid": ["a", "b"], "text": ["x", "y"], "image": [b"1", b"2"], "n": [1, 2]})
    return root


def job(input_dir: str, *tasks: str | dict, hardware: Hardware = TWO_CORES, **task_fields) -> JobPlan:
    """The plan of a job of `tasks` (task ids, or dicts of a task's own fields) with
    `task_fields` set on each, named t0, t1, ..."""
    specs = [
        {"model": "m", "name": f"t{i}", **task_fields, **(t if isinstance(t, dict) else {"task": t})}
        for i, t in enumerate(tasks)
    ]
    spec = build_job_spec({"input": input_dir, "output": "o", "id_column": "uid", "keep_columns": ["n"], "tasks": specs}, {})
    return plan_job(spec, plan_source(spec), hardware)


def test_dry_run_prints_the_stages_build_dataset_applies(input_dir, monkeypatch):
    import pipelines.sources as sources
    from pipelines.offline.job import build_dataset

    plan = job(input_dir, "text-classification", "image-classification")
    assert [(s.name, s.fn) for s in plan.stages] == [("Forward[t0]", Forward), ("Forward[t1]", Forward)]
    # the last task drops the inputs the job does not write and puts the kept ones first
    assert [(f.drop, f.keep) for f in plan.forwards] == [((), ()), (("text", "image"), ("uid", "n"))]
    pool = plan.stages[1].map_batches_kwargs["compute"]
    # two tasks on 2 cores: one core each, so images decode in one more call than they forward
    assert (pool.min_size, pool.max_size, pool.max_concurrent_calls_per_actor) == (1, 1, 2)

    described = plan.describe()
    for i, stage in enumerate(plan.stages, 1):
        assert f"{i}. {stage.describe()}" in described
    assert "concurrent_calls=2" in plan.stages[1].describe() and "preprocess=True" in plan.stages[1].describe()

    applied = []

    class Recorder:
        def map_batches(self, fn, fn_constructor_kwargs, **kwargs):
            applied.append((fn, fn_constructor_kwargs, kwargs))
            return self

    monkeypatch.setattr(sources, "read_dataset", lambda source, block_rows, num_cpus: Recorder())
    build_dataset(plan, stats="the stats actor")
    assert [(fn, kwargs) for fn, _, kwargs in applied] == [(s.fn, s.map_batches_kwargs) for s in plan.stages]
    assert [ctor["plan"] for _, ctor, _ in applied] == [s.fn_constructor_kwargs["plan"] for s in plan.stages]
    assert all(ctor["stats"] == "the stats actor" for _, ctor, _ in applied)

    with preprocess_pool_on_cpu():
        pooled = job(input_dir, "text-classification", "image-classification")
    assert [s.fn for s in pooled.stages] == [Preprocess, Forward, Forward]
    assert pooled.stages[0].fn_constructor_kwargs == {"tasks": list(pooled.forwards), "keep": ["uid", "n"]}
    assert not any(f.preprocess for f in pooled.forwards)


def test_a_forward_actor_gets_its_operator_spec_and_thread_plan(input_dir):
    plan = job(input_dir, "text-classification", batch_size=8, options={"top_k": 2})
    (stage,) = plan.stages
    (forward,) = plan.forwards
    assert stage.fn_constructor_kwargs == {"plan": forward, "stats": None}
    assert type(forward.operator) is OperatorSpec
    assert forward.operator == OperatorSpec(task="text-classification", model="m", options={"top_k": 2})
    picked = plan.sizing.tasks["t0"]
    assert (forward.torch_threads, forward.forward_calls, forward.concurrent_calls) == (
        picked.torch_threads, picked.forward_calls, picked.concurrent_calls,
    )
    # batch_size is resolved once, by the sizing: the stage's map_batches reads the plan's
    assert forward.batch_size == picked.batch_size == stage.map_batches_kwargs["batch_size"] == 8
    assert forward.roles == {"text": "text"} and forward.outputs["label"] == "label"


def test_the_output_schema_is_id_kept_columns_and_declared_results(input_dir):
    plan = job(input_dir, "text-classification", {"task": "token-classification", "options": {"aggregation_strategy": "simple"}})
    schema = plan.output_schema
    assert schema.names == ["uid", "n", "t0.label", "t0.score", "t0.scores", "t0.error", "t1.entities", "t1.error"]
    assert (schema.field("uid").type, schema.field("n").type) == (pa.string(), pa.int64())
    entity = schema.field("t1.entities").type.value_type
    assert "entity_group" in [entity.field(i).name for i in range(entity.num_fields)]  # follows the option
    assert plan.error_columns == {"t0": "t0.error", "t1": "t1.error"}


def fake_cluster(monkeypatch, *nodes: dict[str, float]) -> None:
    """The resource check's view of a Ray cluster of `nodes` (no autoscaler)."""
    import ray

    import pipelines.hardware as hardware

    totals: dict[str, float] = {}
    for node in nodes:
        for k, v in node.items():
            totals[k] = totals.get(k, 0) + v
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": dict(n)} for n in nodes])
    monkeypatch.setattr(ray, "cluster_resources", lambda: totals)
    monkeypatch.setattr(hardware, "autoscaler_limits", lambda: ([], {}))


def bundle_of(stage: Stage) -> dict[str, float]:
    """What the stage's map_batches asks Ray for, per actor."""
    kwargs = stage.map_batches_kwargs
    gpus = {"GPU": kwargs["num_gpus"]} if kwargs.get("num_gpus") else {}
    return {"CPU": kwargs["num_cpus"], **gpus, **kwargs.get("resources", {})}


@pytest.mark.parametrize(
    "hardware, fields",
    [(TWO_CORES, {}), (TWO_CORES, {"forward_resources": {"accel": 0.5}, "actors": "2:3"}),
     (Hardware((Node(8, 1),), "fake"), {})],
    ids=["cpu", "custom-resource", "gpu-with-preprocess-pool"],
)
def test_the_resource_check_reads_the_bundles_the_stages_ask_for(input_dir, monkeypatch, hardware, fields):
    from pipelines.offline.preflight import check_resources

    plan = job(input_dir, "text-classification", "image-classification", hardware=hardware, **fields)
    requests = plan.actor_requests()
    assert [r.name for r in requests] == [s.name for s in plan.stages]
    assert [r.bundle for r in requests] == [bundle_of(s) for s in plan.stages]
    assert [r.min_actors for r in requests] == [s.map_batches_kwargs["compute"].min_size for s in plan.stages]

    # Change one task's plan: its stage and the check both follow.
    forward = dataclasses.replace(plan.forwards[0], resources={"accel": 4.0})
    stages = tuple(
        Stage(s.name, s.fn, {**s.fn_constructor_kwargs, "plan": forward}, forward.map_batches_kwargs())
        if s.fn_constructor_kwargs.get("plan") == plan.forwards[0] else s
        for s in plan.stages
    )
    changed = dataclasses.replace(plan, forwards=(forward, *plan.forwards[1:]), stages=stages)
    fake_cluster(monkeypatch, {"CPU": 8.0, "GPU": 1.0, "accel": 1.0})
    with pytest.raises(SpecError, match=r"^tasks\[t0\]\.forward_resources: each Forward\[t0\] actor asks for .*4 accel"):
        check_resources(changed)
    fake_cluster(monkeypatch, {"CPU": 8.0, "GPU": 1.0, "accel": 16.0})
    if not plan.forwards[0].num_gpus:  # a GPU plan's CUDA probe needs a real Ray
        check_resources(changed)
