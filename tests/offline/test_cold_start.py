"""Cold start (issue 27, item 1): what keeps a small job's start-up short stays in place.

The timings are benchmarks (benchmarks/cold_start.py, RESULTS.md); these tests check the
mechanisms: a local Ray started without a runtime_env, the operators' check run beside Ray's
start-up and still refusing a bad spec with exit 2, the command's exit without the
interpreter's teardown (its Ray still stopped), and a stats actor
whose process imports nothing heavy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from pipelines.local_ray import LOCAL_RAY_SYSTEM_CONFIG
from pipelines.offline import job as job_module
from pipelines.spec import JobSpec, SpecError


def _spec(**fields) -> JobSpec:
    return JobSpec.model_validate(
        {"input": ["/nonexistent/in"], "output": "/nonexistent/out", "tasks": [{"task": "text-classification", "model": "m"}], **fields}
    )


def _captured_init(monkeypatch) -> dict:
    import ray

    seen: dict = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: seen.update(kwargs))
    return seen


def test_a_local_ray_is_started_without_a_runtime_env(monkeypatch):
    # A runtime_env makes Ray start every worker through setup_worker.py (a second
    # interpreter and `import ray`) and leaves its prestarted workers unused.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    seen = _captured_init(monkeypatch)
    job_module._ensure_ray(_spec())
    assert seen["address"] == "local" and seen.get("runtime_env") is None
    assert seen["_system_config"] == LOCAL_RAY_SYSTEM_CONFIG  # idle workers kept, not restarted


def test_a_remote_cluster_still_gets_the_environment_through_a_runtime_env(monkeypatch):
    # Workers of a cluster that this process did not start do not inherit its environment.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    seen = _captured_init(monkeypatch)
    job_module._ensure_ray(_spec(ray_address="ray://head:10001"))
    assert seen["address"] == "ray://head:10001"
    env = seen["runtime_env"]["env_vars"]
    assert env["HF_HUB_OFFLINE"] == "1" and env["AWS_REGION"] == "eu-west-1"


def test_in_thread_runs_elsewhere_and_hands_back_the_result_or_the_error():
    ran_in = []

    def ok(x):
        ran_in.append(threading.current_thread())
        return x + 1

    assert job_module._in_thread(ok, 1).result(timeout=10) == 2
    assert ran_in and ran_in[0] is not threading.main_thread()

    def bad():
        raise SpecError("tasks[x].options.y: no")

    with pytest.raises(SpecError, match="options.y"):
        job_module._in_thread(bad).result(timeout=10)


def test_the_stats_actor_module_imports_nothing_heavy():
    # Its actor's process imports it: pipelines.offline.stages (the operators, numpy, pydantic) cost
    # that process 2.5 s of a 2-core machine's start-up.
    code = (
        "import sys, pipelines.offline.job_stats as m; "
        "heavy = sorted(n for n in ('operators', 'numpy', 'pydantic', 'torch', 'transformers', 'pyarrow', 'ray') if n in sys.modules); "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_a_checkpoint_refused_beside_ray_start_exits_2(tiny_model, tmp_path):
    # The operators' check (a text-classification checkpoint cannot summarize) runs in a
    # thread while Ray starts; its error is still the one reported (exit 2, the task named),
    # before the output is touched. Run as the `taskray` executable runs (pipelines.cli.command).
    from tests.offline.conftest import write_parquet

    model = tiny_model("text-classification")
    src = str(tmp_path / "in")
    write_parquet(src, {"text": ["a", "b"]})
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "pipelines.cli", "run", "--task", "summarization", "--model", model, "--input", src, "--output", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "tasks[summarization]" in last and "AutoModelForSeq2SeqLM" in last, proc.stderr
    assert not out.exists()


def test_the_command_exits_with_its_code_and_stops_the_ray_it_started():
    # pipelines.cli.exit_now ends a finished command without the interpreter's teardown; the
    # Ray the command started must still go with it: a local Ray's agents outlive a driver
    # that exits without ray.shutdown.
    import shutil
    import tempfile
    import time

    ray_tmp = tempfile.mkdtemp(prefix="trx-", dir="/tmp")  # short: Ray's socket paths live under it
    # A thread pool left running, as libraries leave theirs: its idle worker must not hold
    # the exit (joined by hand before threading's exit hooks stop it, it would wait forever).
    code = (
        "from concurrent.futures import ThreadPoolExecutor; ThreadPoolExecutor(1).submit(int).result(); "
        "from pipelines.local_ray import start_local_ray; start_local_ray(num_cpus=1); "
        "from pipelines.cli import exit_now; print('before exit', flush=False); exit_now(3)"
    )

    def left() -> list[str]:
        # Ray renames its processes (`ray::DashboardAgent`): they are found by the environment
        # they inherited from the command (read from /proc: psutil's process identity checks
        # misfire in this machine's VM).
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read().split(b"\0")
                with open(f"/proc/{pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:  # gone, or not ours to read
                continue
            if state != "Z" and f"RAY_TMPDIR={ray_tmp}".encode() in env:
                found.append(f"{pid} {cmdline[:100]}")
        return found

    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env={**os.environ, "RAY_TMPDIR": ray_tmp})
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert proc.stdout.strip() == "before exit"  # flushed on the way out
        # Gone as the command ends (measured: at once); without ray.shutdown they lived on
        # for 10 s to minutes. 5 s of slack for a loaded machine.
        deadline = time.monotonic() + 5
        while left() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left(), f"processes of the command's Ray outlived it: {left()}"
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_a_job_in_a_process_that_ran_jobs_first_collects_their_garbage(monkeypatch):
    # An earlier job's actors that only reference cycles hold (a failed execution's frames)
    # must not keep the CPUs this job needs until Python's collector happens to run.
    import gc

    import ray

    collected = []
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(gc, "collect", lambda *a: collected.append(1) or 0)
    job_module._ensure_ray(_spec())
    assert collected == [1]
