"""`taskray run` end to end on the session's Ray: a single-task job from flags, its output,
summary table and _SUCCESS manifest; a rerun is refused, and --resume of a finished job is a
no-op; bad rows become per-row errors counted by kind."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from pipelines.cli import main as taskray
from tests.offline.conftest import write_parquet
from tests.operators.texts import VARIED_TEXTS

TEXTS = [*VARIED_TEXTS, None, ""]  # the last two are bad rows


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("run")
    src = str(root / "in")
    write_parquet(src, {"body": TEXTS[:6], "n": list(range(6))})
    write_parquet(str(root / "in" / "more"), {"body": TEXTS[6:], "n": list(range(6, len(TEXTS)))})
    args = [
        "run", "--task", "text-classification", "--model", tiny_model("text-classification"),
        "--input", src, "--output", str(root / "out"), "--column", "text=body", "--keep-columns", "n",
        "--option", "top_k=2", "--batch-size", "4", "--actors", "1:1",
    ]
    return args, str(root / "out")


@pytest.mark.ray
def test_run_from_flags(ray_session, job, capsys):
    args, out = job
    assert taskray(args) == 0
    printed = capsys.readouterr().out
    assert "rows total" in printed and "rows failed" in printed and out in printed
    table = pq.read_table(out).sort_by("n")
    assert table.column_names[:2] == ["id", "n"] and {"label", "score", "scores", "error"} <= set(table.column_names)
    assert table.num_rows == len(TEXTS)
    rows = table.to_pylist()
    assert rows[0]["id"] == "part-000.parquet#0" and rows[-1]["id"] == f"more/part-000.parquet#{len(TEXTS) - 7}"
    errors = [r["error"] for r in rows]
    assert errors[: len(VARIED_TEXTS)] == [None] * len(VARIED_TEXTS)
    assert errors[len(VARIED_TEXTS):] == ["input: expected text as str, got None", "input: empty text"]
    assert all(len(r["scores"]) == 2 for r in rows[: len(VARIED_TEXTS)])
    manifest = json.loads(open(os.path.join(out, "_SUCCESS")).read())
    assert manifest["rows"] == {"total": len(TEXTS), "ok": len(VARIED_TEXTS), "failed": 2}
    assert manifest["errors_by_kind"] == {"input": 2}
    nodes = manifest["tasks"]["text-classification"]["nodes"]
    assert nodes == {ray_session.get_runtime_context().get_node_id(): len(TEXTS)}
    assert manifest["tasks"]["text-classification"]["dtype"] == "float32"  # auto on the CPU, as the actor resolved it
    assert manifest["rows_processed"] == len(TEXTS) and manifest["spec"]["tasks"][0]["options"] == {"top_k": 2}
    assert not os.path.exists(os.path.join(out, "_checkpoint"))


@pytest.mark.ray
def test_rerun_is_refused_and_resume_of_finished_job_is_a_no_op(ray_session, job, capsys):
    args, out = job
    before = sorted(os.listdir(out))
    assert taskray(args) == 2
    assert "is not empty" in capsys.readouterr().err
    assert taskray([*args, "--resume"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == before
