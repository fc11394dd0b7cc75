"""`pipelines.offline.label`: taskray's stages inside a user's own Ray Data pipeline.

Two chained `label` calls over one `ray.data.read_parquet` (one with the Preprocess pool, one
inline) give, per id, the operator's own values and per-row errors under the `<task>.<column>`
names of a `taskray run` job (tests/offline/test_tasks_end_to_end.py holds a job's output to
the same operator calls); the input columns pass through. Bad settings raise the SpecError
`taskray run` reports for them."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipelines import label
from pipelines.hardware import preprocess_pool_on_cpu
from pipelines.spec import SpecError, build_job_spec
from tests.offline.conftest import write_parquet
from tests.offline.test_tasks_end_to_end import SAME_BATCHING, after_arrow, assert_close
from tests.operators import images
from tests.operators.texts import VARIED_TEXTS

TASKS = ("text-classification", "image-classification")
STAGE_SIZES = {"batch_size": 4, "actors": (1, 1), "options": SAME_BATCHING}


def input_columns() -> dict[str, list]:
    """Six rows; row 4 has no text and row 5 a truncated JPEG."""
    pics = images.varied_images()[:5] + [images.truncated_jpeg()]
    return {"uid": [f"u{i}" for i in range(6)], "text": [*VARIED_TEXTS[:4], None, VARIED_TEXTS[4]], "image": pics}


@pytest.fixture(scope="module")
def models(tiny_model) -> dict[str, str]:
    return {t: tiny_model(t) for t in TASKS}


@pytest.fixture(scope="module")
def input_dir(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("label-in"))
    write_parquet(root, input_columns(), rows_per_file=3)
    return root


@pytest.mark.ray
def test_chained_label_calls_equal_the_operators_and_name_columns_as_a_job(ray_session, models, input_dir):
    from operators import get_operator
    from pipelines.offline.plan import plan_job
    from pipelines.sources import plan_source

    # The columns a two-task `taskray run` job would write, from its plan (no job run: the
    # end-to-end test holds a job's values to the operator calls this test also uses).
    tasks = [{"task": t, "model": models[t], **STAGE_SIZES} for t in TASKS]
    spec = build_job_spec({"input": input_dir, "output": "unused", "id_column": "uid", "tasks": tasks}, {})
    job_columns = plan_job(spec, plan_source(spec)).output_schema.names
    result_columns = [c for c in job_columns if c.split(".")[0] in TASKS]
    assert len(result_columns) >= 6

    ds = ray_session.data.read_parquet(input_dir)
    with preprocess_pool_on_cpu():  # the GPU layout: a Preprocess pool feeds the forward actors
        ds = label(ds, "text-classification", models["text-classification"], **STAGE_SIZES)
    ds = label(ds, "image-classification", models["image-classification"], **STAGE_SIZES)  # decodes inline
    rows = {r["uid"]: r for r in ds.take_all()}

    columns = input_columns()
    want = {}
    for task in TASKS:
        op_cls = get_operator(task)
        out = op_cls(models[task], **SAME_BATCHING)({role: columns[role] for role in op_cls.input_roles})
        want.update({f"{task}.{c}": after_arrow(v) for c, v in out.items() if f"{task}.{c}" in result_columns})
    assert set(want) == set(result_columns)
    assert sorted(rows) == columns["uid"]  # one row per input row
    for i, (uid, text, image) in enumerate(zip(columns["uid"], columns["text"], columns["image"])):
        got = rows[uid]
        assert (got["text"], got["image"]) == (text, image), "input columns pass through"
        assert set(got) == {"uid", "text", "image", *result_columns}
        for column in result_columns:
            assert_close(got[column], want[column][i], f"{uid} {column}")
    assert rows["u4"]["text-classification.error"] == "input: expected text as str, got None"
    assert rows["u5"]["image-classification.error"].startswith("decode: ")
    assert sum(r["text-classification.error"] is None and r["image-classification.error"] is None for r in rows.values()) == 4


@pytest.mark.ray
def test_bad_settings_raise_the_errors_of_taskray_run(ray_session, models):
    model = models["text-classification"]
    ds = ray_session.data.from_items([{"text": "a"}])
    for bad in ({"actors": "0:1"}, {"num_gpus": -1}, {"options": {"top_k": 0}}, {"bogus": 1}, {"forward_cpus": 1}):
        with pytest.raises(SpecError) as job_error:
            build_job_spec({"input": "x", "output": "y", "tasks": [{"task": "text-classification", "model": model, **bad}]}, {})
        with pytest.raises(SpecError) as label_error:
            label(ds, "text-classification", model, **bad)
        assert str(label_error.value) == str(job_error.value).removeprefix("tasks.0."), bad
    with pytest.raises(SpecError, match=r"^preprocess: no longer a setting; taskray picks it per node"):
        label(ds, "text-classification", model, preprocess="inline")
    with pytest.raises(ValueError, match=r"^task: .*text-classification"):
        label(ds, "no-such-task", model)
    with pytest.raises(SpecError, match=r"^columns\.text: column 'review' not found in the dataset; columns are \['text'\]"):
        label(ds, "text-classification", model, columns={"text": "review"})
    labelled = ray_session.data.from_items([{"text": "a", "text-classification.label": "x"}])
    with pytest.raises(SpecError, match=r"^name: the dataset already has the columns \['text-classification.label'\]"):
        label(labelled, "text-classification", model)
    label(labelled, "text-classification", model, name="second")  # another name: no clash
    with pytest.raises(TypeError, match="got list"):
        label([{"text": "a"}], "text-classification", model)


@pytest.mark.ray
def test_label_plans_its_stages_without_a_job_spec(ray_session, models, monkeypatch):
    """label() plans from its TaskSpec alone (pipelines/offline/plan.py plan_tasks): no JobSpec with a
    made-up input and output. The stages it appends are the plan's."""
    from pipelines.offline import plan as plan_module
    from pipelines.spec import JobSpec

    def no_job_spec(self, **fields):
        raise AssertionError(f"label() built a JobSpec: {fields}")

    monkeypatch.setattr(JobSpec, "__init__", no_job_spec)
    planned = []
    plan_tasks = plan_module.plan_tasks
    monkeypatch.setattr(plan_module, "plan_tasks", lambda *a, **k: planned.append(plan_tasks(*a, **k)) or planned[-1])
    ds = label(ray_session.data.from_items([{"text": "a"}]), "text-classification", models["text-classification"], block_rows=8)
    (plan,) = planned
    assert plan.spec is None and plan.source is None and plan.block_rows == 8
    assert [s.name for s in plan.stages] == ["Forward[text-classification]"]
    assert plan.forwards[0].outputs["label"] == "text-classification.label"
    with pytest.raises(SpecError, match=r"^block_rows: Input should be greater than or equal to 1 \(got 0\)"):
        label(ds, "text-classification", models["text-classification"], block_rows=0, name="again")


def test_forward_refuses_to_append_a_column_the_input_has(models):
    """The clash check where the schema is not known ahead (after a map): in the forward stage."""
    from pipelines.hardware import Hardware, Node
    from pipelines.offline.plan import plan_tasks
    from pipelines.spec import TaskSpec
    from pipelines.offline.stages import Forward

    task = TaskSpec(task="text-classification", model=models["text-classification"])
    forward = Forward(plan_tasks([task], Hardware((Node(2),), "test")).forwards[0])
    table = pa.table({"text": ["a"], "text-classification.label": ["x"]})
    with pytest.raises(ValueError, match=r"already has its result columns \['text-classification.label'\]"):
        forward.label(table, {"features": [None], "error": ["input: x"]})
