"""The job fingerprint: `--resume` over an output written with another model or option exits 2
listing the fields that differ, both over an unfinished output (_taskray_job.json) and a
finished one (_SUCCESS); a changed batch size, actor count or error budget is accepted."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from pipelines.cli import main as taskray
from tests.offline.conftest import write_parquet
from tests.operators.texts import VARIED_TEXTS


@pytest.fixture(scope="module")
def model_copy(tmp_path_factory, tiny_model) -> str:
    """A private copy of the tiny model, so a test may change its files."""
    path = str(tmp_path_factory.mktemp("fp-model") / "model")
    shutil.copytree(tiny_model("text-classification"), path)
    return path


@pytest.fixture(scope="module")
def text_input(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("fp-in") / "in")
    write_parquet(path, {"body": [*VARIED_TEXTS[:7], ""]}, rows_per_file=4)  # the last row fails
    return path


def args_for(model: str, src: str, out: str, *extra: str) -> list[str]:
    return [
        "run", "--task", "text-classification", "--model", model, "--input", src, "--output", out,
        "--column", "text=body", "--option", "top_k=2", *extra,
    ]


@pytest.mark.ray
def test_resume_checks_the_fingerprint(ray_session, model_copy, text_input, tmp_path, capsys):
    out = str(tmp_path / "out")
    args = args_for(model_copy, text_input, out)
    # An error budget of 0 fails the job at the end on its one bad row: the data and the
    # checkpoint stay, with the job file, and no _SUCCESS.
    assert taskray([*args, "--max-failed-fraction", "0"]) == 1
    assert "1 of 8 rows failed in the output" in capsys.readouterr().err
    names = os.listdir(out)
    assert "_SUCCESS" not in names and "_taskray_job.json" in names and "_checkpoint" in names

    # Unfinished output, another model and option: refused, naming each field.
    other = str(tmp_path / "other-model")
    shutil.copytree(model_copy, other)
    assert taskray([*args_for(other, text_input, out), "--resume", "--option", "function_to_apply=sigmoid"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "was written by a different job (_taskray_job.json)" in err
    assert f"tasks.text-classification.model: {model_copy!r} -> {other!r}" in err
    assert "tasks.text-classification.options.function_to_apply: 'default' -> 'sigmoid'" in err
    assert "model_digest" not in err  # the same files in another place

    # Sizing and the error budget may change: the answers do not.
    assert taskray([*args, "--resume", "--batch-size", "2", "--max-failed-fraction", "0.5"]) == 0
    manifest = json.loads(open(os.path.join(out, "_SUCCESS")).read())
    assert manifest["rows"] == {"total": 8, "ok": 7, "failed": 1}
    fp = manifest["fingerprint"]
    assert fp["tasks"]["text-classification"]["options"]["top_k"] == 2
    assert fp["tasks"]["text-classification"]["model_digest"].startswith("files:")
    assert "_taskray_job.json" not in os.listdir(out)  # _SUCCESS holds the fingerprint now
    capsys.readouterr()
    assert taskray([*args, "--resume", "--actors", "1:2", "--max-failed-fraction", "0.9"]) == 0
    assert "already complete" in capsys.readouterr().out

    # Finished output, another option: refused the same way.
    assert taskray([*args, "--resume", "--option", "top_k=3"]) == 2
    err = capsys.readouterr().err
    assert "was written by a different job (_SUCCESS)" in err and "tasks.text-classification.options.top_k: 2 -> 3" in err

    # The same directory with other contents is another model.
    with open(os.path.join(model_copy, "config.json")) as f:
        config = json.load(f)
    config["taskray_test_marker"] = 1
    with open(os.path.join(model_copy, "config.json"), "w") as f:
        json.dump(config, f)
    assert taskray([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "tasks.text-classification.model_digest: 'files:" in err and "options" not in err


def test_directory_digest_reads_samples_of_large_files(tmp_path, monkeypatch):
    from pipelines.offline import fingerprint

    monkeypatch.setattr(fingerprint, "WHOLE_FILE_BYTES", 1024)
    monkeypatch.setattr(fingerprint, "SAMPLE_BYTES", 4096)
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"a": 1}')
    data = bytearray(os.urandom(64 * 1024))
    (model / "model.safetensors").write_bytes(len(b'{"w": 1}').to_bytes(8, "little") + b'{"w": 1}' + bytes(data))
    (model / ".cache").mkdir()
    (model / ".cache" / "lock").write_text("ignored")
    first = fingerprint.directory_digest(str(model))

    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    os.utime(copy / "model.safetensors", (1, 1))  # times are not part of a model
    (copy / ".cache" / "lock").write_text("other")
    assert fingerprint.directory_digest(str(copy)) == first

    data[-10] ^= 0xFF  # in the last sample: the values of a retrained checkpoint differ
    (copy / "model.safetensors").write_bytes(len(b'{"w": 1}').to_bytes(8, "little") + b'{"w": 1}' + bytes(data))
    assert fingerprint.directory_digest(str(copy)) != first


def test_differences_skip_an_unknown_hub_digest():
    from pipelines.offline.fingerprint import differences

    old = {"tasks": {"t": {"model": "org/m", "model_digest": "commit:" + "a" * 40, "options": {"top_k": 1}}}}
    same = {"tasks": {"t": {"model": "org/m", "model_digest": None, "options": {"top_k": 1}}}}
    assert differences(old, same) == []
    moved = {"tasks": {"t": {"model": "org/m", "model_digest": "commit:" + "b" * 40, "options": {"top_k": 1}}}}
    assert differences(old, moved) == [f"tasks.t.model_digest: 'commit:{'a' * 40}' -> 'commit:{'b' * 40}'"]


def test_the_output_format_is_part_of_the_fingerprint_only_when_not_parquet(model_copy, text_input):
    """A Lance output lays its rows out differently (pipelines/offline/job.py), so resuming it as
    Parquet (or the reverse) is refused; Parquet fingerprints stay as earlier versions wrote
    them, and target_file_size (file layout only) is not in it."""
    from pipelines.offline.fingerprint import differences, job_fingerprint
    from pipelines.offline.preflight import check_input
    from pipelines.spec import load_job_spec

    def fingerprint(**flags):
        spec = load_job_spec(None, {"task": "text-classification", "model": model_copy, "input": [text_input],
                                    "output": "/tmp/unused", "columns": {"text": "body"}, **flags})
        return job_fingerprint(spec, check_input(spec))

    parquet = fingerprint()
    assert "output_format" not in parquet
    assert differences(parquet, fingerprint(target_file_size="1MiB")) == []
    assert differences(parquet, fingerprint(output_format="lance")) == ["output_format: '<absent>' -> 'lance'"]
