"""Job outputs for the export tests, written as `taskray run` writes them without starting Ray:
tests/report/conftest.py's write_job_output runs the job's own stages (Preprocess, then Forward
per task, the operators' real preprocess/forward/postprocess) over tiny models, splits the
table into Parquet files and writes `_SUCCESS` with the job's own finalize step (which records
each model's id2label). What an export reads (the Parquet columns, their types, `_SUCCESS`) is
what a Ray job writes; the Ray Data plumbing around the stages is not what is under test."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tests.report.conftest import write_job_output

# Tiny random heads: detection at threshold 0.1 and segmentation at 0.3 so that every image
# has several boxes and masks to compare.
TASKS = [
    {"task": "object-detection", "options": {"threshold": 0.1}},
    {"task": "image-segmentation", "options": {"threshold": 0.3}},
    {"task": "image-classification"},
    {"task": "text-classification"},
    {"task": "token-classification", "options": {"aggregation_strategy": "simple"}},
    {"task": "automatic-speech-recognition"},
    {"task": "summarization"},
    {"task": "translation"},
    {"task": "audio-classification"},
]
KEEP = ["text", "image", "audio"]


@pytest.fixture(scope="package")
def labels_output(tiny_model, tmp_path_factory) -> str:
    """A finished multi-task output (prefixed columns) that kept its inputs."""
    return write_job_output(str(tmp_path_factory.mktemp("export-job")), tiny_model, TASKS, KEEP)


@pytest.fixture(scope="package")
def detection_output(tiny_model, tmp_path_factory) -> str:
    """A finished single-task detection output (plain columns) that kept no input."""
    return write_job_output(str(tmp_path_factory.mktemp("export-bare")), tiny_model, TASKS[:1], [], files=1)


def rows_by_id(output: str) -> dict:
    table = pq.read_table(output)
    return {row["id"]: row for row in table.to_pylist()}
