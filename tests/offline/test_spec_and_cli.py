"""Job spec and `taskray run` without running a job: validation names the field, flags
override the file, bad specs exit 2 before any work, --dry-run prints the plan."""

from __future__ import annotations

import os
import textwrap

import pytest
import yaml

from pipelines.cli import main as taskray
from pipelines.spec import SpecError, load_job_spec
from tests.offline.conftest import write_parquet


def dry_run(capsys, input_dir: str, output: str, *flags: str, task: str = "text-classification") -> str:
    """`taskray run --dry-run` with these flags: asserts it exits 0 and returns what it printed."""
    args = ["run", "--task", task, "--model", "m", "--input", input_dir, "--output", output, "--column", "text=body"]
    code = taskray([*args, *flags, "--dry-run"])
    text = capsys.readouterr().out
    assert code == 0
    return text


@pytest.fixture
def text_input(tmp_path) -> str:
    root = str(tmp_path / "in")
    write_parquet(root, {"body": ["a b c", "d e f"], "n": [1, 2]})
    return root


def write_job(tmp_path, body: str) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_flags_override_the_file(tmp_path):
    job = write_job(
        tmp_path,
        """
        input: in/
        output: out/
        tasks:
          - task: text-classification
            model: m
            batch_size: 8
            options: {top_k: 2}
            columns: {text: body}
        """,
    )
    spec = load_job_spec(job, {"batch_size": 32, "options": {"function_to_apply": "sigmoid"}, "output": "elsewhere", "mode": "resume"})
    task = spec.tasks[0]
    assert (task.batch_size, spec.output, spec.mode) == (32, "elsewhere", "resume")
    assert task.options == {"top_k": 2, "function_to_apply": "sigmoid"}  # flags add to the file's options
    assert task.columns == {"text": "body"} and spec.input == ["in/"]


def test_actor_pool_sizes_parse():
    base = {"task": "text-classification", "model": "m", "input": "i", "output": "o"}
    assert load_job_spec(None, {**base, "actors": "2:5"}).tasks[0].actors == (2, 5)
    assert load_job_spec(None, {**base, "actors": "3"}).tasks[0].actors == (3, 3)
    assert load_job_spec(None, {**base, "num_gpus": 0.25}).tasks[0].num_gpus == 0.25


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"task": "no-such-task"}, "tasks.0.task"),
        ({"actors": "4:2"}, "tasks.0.actors"),
        ({"actors": "a:b"}, "tasks.0.actors"),
        ({"options": {"topk": 1}}, "tasks.0.options"),
        ({"batch_size": 0}, "tasks.0.batch_size"),
        ({"num_gpus": -1}, "tasks.0.num_gpus"),
        ({"columns": {"image": "x"}}, "columns"),
        ({"input_format": "xml"}, "input_format"),
        ({"mode": "sometimes"}, "mode"),
        ({"output": None, "_drop": "output"}, "output"),
    ],
)
def test_spec_errors_name_the_field(overrides, field):
    base = {"task": "text-classification", "model": "m", "input": "i", "output": "o"}
    drop = overrides.pop("_drop", None)
    data = {**base, **overrides}
    if drop:
        data.pop(drop)
    with pytest.raises(SpecError) as e:
        load_job_spec(None, data)
    assert f"{field}:" in str(e.value)


def test_unknown_field_in_file_is_named(tmp_path):
    job = write_job(tmp_path, "input: i\noutput: o\nbatchsize: 3\ntasks: [{task: text-classification, model: m}]\n")
    with pytest.raises(SpecError, match="batchsize: unknown field"):
        load_job_spec(job, {})


def test_multi_task_file_refuses_single_task_flags(tmp_path):
    job = write_job(
        tmp_path,
        """
        input: i
        output: o
        tasks:
          - {task: text-classification, model: m}
          - {task: text-classification, model: m2, name: second}
        """,
    )
    with pytest.raises(SpecError, match="^model: this job has 2 tasks"):
        load_job_spec(job, {"model": "x"})
    assert load_job_spec(job, {"batch_size": 7}).tasks[1].batch_size == 7  # sizing flags apply to all


def test_duplicate_task_names_are_refused():
    from pipelines.spec import build_job_spec

    with pytest.raises(SpecError, match="tasks: names must be unique"):
        build_job_spec({"input": "i", "output": "o", "tasks": [{"task": "text-classification", "model": "m"}] * 2}, {})


def test_cli_bad_spec_exits_2_naming_the_field(capsys, text_input, tmp_path):
    out = str(tmp_path / "out")
    code = taskray(["run", "--task", "text-classification", "--model", "m", "--input", text_input, "--output", out, "--batch-size", "0"])
    assert code == 2
    assert "tasks.0.batch_size" in capsys.readouterr().err


def test_cli_missing_column_exits_2_before_any_work(capsys, text_input, tmp_path):
    out = str(tmp_path / "out")
    code = taskray(["run", "--task", "text-classification", "--model", "m", "--input", text_input, "--output", out])
    err = capsys.readouterr().err
    assert code == 2
    assert "columns.text: column 'text' not found" in err and "'body'" in err
    assert not os.path.exists(out), "nothing may be written for a bad spec"


def test_cli_missing_keep_and_id_columns(capsys, text_input, tmp_path):
    args = ["run", "--task", "text-classification", "--model", "m", "--input", text_input, "--output", str(tmp_path / "o"), "--column", "text=body"]
    assert taskray([*args, "--keep-columns", "n,missing"]) == 2
    assert "keep_columns: column 'missing' not found" in capsys.readouterr().err
    assert taskray([*args, "--id-column", "uid"]) == 2
    assert "id_column: column 'uid' not found" in capsys.readouterr().err


def test_cli_refuses_non_empty_output(capsys, text_input, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-0.parquet").write_bytes(b"old")
    args = ["run", "--task", "text-classification", "--model", "m", "--input", text_input, "--output", str(out), "--column", "text=body"]
    assert taskray(args) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--resume" in err and "--overwrite" in err
    # --resume over data that no taskray job left behind (no _checkpoint/) is refused too
    assert taskray([*args, "--resume"]) == 2
    assert "resuming could duplicate rows" in capsys.readouterr().err
    assert (out / "part-0.parquet").read_bytes() == b"old"


def test_cli_dry_run_prints_spec_and_plan(capsys, text_input, tmp_path):
    text = dry_run(capsys, text_input, str(tmp_path / "o"), "--actors", "1:3", "--num-gpus", "0.5", "--option", "top_k=2")
    assert "top_k: 2" in text  # the resolved spec, option value parsed as YAML
    assert "map_batches Forward[text-classification]" in text and "actors=1:3" in text and "num_gpus=0.5" in text
    assert "label, score, scores, error" in text
    assert not os.path.exists(tmp_path / "o")


def test_cli_dry_run_plans_the_input_as_the_run_does(capsys, text_input, tmp_path):
    """The dry run prints the plan the run would make: the input's columns are read and checked,
    and the output's columns are typed (kept columns as the first input file types them)."""
    text = dry_run(capsys, text_input, str(tmp_path / "o"), "--keep-columns", "n")
    assert "id, n, label, score, scores, error" in text
    assert "\nn: int64\n" in text and "\nscore: double\n" in text
    args = ["run", "--task", "text-classification", "--model", "m", "--input", text_input, "--output", str(tmp_path / "o")]
    assert taskray([*args, "--dry-run"]) == 2  # no `text` column: the run would refuse it too
    assert "tasks[text-classification].columns.text: column 'text' not found" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


def test_cli_dry_run_prints_each_pick_and_why(capsys, text_input, tmp_path):
    text = dry_run(capsys, text_input, str(tmp_path / "o"), task="feature-extraction")
    picks = text.split("# picked for the hardware\n", 1)[1].split("\n\n", 1)[0].splitlines()
    # This machine when no Ray is up (a dry run starts none); the running Ray when the session
    # already holds one (other tests of the session started it).
    assert picks[0].startswith(("sized for this machine (--dry-run starts no Ray", "sized for the Ray cluster:")), picks[0]
    for what in ("preprocess:", "block_rows:", "block bytes:", "read and write tasks:",
                 "feature-extraction: forward actors:", "feature-extraction: forward:"):
        assert sum(line.startswith(what) for line in picks) == 1, (what, picks)
    assert "block_rows: null" in text  # the resolved spec keeps what the user set: nothing
    assert "map_batches Forward[feature-extraction]  Forward:" in text and "torch_threads=" in text


@pytest.mark.parametrize(
    "place, field",
    [("task", "forward_cpus"), ("task", "torch_threads"), ("task", "forward_calls"), ("task", "preprocess_cpus"),
     ("job", "block_growth"), ("job", "io_cpus"), ("job", "preprocess_actors"), ("job", "preprocess"),
     ("job", "error_budget_min_rows")],
)
def test_removed_sizing_fields_fail_naming_the_field(tmp_path, place, field):
    task = {"task": "text-classification", "model": "m", **({field: 1} if place == "task" else {})}
    job = {"input": "i", "output": "o", "tasks": [task], **({field: 1} if place == "job" else {})}
    path = write_job(tmp_path, yaml.safe_dump(job))
    with pytest.raises(SpecError, match=f"{field}: no longer a setting; taskray picks it per node") as e:
        load_job_spec(path, {})
    assert "--dry-run" in str(e.value)


def test_removed_sizing_flags_exit_2_naming_the_field(capsys, text_input, tmp_path):
    base = ["run", "--task", "text-classification", "--model", "m", "--input", text_input, "--output", str(tmp_path / "o")]
    for flags, field in ((["--forward-cpus", "1.5"], "forward_cpus"), (["--preprocess", "inline"], "preprocess"),
                         (["--torch-threads", "2"], "torch_threads"), (["--block-growth"], "block_growth")):
        assert taskray([*base, *flags]) == 2
        assert f"bad job spec: {field}: no longer a setting; taskray picks it per node" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


def test_a_manifest_of_an_earlier_version_still_reads():
    """`taskray report` reads the spec recorded in _SUCCESS; earlier versions recorded the
    sizing fields that taskray now picks itself."""
    from pipelines.spec import JobSpec, without_removed_fields

    old = {"input": ["i"], "output": "o", "block_rows": 256, "block_growth": 1.0, "io_cpus": 0.25, "preprocess": "actors",
           "preprocess_actors": None, "error_budget_min_rows": 1000,
           "tasks": [{"task": "text-classification", "model": "m", "actors": [1, 2], "num_gpus": 0.0, "forward_cpus": 1.0,
                      "torch_threads": None, "forward_calls": 1, "preprocess_cpus": 1.0}]}
    with pytest.raises(Exception, match="no longer a setting"):
        JobSpec.model_validate(old)
    spec = JobSpec.model_validate(without_removed_fields(old))
    assert (spec.block_rows, spec.tasks[0].actors) == (256, (1, 2))


def test_dtype_flag_sets_the_task_dtype():
    from pipelines.cli import build_parser
    from pipelines.commands.run import overrides_from_args

    args = build_parser().parse_args(
        ["run", "--task", "feature-extraction", "--model", "m", "--input", "i", "--output", "o", "--dtype", "bfloat16"]
    )
    spec = load_job_spec(None, overrides_from_args(args))
    assert spec.tasks[0].dtype == "bfloat16"
