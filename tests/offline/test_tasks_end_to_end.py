"""Every registered task end to end through local Ray: Parquet in, Parquet out, and each
output row equals the operator's own `__call__` on the same input rows.

One multi-task job runs all tasks over one dataset (one read, one preprocess pass, one actor
pool per task, `<task>.<column>` column groups), which is also the multi-task test. The
dataset holds every input role, with image cells in the HF-datasets {bytes, path} layout, and
some corrupt rows per modality: those must come back as the same per-row errors.
"""

from __future__ import annotations

import math
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators import get_operator, list_tasks
from tests.offline.conftest import write_parquet
from tests.operators import images, sounds, texts

# Both sides run one row per micro-batch (max_batch_rows=1): Ray cuts the rows into other
# batches than one __call__ does, and with padding in play the calibrated tiny heads amplify
# fp32 summation-order noise past 1e-4 (measured: 1.6e-4 on a text-classification score).
# Without padding only the thread count differs (1 per forward actor), so fp32 noise remains.
SAME_BATCHING = {"max_batch_rows": 1}
FLOAT_TOL = 1e-4
# 16-bit depth PNGs are min-max scaled renderings of those floats; 8 levels are 1.2e-4 of the
# range, the same bound as FLOAT_TOL (measured: 2 levels between 1 and 2 torch threads).
PNG_LEVELS_TOL = 8
ROWS_PER_FILE = 4
BLOCK_ROWS = 3  # several blocks per file: work and output files are split

# One job starts 14 actor processes (torch + transformers each): about a minute on an idle
# 2-core box, far longer when the box is shared; the suite's default 600 s is too tight then.
pytestmark = pytest.mark.timeout(1500)


def input_columns() -> dict[str, list]:
    """12 rows with every input role. Rows 9-11 carry a bad value for each modality."""
    pics = images.varied_images()
    clips = [sounds.encode(c[: sounds.RATE]) for c in sounds.varied_clips()]  # <= 1 s each keeps the test fast
    n_good = 9
    text = list(texts.VARIED_TEXTS[:n_good]) + [None, "", "fine text after bad ones"]
    image = [{"bytes": b, "path": f"img{i}.png"} for i, b in enumerate(pics[:n_good])]
    image += [{"bytes": images.truncated_jpeg(), "path": "bad.jpg"}, {"bytes": b"not an image", "path": "x.png"}, {"bytes": pics[0], "path": "ok.png"}]
    audio = clips[:n_good] + [sounds.corrupt_bytes(), b"", clips[1]]
    question = ["What is it?"] * len(text)
    return {
        "uid": [f"row-{i:02d}" for i in range(len(text))],
        "text": text,
        "context": text,
        "question": question,
        "image": image,
        "audio": audio,
        "n": list(range(len(text))),
    }


def after_arrow(values: list) -> list:
    """Operator output as it looks after an Arrow round trip (struct keys unified, etc.)."""
    return pa.array(values).to_pylist() if any(v is not None for v in values) else values


def assert_close(got, want, where: str) -> None:
    if isinstance(want, float) and isinstance(got, float):
        assert math.isclose(got, want, abs_tol=FLOAT_TOL), f"{where}: {got} != {want}"
    elif isinstance(want, bytes) and want.startswith(b"\x89PNG") and isinstance(got, bytes):
        import io

        import numpy as np
        from PIL import Image

        a, b = (np.asarray(Image.open(io.BytesIO(x)), dtype=np.int64) for x in (got, want))
        assert a.shape == b.shape and np.abs(a - b).max() <= PNG_LEVELS_TOL, f"{where}: PNG pixels differ"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: {got} != {want}"
        for k in want:
            assert_close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("e2e-in"))
    write_parquet(root, input_columns(), rows_per_file=ROWS_PER_FILE)
    return root


@pytest.fixture(scope="module")
def built_models(tiny_model) -> dict[str, str | Exception]:
    out: dict[str, str | Exception] = {}
    for task in list_tasks():
        try:
            out[task] = tiny_model(task)
        except Exception as e:  # reported by that task's test, not hidden
            out[task] = e
    return out


@pytest.fixture(scope="module")
def multi_task_run(ray_session, dataset_dir, built_models, tmp_path_factory):
    from pipelines.hardware import preprocess_pool_on_cpu
    from pipelines.offline.job import run_job
    from pipelines.spec import build_job_spec

    tasks = [
        {"task": t, "model": m, "batch_size": 4, "options": SAME_BATCHING}
        for t, m in built_models.items()
        if isinstance(m, str)
    ]
    output = str(tmp_path_factory.mktemp("e2e-out") / "out")
    spec = build_job_spec(
        {"input": dataset_dir, "output": output, "id_column": "uid", "keep_columns": ["n"], "block_rows": BLOCK_ROWS, "tasks": tasks},
        {},
    )
    with preprocess_pool_on_cpu():  # the GPU layout (a Preprocess pool), here on the CPU
        summary = run_job(spec)
    return spec, summary, output


@pytest.mark.ray
@pytest.mark.parametrize("task", list_tasks())
def test_task_output_equals_operator_call(task, multi_task_run, built_models):
    model = built_models[task]
    if isinstance(model, Exception):
        raise AssertionError(f"no tiny model for {task}: {model}")
    spec, summary, output = multi_task_run
    table = pq.read_table(output).sort_by("uid")
    columns = input_columns()
    op_cls = get_operator(task)
    op = op_cls(model, **SAME_BATCHING)
    batch = {role: columns[role] for role in op_cls.input_roles}
    want = op(batch)
    assert table.column("uid").to_pylist() == columns["uid"]  # one row per input row, in full
    assert table.column("n").to_pylist() == columns["n"]
    for column in (*op_cls.output_columns, "error"):
        got = table.column(f"{task}.{column}").to_pylist()
        assert_close(got, after_arrow(want[column]), f"{task}.{column}")
    for field in op.output_schema():  # every file has the declared types (embeddings as float32)
        assert table.schema.field(f"{task}.{field.name}").type == field.type, field.name
    assert any(e is None for e in want["error"]), f"{task}: every row failed, the comparison proves little"
    counts = summary.tasks[task]
    assert counts.failed == sum(e is not None for e in want["error"])
    assert sum(counts.nodes.values()) == len(columns["uid"])


@pytest.mark.ray
def test_multi_task_output_layout_and_manifest(multi_task_run):
    import json

    spec, summary, output = multi_task_run
    names = sorted(os.listdir(output))
    assert "_SUCCESS" in names and "_checkpoint" not in names
    data_files = [n for n in names if n.endswith(".parquet")]
    # The work is split into blocks of BLOCK_ROWS rows (what resume tracks), and the committed
    # blocks are merged into files of target_file_size (128 MiB by default): 12 rows, one file.
    assert len(data_files) == 1 and data_files[0].startswith("compacted-"), data_files
    table = pq.read_table(output)
    assert table.num_rows == summary.total == 12
    for t in spec.tasks:
        assert f"{t.task}.error" in table.column_names
    assert not [c for c in table.column_names if c.startswith("__")], "internal columns leaked"
    manifest = json.loads(open(os.path.join(output, "_SUCCESS")).read())
    assert manifest["rows"] == {"total": 12, "ok": summary.ok, "failed": summary.failed}
    # a row counts as failed when any task failed on it; rows 9-11 carry bad values
    assert summary.failed >= 2 and summary.ok >= 9
    kinds: dict[str, int] = {}
    for t in spec.tasks:
        for e in table.column(f"{t.task}.error").to_pylist():
            if e is not None:
                kind = e.split(":", 1)[0]
                kinds[kind] = kinds.get(kind, 0) + 1
    assert manifest["errors_by_kind"] == kinds
    assert set(manifest["tasks"]) == {t.task for t in spec.tasks}
    assert manifest["versions"]["ray"] == "2.60.0"


INLINE_TASKS = ("text-classification", "image-classification", "automatic-speech-recognition")


@pytest.mark.ray
def test_inline_preprocess_job_equals_operator_call(ray_session, dataset_dir, built_models, tmp_path_factory):
    """The CPU-only layout that users get: no Preprocess pool, each forward actor decodes its
    own inputs (images and audio in concurrent calls). Same rows, same results, same per-row
    errors as the operator's own call; only the kept columns and the results reach the output."""
    from pipelines.offline.job import run_job
    from pipelines.offline.plan import plan_job
    from pipelines.sources import plan_source
    from pipelines.spec import build_job_spec

    tasks = [{"task": t, "model": built_models[t], "batch_size": 4, "options": SAME_BATCHING} for t in INLINE_TASKS]
    output = str(tmp_path_factory.mktemp("e2e-inline") / "out")
    spec = build_job_spec(
        {"input": dataset_dir, "output": output, "id_column": "uid", "keep_columns": ["n"], "block_rows": BLOCK_ROWS, "tasks": tasks},
        {},
    )
    plan = plan_job(spec, plan_source(spec))  # sized for the session's 2-CPU Ray
    stages = plan.stages
    assert [s.name for s in stages] == [f"Forward[{t}]" for t in INLINE_TASKS]
    # three tasks share 2 cores, one each: media decode in one more call than forward
    assert [s.map_batches_kwargs["compute"].max_concurrent_calls_per_actor or 1 for s in stages] == [1, 2, 2]
    summary = run_job(spec)
    # every file has the planned schema: id, kept columns, each task's declared result types
    files = sorted(os.path.join(output, f) for f in os.listdir(output) if f.endswith(".parquet"))
    assert files and all(pq.read_schema(f).remove_metadata() == plan.output_schema for f in files)
    table = pq.read_table(output).sort_by("uid")
    columns = input_columns()
    assert table.column("uid").to_pylist() == columns["uid"]
    assert table.column("n").to_pylist() == columns["n"]
    assert not {"text", "image", "audio", "context", "question"} & set(table.column_names), "inputs are not kept"
    for task in INLINE_TASKS:
        op_cls = get_operator(task)
        want = op_cls(built_models[task], **SAME_BATCHING)({role: columns[role] for role in op_cls.input_roles})
        for column in (*op_cls.output_columns, "error"):
            assert_close(table.column(f"{task}.{column}").to_pylist(), after_arrow(want[column]), f"inline {task}.{column}")
        assert any(e is not None for e in want["error"]) and any(e is None for e in want["error"])
        assert summary.tasks[task].failed == sum(e is not None for e in want["error"])
