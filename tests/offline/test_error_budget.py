"""The error budget: a setting that fails every row stops a many-block job after its first
blocks (exit 1, error kinds printed, no _SUCCESS), and a small job whose every row failed is
caught by the final check over the output."""

from __future__ import annotations

import os
import re

import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.cli import main as taskray
from tests.offline.conftest import write_parquet

pytestmark = pytest.mark.ray

ROWS, ROWS_PER_FILE, BLOCK_ROWS, MIN_ROWS = 3000, 300, 20, 60  # 150 blocks; judged from the 3rd


def written_rows(out: str) -> int:
    files = [os.path.join(out, f) for f in os.listdir(out) if f.endswith(".parquet")]
    return sum(pq.read_metadata(f).num_rows for f in files)


def test_a_broken_setting_stops_the_job_after_its_first_blocks(ray_session, tiny_model, tmp_path, capsys, monkeypatch):
    from pipelines.offline import error_budget

    monkeypatch.setattr(error_budget, "MIN_ROWS", MIN_ROWS)  # a constant; this job is smaller than its default
    src, out = str(tmp_path / "in"), str(tmp_path / "out")
    write_parquet(src, {"text": [f"row number {i} of the job" for i in range(ROWS)]}, rows_per_file=ROWS_PER_FILE)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "input": [src],
        "output": out,
        "block_rows": BLOCK_ROWS,
        # A limit no text meets: every row fails in preprocess, which no preflight can know.
        "tasks": [{"task": "text-classification", "model": tiny_model("text-classification"),
                   "options": {"max_text_chars": 3}, "batch_size": BLOCK_ROWS}],
    }))
    assert taskray(["run", str(job)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # Ray Data logs its execution above
    assert err.startswith("taskray run: job stopped: text-classification: ")
    assert "more than max_failed_fraction=0.5 allows; error kinds: input=" in err
    assert "e.g. 'input: text too long" in err and "no _SUCCESS written" in err
    seen = int(re.search(r"failed after (\d+) rows", err).group(1))
    assert MIN_ROWS <= seen < ROWS // 2, f"judged after {seen} rows"
    assert "_SUCCESS" not in os.listdir(out)
    assert written_rows(out) < ROWS // 2  # most blocks were never run


def test_every_row_failed_is_caught_at_the_end(ray_session, tiny_model, tmp_path, capsys):
    src, out = str(tmp_path / "in"), str(tmp_path / "out")
    write_parquet(src, {"text": ["", " ", "", "\n", ""]})  # fewer rows than the running check waits for
    args = ["run", "--task", "text-classification", "--model", tiny_model("text-classification"), "--input", src,
            "--output", out]
    assert taskray(args) == 1
    err = capsys.readouterr().err
    assert "job failed: text-classification: 5 of 5 rows failed in the output (100%)" in err
    assert "error kinds: input=5" in err and "e.g. 'input: empty text'" in err
    assert "_SUCCESS" not in os.listdir(out) and written_rows(out) == 5
