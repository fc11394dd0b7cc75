"""WebDataset tar shards as input (`--input-format webdataset`): members grouped into samples
by key, ids `<shard>#<key>`, roles and kept columns from member extensions and json fields,
--limit inside a shard, column errors before any work, and `taskray run` end to end where a
corrupt image member and a sample without an image come back as row errors, nothing dropped."""

from __future__ import annotations

import io
import json
import math
import os
import tarfile

import pyarrow.parquet as pq
import pytest

from pipelines.sources import plan_source, read_dataset
from pipelines.spec import SpecError, build_job_spec
from tests.operators import images

# Parity with the operator's own call: one row per micro-batch on both sides, as in
# test_tasks_end_to_end.py (Ray cuts other batches than one __call__ does).
SAME_BATCHING = {"max_batch_rows": 1}
FLOAT_TOL = 1e-4


def samples() -> dict[str, list[tuple[str, dict[str, bytes]]]]:
    """Two shards. s002's jpg is truncated; s004 has no image member; members of a sample are
    contiguous, in the order tar writers use."""
    pics = images.varied_images()
    meta = lambda caption: json.dumps({"caption": caption, "question": "what?"}).encode()  # noqa: E731
    return {
        "shard-000.tar": [
            ("s000", {"jpg": pics[0], "json": meta("first")}),
            ("s001", {"png": pics[1], "json": meta("second"), "txt": "café".encode()}),
            ("s002", {"jpg": images.truncated_jpeg(), "json": meta("corrupt")}),
        ],
        "sub/shard-001.tar": [
            ("s003", {"jpg": pics[3], "json": meta("fourth")}),
            ("s004", {"json": meta("no image")}),
            ("s005", {"seg.png": pics[2], "jpg": pics[5], "json": meta("sixth")}),
        ],
    }


def write_shards(root: str) -> None:
    for name, shard in samples().items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tarfile.open(path, "w") as tar:
            for key, members in shard:
                for ext, data in members.items():
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("wds"))
    write_shards(root)
    return root


def spec_for(root, task="image-classification", columns=None, **job):
    task_spec = {"task": task, "model": "m", **({"columns": columns} if columns else {})}
    return build_job_spec({"input": root, "output": "/unused", "tasks": [task_spec], **job}, {})


@pytest.mark.ray
def test_read_groups_members_into_rows_with_shard_key_ids(ray_session, shards):
    spec = spec_for(shards, keep_columns=["caption", "txt"])  # input_format auto: .tar is WebDataset
    plan = plan_source(spec)
    assert plan.format == "webdataset"
    rows = sorted(read_dataset(plan, block_rows=2, num_cpus=0.1).take_all(), key=lambda r: r["id"])
    want = [(f"{name}#{key}", members) for name, shard in samples().items() for key, members in shard]
    assert [r["id"] for r in rows] == [i for i, _ in want]  # every sample, the one without an image too
    for row, (_, members) in zip(rows, want):
        # `image`: the sample's first image member, as encoded bytes (s005: seg.png comes first)
        first_image = next((v for k, v in members.items() if k.endswith(("jpg", "png"))), None)
        assert row["image"] == first_image
        assert row["caption"] == json.loads(members["json"])["caption"]
        assert row["txt"] == (members["txt"].decode() if "txt" in members else None)
    # an explicit member and a limit that ends inside the second shard (file order)
    plan = plan_source(spec_for(shards, columns={"image": "jpg"}, limit=5))
    rows = sorted(read_dataset(plan, block_rows=2, num_cpus=0.1).take_all(), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == [f"shard-000.tar#s00{i}" for i in range(3)] + ["sub/shard-001.tar#s003", "sub/shard-001.tar#s004"]
    assert [r["jpg"] is None for r in rows] == [False, True, False, False, True]
    assert set(rows[0]) == {"id", "jpg"}, "only the columns the job needs are read"


def test_webdataset_spec_errors_name_the_field(shards, tmp_path):
    with pytest.raises(SpecError, match=r"tasks\[image-classification\]\.columns\.image: no member or json field 'mask.png' .*members are \['jpg', 'json', 'png', 'txt'\], json fields \['caption', 'question'\]"):
        plan_source(spec_for(shards, columns={"image": "mask.png"}, input_format="webdataset"))
    with pytest.raises(SpecError, match=r"keep_columns: no member or json field 'nope'"):
        plan_source(spec_for(shards, keep_columns=["nope"]))
    with pytest.raises(SpecError, match=r"id_column: WebDataset ids are"):
        plan_source(spec_for(shards, id_column="caption"))
    (tmp_path / "bad.tar").write_bytes(b"not a tar archive at all" * 40)
    with pytest.raises(SpecError, match=r"input: .*bad.tar is not a readable tar archive"):
        plan_source(spec_for(str(tmp_path), input_format="webdataset"))


@pytest.mark.ray
def test_run_webdataset_labels_every_sample_and_fails_bad_members_per_row(ray_session, shards, tiny_model, tmp_path, capsys):
    from operators import get_operator
    from pipelines.cli import main as taskray

    model = tiny_model("image-classification")
    out = str(tmp_path / "out")
    args = [
        "run", "--task", "image-classification", "--model", model, "--input", shards, "--output", out,
        "--input-format", "webdataset", "--keep-columns", "caption", "--option", "max_batch_rows=1",
        "--batch-size", "4", "--actors", "1:1",
    ]
    assert taskray(args) == 0, capsys.readouterr().err
    table = pq.read_table(out).sort_by("id")
    want_ids = [f"{name}#{key}" for name, shard in samples().items() for key, _ in shard]
    assert table.column("id").to_pylist() == want_ids
    assert table.column("caption").to_pylist() == ["first", "second", "corrupt", "fourth", "no image", "sixth"]
    # the operator's own call on the same member bytes is the reference, errors included
    firsts = [next((v for k, v in m.items() if k.endswith(("jpg", "png"))), None) for _, s in samples().items() for _, m in s]
    want = get_operator("image-classification")(model, **SAME_BATCHING)({"image": firsts})
    got = table.to_pylist()
    assert [r["error"] for r in got] == want["error"]
    assert got[2]["error"].startswith("decode: ") and got[4]["error"].startswith("input: ")
    assert sum(e is None for e in want["error"]) == 4
    for row, label, score in zip(got, want["label"], want["score"]):
        assert row["label"] == label
        assert (row["score"] is None and score is None) or math.isclose(row["score"], score, abs_tol=FLOAT_TOL)
    manifest = json.loads(open(os.path.join(out, "_SUCCESS")).read())
    assert manifest["rows"] == {"total": 6, "ok": 4, "failed": 2}
