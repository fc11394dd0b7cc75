"""`output_format: lance`: an embedding job writes a Lance dataset through Ray Data's Lance
writer, resumes after a SIGKILL with every id once, and lance's own vector search finds each
stored vector's row without any conversion."""

from __future__ import annotations

import collections
import json
import os

import pytest

from tests.offline_reliability.harness import (
    SCORE_TOL,
    checkpoint_state,
    committed_ids,
    driver_job,
    text_shards,
    wait_until,
    write_shards,
)

TASK = "feature-extraction"


@pytest.mark.timeout(1200)
def test_lance_embedding_job_resumes_after_sigkill_and_answers_nearest_neighbour(tmp_path, tiny_model, spawn_driver, job_ray):
    import lance
    import numpy as np
    import pyarrow as pa

    from operators import get_operator
    from pipelines.offline.job import run_job
    from pipelines.spec import load_job_spec

    n_files, rows_per_file, block_rows = 5, 200, 50  # 1,000 rows, 20 blocks
    model_dir = tiny_model(TASK)
    shards = text_shards(n_files, rows_per_file)
    write_shards(shards, str(tmp_path / "in"))
    out = str(tmp_path / "out")
    argv = driver_job(tmp_path, model_dir, block_rows, out, task=TASK, output_format="lance")

    # Killed mid-job (on its own Ray, as test_retry_failed.py's first run), resumed here.
    first = spawn_driver(argv, env={"RAY_ADDRESS": "local"})
    staged = os.path.join(out, "_parquet")
    wait_until(
        lambda: not first.alive() or len(checkpoint_state(out)["committed"]) >= 2,
        480,
        "two committed blocks from the first run",
    )
    assert first.alive(), f"first run ended before the kill (rc={first.proc.returncode}):\n{first.output()[-3000:]}"
    first.kill()
    done_before = committed_ids(out)
    assert 0 < len(done_before) < n_files * rows_per_file
    assert os.listdir(staged) and not os.path.exists(os.path.join(out, "_SUCCESS"))

    summary = run_job(load_job_spec(argv[-1], {"mode": "resume"}))
    assert summary.total == n_files * rows_per_file
    assert summary.rows_processed == summary.total - len(done_before)

    dataset = lance.dataset(out)
    table = dataset.to_table()
    ids = table.column("id").to_pylist()
    want = [i for s in shards for i in s.column("id").to_pylist()]
    assert not [i for i, n in collections.Counter(ids).items() if n > 1], "an id twice in the Lance dataset"
    assert set(ids) == set(want)
    # Vectors as lance's vector search takes them: fixed-size float32 lists (a failed row's is null).
    field = table.schema.field("embedding")
    assert pa.types.is_fixed_size_list(field.type) and field.type.value_type == pa.float32(), field.type
    # The rows equal the operator's own __call__ (the Parquet path's oracle).
    op = get_operator(TASK)(model_dir)
    texts = [t for s in shards for t in s.column("text").to_pylist()]
    oracle = dict(zip(want, zip(*(op({"text": texts})[k] for k in ("embedding", "error")))))
    for row in table.to_pylist():
        emb, err = oracle[row["id"]]
        assert row["error"] == err, row["id"]
        if err is None:
            np.testing.assert_allclose(row["embedding"], emb, atol=SCORE_TOL, err_msg=row["id"])
        else:
            assert row["embedding"] is None, row["id"]
    # Nearest neighbour of a stored vector is its own row, with no conversion step. The texts
    # of text_shards repeat every 264 rows, and equal texts have equal vectors: a tie at
    # distance 0 may name another row of the same text, so the check is the text and distance.
    text_of = dict(zip(want, texts))
    ok = [r for r in table.to_pylist() if r["error"] is None]
    for row in ok[:: len(ok) // 5][:5]:
        hit = dataset.to_table(nearest={"column": "embedding", "q": np.asarray(row["embedding"], np.float32), "k": 1})
        [hit_id], [distance] = hit.column("id").to_pylist(), hit.column("_distance").to_pylist()
        assert text_of[hit_id] == text_of[row["id"]] and distance < 1e-6, (row["id"], hit_id, distance)
    # A vector no row holds finds the row nearest to it: the closest by numpy.
    matrix = np.array([r["embedding"] for r in ok], np.float32)
    query = matrix[0] * 0.7 + matrix[1] * 0.3
    hit = dataset.to_table(nearest={"column": "embedding", "q": query, "k": 1}).column("id").to_pylist()[0]
    best = np.argmin(((matrix - query) ** 2).sum(axis=1))
    assert text_of[hit] == text_of[ok[best]["id"]]

    manifest = json.load(open(os.path.join(out, "_SUCCESS")))
    assert manifest["rows"]["total"] == len(want) and manifest["fingerprint"]["output_format"] == "lance"
    failed = sum(1 for e, err in oracle.values() if err is not None)
    assert manifest["rows"]["failed"] == failed
    # The Parquet staging and the checkpoint are gone; the dataset is Lance's alone.
    assert {"_parquet", "_checkpoint", "_taskray_job.json"}.isdisjoint(os.listdir(out))
