"""`taskray submit` without a cluster: the entrypoint, the runtime_env (code shipped, deps
pinned), the upload's size, and the CLI's dry run."""

from __future__ import annotations

import json
import os
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from pipelines.cli import main as cli_main
from pipelines.submit import (
    DEFAULT_EXCLUDES,
    build_entrypoint,
    build_submission,
    declared_requirements,
    exit_code,
    is_excluded,
    pinned_requirements,
    project_root,
)

ROOT = project_root()


def test_project_root_is_this_checkout():
    assert os.path.samefile(ROOT, Path(__file__).parents[2])


def test_pins_are_the_installed_versions():
    pins = pinned_requirements(["transformers>=5.20,<6", "pyarrow>=17", "ray[data,serve]==2.60.0", "torch>=2.4"])
    assert pins == [f"transformers=={version('transformers')}", f"pyarrow=={version('pyarrow')}"]


def test_pins_keep_extras_skip_test_extras_and_keep_unknown_specifiers():
    pins = pinned_requirements(["moto[server]>=5", 'pytest>=8; extra == "test"', "no-such-dist-xyz>=1.2"])
    assert pins == [f"moto[server]=={version('moto')}", "no-such-dist-xyz>=1.2"]


def test_declared_requirements_come_from_the_shipped_pyproject():
    reqs = declared_requirements(ROOT)
    assert any(r.startswith("transformers") for r in reqs)
    assert not any("extra ==" in r for r in reqs)  # only runtime deps, no test extras
    pinned = {p.split("==")[0] for p in pinned_requirements(reqs)}
    assert {"transformers", "pyarrow", "pydantic"} <= pinned
    assert not pinned & {"ray", "torch"}


@pytest.mark.parametrize(
    "path, excluded",
    [
        (".venv/lib/python3.11/site.py", True),
        (".git/config", True),
        ("pipelines/__pycache__/cli.cpython-311.pyc", True),
        ("data/x.jsonl", True),
        ("tests/data/x.jsonl", False),  # "/data" is anchored at the root
        ("out/part-0.parquet", True),
        ("benchmarks/_work/run.json", True),
        ("benchmarks/bench.py", False),
        ("pipelines/cli.py", False),
        ("configs/job.yaml", False),
    ],
)
def test_exclude_patterns_read_as_ray_reads_them(path, excluded):
    # Ray reads `excludes` as gitignore patterns (its vendored pathspec): same verdicts.
    from ray._private.thirdparty.pathspec import PathSpec

    assert is_excluded(path, DEFAULT_EXCLUDES) is excluded
    assert PathSpec.from_lines("gitwildmatch", DEFAULT_EXCLUDES).match_file(path) is excluded


def test_entrypoint_rewrites_local_paths_for_the_cluster(tmp_path, monkeypatch):
    inside = Path(ROOT, "cluster.yaml")
    warnings: list[str] = []
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.yaml").write_text("{}")
    entry = build_entrypoint(
        ["run", str(inside), "--input", "in.jsonl", "--output=s3://bucket/out", "--actors", "1:3"],
        ROOT,
        list(DEFAULT_EXCLUDES),
        warnings,
    )
    # A file in the shipped checkout goes relative to it (the job's cwd on the cluster);
    # a relative --input becomes absolute; URIs and other values are untouched.
    assert entry == (
        f"python -m pipelines.cli run cluster.yaml --input={tmp_path}/in.jsonl --output=s3://bucket/out --actors 1:3"
    )
    assert warnings == []

    entry = build_entrypoint(["run", "job.yaml"], ROOT, list(DEFAULT_EXCLUDES), warnings)
    assert entry == f"python -m pipelines.cli run {tmp_path}/job.yaml"
    assert warnings and "is not shipped" in warnings[0]


def test_entrypoint_refuses_other_commands():
    with pytest.raises(ValueError, match="expected a taskray command after '--' .*got 'tasks'"):
        build_entrypoint(["tasks"], ROOT, [], [])
    with pytest.raises(ValueError, match="got 'nothing'"):
        build_entrypoint([], ROOT, [], [])


def test_runtime_env_ships_code_and_pins():
    sub = build_submission(["serve", "cluster.yaml"], extra_excludes=["/notes"])
    env = sub.runtime_env
    assert env["working_dir"] == ROOT
    assert env["excludes"] == [*DEFAULT_EXCLUDES, "/notes"]
    assert f"transformers=={version('transformers')}" in env["pip"]["packages"]
    assert sub.submission_id.startswith("taskray-serve-")
    assert "pip" not in build_submission(["serve", "cluster.yaml"], pip=False).runtime_env
    assert build_submission(["serve", "x"], pip=["numpy==2.0"]).runtime_env["pip"]["packages"] == ["numpy==2.0"]


def test_upload_is_small_and_holds_the_code(tmp_path):
    # Zip exactly as Ray does for working_dir, ignoring .gitignore: our excludes alone must
    # keep virtualenvs, .git, caches and data out.
    from ray._private.runtime_env.packaging import create_package

    target = tmp_path / "pkg.zip"
    create_package(ROOT, target, include_gitignore=False, excludes=list(DEFAULT_EXCLUDES))
    names = zipfile.ZipFile(target).namelist()
    assert "pipelines/cli.py" in names and "operators/base.py" in names and "pyproject.toml" in names
    assert not [n for n in names if n.startswith((".venv/", ".git/", ".cache/")) or n.endswith(".parquet")]
    assert target.stat().st_size < 10 * 2**20, f"working_dir upload is {target.stat().st_size} bytes"


def test_exit_codes():
    assert exit_code("SUCCEEDED") == 0
    assert exit_code("FAILED") == 1 and exit_code("STOPPED") == 1
    with pytest.raises(ValueError, match="got 'RUNNING'"):
        exit_code("RUNNING")


def test_cli_dry_run_hides_env_values(capsys, monkeypatch):
    monkeypatch.setenv("TASKRAY_TEST_SECRET", "s3cr3t")
    rc = cli_main(["submit", "--dry-run", "--env", "TASKRAY_TEST_SECRET", "--", "run", "cluster.yaml", "--actors", "1:3"])
    out = capsys.readouterr().out
    assert rc == 0
    shown = json.loads(out)
    assert shown["entrypoint"] == "python -m pipelines.cli run cluster.yaml --actors 1:3"
    assert shown["runtime_env"]["env_vars"] == {"TASKRAY_TEST_SECRET": "<set>"}
    assert "s3cr3t" not in out


def test_cli_rejects_bad_input(capsys):
    assert cli_main(["submit", "--dry-run", "--env", "TASKRAY_SURELY_UNSET_VAR", "--", "run", "x"]) == 2
    assert "TASKRAY_SURELY_UNSET_VAR: not set" in capsys.readouterr().err
    assert cli_main(["submit", "--dry-run", "--", "demo"]) == 2
    assert "got 'demo'" in capsys.readouterr().err
