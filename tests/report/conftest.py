"""Job outputs for the report tests, written as `taskray run` writes them without starting Ray:
the job's own stages (Preprocess, then Forward per task, outside Ray) over tiny models, the
table split into Parquet files, and `_SUCCESS` from the job's own finalize step."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.operators import images, sounds, texts

# An id with markup and quotes: ids, like every output value, reach the page escaped.
HOSTILE_ID = "row-09 <i>x</i> & \"'"
ROWS = 10
GALLERY_SAMPLE = 5  # fewer than the ok rows, so the sample is a real choice
# Tiny random heads: a low detection threshold so that boxes exist to draw; aggregated
# entities as people usually request them.
TASKS = [
    {"task": "object-detection", "options": {"threshold": 0.5}},
    {"task": "image-segmentation"},
    {"task": "depth-estimation"},
    {"task": "image-classification"},
    {"task": "automatic-speech-recognition"},
    {"task": "audio-classification"},
    {"task": "text-classification"},
    {"task": "token-classification", "options": {"aggregation_strategy": "simple"}},
    {"task": "question-answering", "columns": {"context": "text"}},
    {"task": "summarization"},
]
KEEP = ["text", "image", "audio", "question"]


def input_table() -> pa.Table:
    """ROWS rows with every input role; row 3 has a corrupt image, row 6 corrupt audio, row 5
    an empty text, and row 9 the hostile id. Row 0's image is large enough to be scaled down."""
    pics = images.varied_images()
    pics[0] = images.encode(images.pixels(900, 600, 0), "JPEG")
    clips = [sounds.encode(c[: sounds.RATE * 2]) for c in sounds.varied_clips()]
    text, image, audio = [], [], []
    for i in range(ROWS):
        text.append("" if i == 5 else texts.VARIED_TEXTS[i % len(texts.VARIED_TEXTS)])
        data = pics[i % len(pics)]
        image.append({"bytes": images.truncated_jpeg() if i == 3 else data, "path": f"img/{i}.png"})
        audio.append(sounds.corrupt_bytes() if i == 6 else clips[i % len(clips)])
    ids = [f"row-{i:02d}" for i in range(ROWS - 1)] + [HOSTILE_ID]
    return pa.table({"id": ids, "text": text, "image": image, "audio": audio, "question": ["What is it about?"] * ROWS})


def write_job_output(root: str, tiny_model, tasks: list[dict], keep: list[str], files: int = 2) -> str:
    """Run `tasks` over input_table() with the job's stages and write `<root>/labels` as a
    finished job output; returns its path."""
    from pipelines.offline import stages
    from pipelines.hardware import Hardware, Node, preprocess_pool_on_cpu
    from pipelines.offline.job import finalize
    from pipelines.offline.plan import plan_job
    from pipelines.sources import plan_source
    from pipelines.spec import build_job_spec
    from pipelines.storage import resolve

    table = input_table()
    input_dir, output_dir = os.path.join(root, "input"), os.path.join(root, "labels")
    os.makedirs(input_dir, exist_ok=True)
    os.makedirs(output_dir, exist_ok=True)
    pq.write_table(table, os.path.join(input_dir, "part-000.parquet"))
    spec = build_job_spec(
        {
            "input": input_dir,
            "output": output_dir,
            "keep_columns": keep,
            "tasks": [{**t, "model": tiny_model(t["task"])} for t in tasks],
        },
        {},
    )
    with preprocess_pool_on_cpu():  # the job's own stages, the Preprocess pool's layout
        plan = plan_job(spec, plan_source(spec), Hardware((Node(2),), "test"))
    out = table
    with pytest.MonkeyPatch.context() as patch:
        # Forward asks Ray for its node id, and outside Ray that call starts a local Ray
        # (Ray's auto-init), which costs more than this whole fixture.
        patch.setattr(stages, "_node_id", lambda: "test-node")
        dtypes = {}
        for stage in plan.stages:
            udf = stage.fn(**stage.fn_constructor_kwargs)
            out = udf(out)
            if stage.fn is stages.Forward:  # what the model computed in, as JobStats records it
                dtypes[stage.fn_constructor_kwargs["plan"].name] = [str(udf._op.dtype).removeprefix("torch.")]
    step = -(-out.num_rows // files)
    for i in range(files):
        pq.write_table(out.slice(i * step, step), os.path.join(output_dir, f"part-{i:03d}.parquet"))
    nodes = {t.column_prefix: {"test-node": out.num_rows} for t in spec.tasks}
    finalize(plan, resolve(output_dir), {"nodes": nodes, "dtypes": dtypes}, wall_s=2.0)
    return output_dir


@pytest.fixture(scope="package")
def job_output(tiny_model, tmp_path_factory) -> str:
    """A finished multi-task output that kept its inputs."""
    return write_job_output(str(tmp_path_factory.mktemp("report-job")), tiny_model, TASKS, KEEP)


@pytest.fixture(scope="package")
def bare_output(tiny_model, tmp_path_factory) -> str:
    """A finished single-task detection output that kept no inputs."""
    return write_job_output(str(tmp_path_factory.mktemp("report-bare")), tiny_model, TASKS[:1], [], files=1)
