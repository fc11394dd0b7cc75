"""Input formats through the read stage only: Parquet dir/glob/list, JSONL, CSV, directories
of images and audio; derived ids, --limit, and input errors before any work."""

from __future__ import annotations

import json
import os

import pytest

from pipelines.sources import plan_source, read_dataset
from pipelines.spec import SpecError, build_job_spec
from tests.offline.conftest import write_parquet


def spec_for(inputs, task="text-classification", **job):
    return build_job_spec({"input": inputs, "output": "/unused", "tasks": [{"task": task, "model": "m"}], **job}, {})


def read_rows(spec) -> list[dict]:
    plan = plan_source(spec)
    rows = read_dataset(plan, block_rows=2, num_cpus=0.1).take_all()
    return sorted(rows, key=lambda r: r[plan.id_column])


@pytest.fixture
def shards(tmp_path) -> str:
    root = str(tmp_path / "shards")
    write_parquet(root, {"text": [f"t{i}" for i in range(7)], "extra": list(range(7))}, rows_per_file=3)
    return root


@pytest.mark.ray
def test_parquet_dir_derives_stable_ids_from_file_and_row(ray_session, shards):
    rows = read_rows(spec_for(shards))
    assert [r["id"] for r in rows] == [f"part-000.parquet#{i}" for i in range(3)] + [
        f"part-001.parquet#{i}" for i in range(3)
    ] + ["part-002.parquet#0"]
    assert [r["text"] for r in rows] == [f"t{i}" for i in range(7)]
    assert "extra" not in rows[0], "only the columns the job needs are read"
    # the same files through a glob and through a list give the same ids
    assert [r["id"] for r in read_rows(spec_for(os.path.join(shards, "part-00[01].parquet")))] == [r["id"] for r in rows[:6]]
    listed = [os.path.join(shards, f) for f in ("part-000.parquet", "part-002.parquet")]
    assert [r["id"] for r in read_rows(spec_for(listed))] == [rows[i]["id"] for i in (0, 1, 2, 6)]


@pytest.mark.ray
def test_limit_takes_the_first_rows_in_file_order(ray_session, shards):
    rows = read_rows(spec_for(shards, limit=4))
    assert [r["text"] for r in rows] == ["t0", "t1", "t2", "t3"]


@pytest.mark.ray
def test_existing_id_column_and_kept_columns(ray_session, shards, tmp_path):
    root = str(tmp_path / "with-ids")
    write_parquet(root, {"key": ["b", "a"], "text": ["x", "y"], "extra": [1, 2]})
    rows = read_rows(spec_for(root, id_column="key", keep_columns=["extra"]))
    assert rows == [{"text": "y", "extra": 2, "key": "a"}, {"text": "x", "extra": 1, "key": "b"}]


@pytest.mark.ray
def test_jsonl_and_csv(ray_session, tmp_path):
    jsonl = tmp_path / "j"
    jsonl.mkdir()
    (jsonl / "a.jsonl").write_text("\n".join(json.dumps({"sentence": s}) for s in ["one", "two", "three"]) + "\n")
    spec = build_job_spec(
        {"input": str(jsonl), "output": "/o", "tasks": [{"task": "text-classification", "model": "m", "columns": {"text": "sentence"}}]},
        {},
    )
    assert [(r["id"], r["sentence"]) for r in read_rows(spec)] == [("a.jsonl#0", "one"), ("a.jsonl#1", "two"), ("a.jsonl#2", "three")]
    csv = tmp_path / "c"
    csv.mkdir()
    (csv / "a.csv").write_text("text,n\nhello,1\nworld,2\n")
    assert [(r["id"], r["text"]) for r in read_rows(spec_for(str(csv)))] == [("a.csv#0", "hello"), ("a.csv#1", "world")]


@pytest.mark.ray
def test_image_and_audio_directories(ray_session, tmp_path):
    from tests.operators import images, sounds

    pics = tmp_path / "pics"
    (pics / "sub").mkdir(parents=True)
    data = images.varied_images()[:2]
    (pics / "a.png").write_bytes(data[0])
    (pics / "sub" / "b.jpg").write_bytes(data[1])
    (pics / "notes.txt").write_text("not an image")
    (pics / ".hidden.png").write_bytes(data[0])
    rows = read_rows(spec_for(str(pics), task="image-classification", keep_columns=["path"]))
    assert [r["id"] for r in rows] == ["a.png", "sub/b.jpg"]
    assert [r["image"] for r in rows] == data
    assert rows[1]["path"] == str(pics / "sub" / "b.jpg")
    clips = tmp_path / "clips"
    clips.mkdir()
    wav = sounds.encode(sounds.tone(440, 0.2, 16000), 16000)
    (clips / "x.wav").write_bytes(wav)
    rows = read_rows(spec_for(str(clips), task="audio-classification", input_format="audio"))
    assert rows == [{"id": "x.wav", "audio": wav}]


def test_input_errors_are_spec_errors(tmp_path, shards):
    with pytest.raises(SpecError, match="^input: input .* does not exist"):
        plan_source(spec_for(str(tmp_path / "nope")))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.csv").write_text("a\n1\n")
    with pytest.raises(SpecError, match="^input: no parquet files"):
        plan_source(spec_for(str(empty), input_format="parquet"))
    pics = tmp_path / "pics"
    pics.mkdir()
    (pics / "a.png").write_bytes(b"png bytes are not checked here")
    with pytest.raises(SpecError, match="^input_format: a directory of images has only the 'image' role, but tasks need \\['text'\\]"):
        plan_source(spec_for(str(pics)))
