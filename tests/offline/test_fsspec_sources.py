"""Any fsspec URL through the storage layer (pipelines/storage.py): `taskray run` reads Parquet
from and writes its output to `sandbox://`, a protocol other than `file` that fsspec serves
as it serves gs:// or az:// (tests/offline/sandbox_filesystem.py). Its options, a stand-in
credential among them, reach the Ray workers inside the pickled filesystem and appear in no
output file and no printed line. An unknown protocol, or one whose package is missing, is a
bad spec (exit 2) naming it."""

from __future__ import annotations

import importlib.util
import math
import os

import fsspec
from fsspec.registry import known_implementations
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main as taskray
from pipelines.storage import list_files, read_text, resolve, uri_of, write_text
from tests.offline import sandbox_filesystem
from tests.offline.conftest import write_parquet
from tests.operators.texts import VARIED_TEXTS

SECRET = "sandbox-secret-0f9c2e7d1b"
TEXTS = [*VARIED_TEXTS[:5], None]  # the last row is bad
FLOAT_TOL = 1e-4  # as in test_tasks_end_to_end.py: same model, one row per micro-batch on both sides


@pytest.fixture
def sandbox(tmp_path, monkeypatch) -> str:
    """The local directory behind sandbox://, configured the way users configure fsspec."""
    root = tmp_path / "sandbox"
    root.mkdir()
    monkeypatch.setitem(fsspec.config.conf, sandbox_filesystem.PROTOCOL, {"root": str(root), "secret": SECRET})
    return str(root)


def test_resolve_lists_and_writes_through_fsspec(sandbox):
    loc = resolve("sandbox://bucket/in/")
    assert (loc.uri, loc.path) == ("sandbox://bucket/in", "bucket/in")
    write_text(loc, f"{loc.path}/a/x.parquet", "x")
    assert os.path.exists(os.path.join(sandbox, "bucket", "in", "a", "x.parquet"))
    again, files, root = list_files("sandbox://bucket/in")
    assert (files, root) == (["bucket/in/a/x.parquet"], "bucket/in")
    assert uri_of(again, files[0]) == "sandbox://bucket/in/a/x.parquet"
    assert read_text(resolve(uri_of(again, files[0])), files[0]) == "x"
    with pytest.raises(ValueError, match=r"unsupported URI scheme 'nosuchfs' .*Protocol not known"):
        resolve("nosuchfs://bucket/x")
    missing = next(
        p for p, impl in known_implementations.items()
        if importlib.util.find_spec(impl["class"].split(".")[0]) is None
    )
    with pytest.raises(ValueError, match=rf"cannot open {missing}:// URIs"):
        resolve(f"{missing}://bucket/x")


def test_unknown_protocol_is_a_bad_spec(tmp_path, capsys):
    args = ["run", "--task", "text-classification", "--model", "m", "--input", "nosuchfs://bucket/in", "--output", str(tmp_path)]
    assert taskray(args) == 2
    assert "input: " in capsys.readouterr().err


@pytest.mark.ray
def test_run_reads_and_writes_an_fsspec_url(ray_session, sandbox, tiny_model, capsys):
    from operators import get_operator

    model = tiny_model("text-classification")
    write_parquet(os.path.join(sandbox, "bucket", "in"), {"uid": [f"r{i}" for i in range(len(TEXTS))], "text": TEXTS})
    args = [
        "run", "--task", "text-classification", "--model", model, "--input", "sandbox://bucket/in",
        "--output", "sandbox://bucket/out", "--id-column", "uid", "--option", "max_batch_rows=1",
        "--batch-size", "4", "--actors", "1:1",
    ]
    assert taskray(args) == 0
    printed = capsys.readouterr()
    out_dir = os.path.join(sandbox, "bucket", "out")
    assert "_SUCCESS" in os.listdir(out_dir) and "_checkpoint" not in os.listdir(out_dir)
    table = pq.read_table(out_dir).sort_by("uid")
    want = get_operator("text-classification")(model, max_batch_rows=1)({"text": TEXTS})
    assert table.column("uid").to_pylist() == [f"r{i}" for i in range(len(TEXTS))]
    assert table.column("label").to_pylist() == want["label"]
    assert table.column("error").to_pylist() == want["error"] and want["error"][-1] is not None
    for got, ref in zip(table.column("score").to_pylist()[:-1], want["score"][:-1]):
        assert math.isclose(got, ref, abs_tol=FLOAT_TOL)
    assert "sandbox://bucket/out" in printed.out
    # the credential stand-in travelled inside the filesystem only
    assert SECRET not in printed.out + printed.err
    for dirpath, _, names in os.walk(out_dir):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                assert SECRET.encode() not in f.read(), name
