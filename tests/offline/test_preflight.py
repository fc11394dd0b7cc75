"""Preflight: `taskray run` exits 2 with one line naming the field before the Ray Data graph
starts, for a missing or mistyped column, an unreadable input, an unwritable output, an option
the model cannot honour (the operator's own check_config(), no weights) and a GPU request no
node can meet, or one torch cannot use CUDA for. The operator-side checks are also exercised directly (load, first call)."""

from __future__ import annotations

import os
import re

import pytest

from pipelines.cli import main as taskray
from tests.offline.conftest import write_parquet


@pytest.fixture(scope="module")
def text_input(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("preflight") / "in")
    write_parquet(path, {"body": ["a first text", "a second one"], "n": [1, 2]})
    return path


def run_args(model: str, src: str, out: str, *extra: str, task: str = "text-classification") -> list[str]:
    return ["run", "--task", task, "--model", model, "--input", src, "--output", out, "--column", "text=body", *extra]


# Ray's log format: "2026-12-07 13:19:53,978\tINFO worker.py:2038 -- Started a local Ray instance."
RAY_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(DEBUG|INFO|WARNING) \S+\.py:\d+ -- ")


def error_line(capsys) -> str:
    # A tiny model built on first use in this session writes transformers' progress bar
    # ("Writing model shards") to stderr before taskray runs; that is not taskray's output.
    # Nor are Ray's own start-up lines ("Started a local Ray instance."): the operators' check
    # runs beside Ray's start-up (pipelines/offline/job.py), so a job run first in a session starts Ray
    # before the check refuses it.
    err = "\n".join(
        line for line in capsys.readouterr().err.strip().splitlines()
        if not line.startswith("Writing model shards") and not RAY_LOG_LINE.match(line)
    )
    assert len(err.splitlines()) == 1, err
    return err


def test_unknown_translation_language_exits_2_before_any_data_is_read(tiny_model, text_input, tmp_path, capsys):
    model = tiny_model("translation", "mbart")
    out = str(tmp_path / "out")
    args = run_args(model, text_input, out, "--option", "src_lang=en_XX", "--option", "tgt_lang=xx_YY", task="translation")
    assert taskray(args) == 2
    err = error_line(capsys)
    assert "tasks[translation].options.tgt_lang" in err and "'xx_YY' is not a language code" in err and model in err
    assert not os.path.exists(out)  # the check ran before the output was touched


def test_t5_translation_pair_the_model_lacks_exits_2(tiny_model, text_input, tmp_path, capsys):
    model = tiny_model("translation")
    args = run_args(model, text_input, str(tmp_path / "out"), "--option", "src_lang=en", "--option", "tgt_lang=ja", task="translation")
    assert taskray(args) == 2
    err = error_line(capsys)
    assert "options.tgt_lang" in err and "translation_en_to_ja" in err and model in err


def test_checkpoint_of_another_task_exits_2(tiny_model, text_input, tmp_path, capsys):
    model = tiny_model("text-classification")
    assert taskray(run_args(model, text_input, str(tmp_path / "out"), task="summarization")) == 2
    err = error_line(capsys)
    assert "tasks[summarization]" in err and "'bert' checkpoint" in err and "AutoModelForSeq2SeqLM" in err


def test_missing_column_exits_2(tiny_model, text_input, tmp_path, capsys):
    args = run_args(tiny_model("text-classification"), text_input, str(tmp_path / "out"))
    args[args.index("text=body")] = "text=nope"
    assert taskray(args) == 2
    err = error_line(capsys)
    assert "columns.text: column 'nope' not found" in err and "['body', 'n']" in err


def test_column_of_the_wrong_type_exits_2(tiny_model, text_input, tmp_path, capsys):
    args = run_args(tiny_model("text-classification"), text_input, str(tmp_path / "out"))
    args[args.index("text=body")] = "text=n"
    assert taskray(args) == 2
    err = error_line(capsys)
    assert "tasks[text-classification].columns.text: column 'n'" in err and "is int64; the 'text' role takes strings" in err


def test_unreadable_input_exits_2(tiny_model, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "part-0.parquet").write_bytes(b"this is not parquet at all")
    assert taskray(run_args(tiny_model("text-classification"), str(src), str(tmp_path / "out"))) == 2
    err = error_line(capsys)
    assert err.startswith("taskray run: bad job spec: input: cannot read") and "parquet" in err.lower()


def test_unwritable_output_exits_2(tiny_model, text_input, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = str(blocker / "out")  # a directory can never be made under a file, whoever runs the test
    assert taskray(run_args(tiny_model("text-classification"), text_input, out)) == 2
    err = error_line(capsys)
    assert f"output: cannot write to {out}" in err


@pytest.mark.ray
def test_gpu_request_no_node_has_exits_2(ray_session, tiny_model, text_input, tmp_path, capsys):
    assert "GPU" not in ray_session.cluster_resources()  # the session's Ray is CPU-only
    out = tmp_path / "out"
    args = run_args(tiny_model("text-classification"), text_input, str(out), "--num-gpus", "1")
    assert taskray(args) == 2
    err = error_line(capsys)
    assert "tasks[text-classification].num_gpus: each Forward[text-classification] actor asks for" in err
    assert "1 GPU" in err and "no node has more than 0 GPU" in err
    assert not any(n for n in os.listdir(out) if not n.startswith("_taskray_probe")), "nothing may be written"


@pytest.mark.ray
def test_device_cuda_where_torch_cannot_use_it_exits_2_before_any_data_is_read(ray_session, tiny_model, text_input, tmp_path, capsys):
    """device: cuda on this CUDA-less machine: a probe task where the forward actors would run
    finds torch unable to use CUDA, and the job stops before its graph starts. (A job asking
    for num_gpus on a node with a logical GPU: tests/offline_reliability/test_cluster_nodes.py.)"""
    import torch
    import yaml

    out = tmp_path / "out"
    job = tmp_path / "job.yaml"
    task = {"task": "text-classification", "model": tiny_model("text-classification"), "device": "cuda", "columns": {"text": "body"}}
    job.write_text(yaml.safe_dump({"input": [text_input], "output": str(out), "tasks": [task]}))
    assert taskray(["run", str(job)]) == 2
    err = error_line(capsys)
    assert "tasks[text-classification].device: device cuda, but where its forward actors run (node " in err
    assert f"torch {torch.__version__} (built for CUDA {torch.version.cuda}) finds no usable GPU" in err
    assert "CUDA_VISIBLE_DEVICES=" in err and "fix: " in err
    assert not any(n for n in os.listdir(out) if not n.startswith("_taskray_probe")), "nothing may be written"


@pytest.mark.ray
def test_actor_pools_larger_than_the_cluster_exit_2(ray_session, tiny_model, text_input, tmp_path, capsys):
    from pipelines.hardware import MIN_ACTOR_CPUS

    # the picks shrink each actor's CPUs to fit, down to a floor: this many never fit
    too_many = int(ray_session.cluster_resources()["CPU"] / MIN_ACTOR_CPUS) + 1
    args = run_args(tiny_model("text-classification"), text_input, str(tmp_path / "out"), "--actors", f"{too_many}:{too_many}")
    assert taskray(args) == 2
    assert "minimum sizes need" in error_line(capsys)


def test_operator_checks_on_load_and_first_call(tiny_model):
    from pydantic import ValidationError

    from operators import get_operator

    model = tiny_model("translation", "mbart")
    op = get_operator("translation")(model, src_lang="en_XX", tgt_lang="xx_YY")  # constructing loads nothing
    with pytest.raises(ValidationError, match="not a language code"):
        op({"text": ["hello"]})  # the call fails, not each row
    with pytest.raises(ValidationError, match="not a language code"):
        op.load()
    assert op._model is None  # refused before any weights were read
    good = get_operator("translation")(model, src_lang="en_XX", tgt_lang="de_DE").load()
    with pytest.raises(ValidationError, match="tgt_lang"):
        good.with_options(tgt_lang="xx_YY")  # a request's bad option (Serve answers 422)
    with pytest.raises(ValueError, match="AutoModelForObjectDetection cannot load"):
        get_operator("object-detection")(tiny_model("text-classification")).load()
