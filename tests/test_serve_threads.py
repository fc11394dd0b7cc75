"""The torch threads of a Serve model replica (pipelines/hardware.py pick_replica_threads) and
how the replica gets them (pipelines/serve/app.py replica_threads, endpoint_runner, TaskModel,
GET {route}/info). No Ray is started: the replica's resources are given, or Ray's runtime
context is replaced, and OperatorRunner is replaced by a recorder, so nothing loads."""

from __future__ import annotations

import asyncio

import pytest

from pipelines.hardware import pick_replica_threads


@pytest.mark.parametrize(
    "task, num_cpus, threads",
    [
        ("text-classification", 1, 1),
        ("feature-extraction", 4, 4),
        ("automatic-speech-recognition", 2.5, 2),  # whole CPUs: a part of one is shared
        # not half the cores, as `run` gives an image forward: nothing decodes beside it here
        ("image-classification", 4, 4),
    ],
)
def test_a_cpu_replica_runs_its_one_forward_call_on_every_whole_cpu(task, num_cpus, threads):
    picked = pick_replica_threads(task, num_cpus)
    assert picked.torch_threads == threads
    assert len(picked.why) == 1 and picked.why[0].startswith(f"torch threads: {threads}, one per whole CPU")


def test_an_image_replica_says_why_it_differs_from_run():
    (why,) = pick_replica_threads("image-classification", 4).why
    assert "images decode before it on the same thread" in why and "half the cores" in why
    (why,) = pick_replica_threads("text-classification", 4).why
    assert "decode" not in why


@pytest.mark.parametrize("num_cpus", [0, 0.25, 0.5, 0.99])
def test_a_replica_below_one_cpu_shares_cores_on_one_thread(num_cpus):
    for task in ("text-classification", "image-classification"):
        picked = pick_replica_threads(task, num_cpus)
        assert picked.torch_threads == 1 and "shares cores" in picked.why[0]


@pytest.mark.parametrize(
    "num_cpus, num_gpus, device", [(8, 1, "auto"), (4, 0.5, "auto"), (0, 1, "auto"), (4, 0, "cuda"), (4, 1, "cuda:0")]
)
def test_a_gpu_replica_keeps_one_host_thread(num_cpus, num_gpus, device):
    picked = pick_replica_threads("image-classification", num_cpus, num_gpus, device=device)
    assert picked.torch_threads == 1 and "on a GPU" in picked.why[0]


def test_a_replica_given_a_gpu_but_told_cpu_is_sized_as_a_cpu_replica():
    assert pick_replica_threads("text-classification", 4, 1, device="cpu").torch_threads == 4


def test_threads_never_exceed_the_machines_cores():
    picked = pick_replica_threads("text-classification", 16, cores=8)
    assert picked.torch_threads == 8 and "this machine's cores (16 CPUs reserved, more than it has" in picked.why[0]
    assert pick_replica_threads("text-classification", 4, cores=8).torch_threads == 4


@pytest.mark.parametrize("num_cpus, num_gpus", [(4, 0), (0.5, 0), (8, 1)])
def test_the_endpoints_torch_threads_win(num_cpus, num_gpus):
    picked = pick_replica_threads("image-classification", num_cpus, num_gpus, torch_threads=3, cores=2)
    assert picked.torch_threads == 3 and picked.why == ("torch threads: 3 (set by the endpoint's torch_threads)",)


# ------------------------------------------------------------------ the Serve app uses the pick


class RecordingRunner:
    """Stands for OperatorRunner: records its torch_threads and loads nothing."""

    def __init__(self, op, *, torch_threads=1, **_):
        self.op = op
        self.torch_threads = torch_threads


@pytest.fixture
def app(monkeypatch):
    from pipelines.serve import app

    monkeypatch.setattr(app, "OperatorRunner", RecordingRunner)
    monkeypatch.setattr(app, "endpoint_operator", lambda args: ("operator of", args.task))
    monkeypatch.setattr(app, "machine_cores", lambda: 64)
    return app


def endpoint_args(**fields):
    from pipelines.serve.config import EndpointArgs

    return EndpointArgs(task="image-classification", model="m", **fields)


def test_the_replica_picks_from_the_resources_ray_assigned_it(app):
    assert app.replica_threads(endpoint_args(), {"CPU": 3.0}).torch_threads == 3
    assert app.replica_threads(endpoint_args(), {}).torch_threads == 1  # num_cpus 0: Ray lists no CPU
    assert app.replica_threads(endpoint_args(), {"CPU": 4.0, "GPU": 1.0}).torch_threads == 1
    assert app.replica_threads(endpoint_args(device="cpu"), {"CPU": 4.0, "GPU": 1.0}).torch_threads == 4
    assert app.replica_threads(endpoint_args(torch_threads=2), {"CPU": 6.0}).torch_threads == 2


def test_the_runner_runs_on_the_picked_threads(app):
    args = endpoint_args()
    assert app.endpoint_runner(args, app.replica_threads(args, {"CPU": 5.0})).torch_threads == 5
    # outside a replica (no pick): the endpoint's own setting, else the process's count
    assert app.endpoint_runner(args).torch_threads is None
    assert app.endpoint_runner(endpoint_args(torch_threads=2)).torch_threads == 2


class FakeRuntimeContext:
    def __init__(self, resources):
        self.resources = resources

    def get_assigned_resources(self):
        return self.resources


def test_the_model_replica_builds_its_runner_with_the_pick(app, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "get_runtime_context", lambda: FakeRuntimeContext({"CPU": 6.0}))
    model = app.TaskModel.func_or_class(endpoint_args().model_dump())
    assert model.runner.torch_threads == model.threads.torch_threads == 6
    assert asyncio.run(model.picked_threads()) is model.threads
    explicit = app.TaskModel.func_or_class(endpoint_args(torch_threads=2).model_dump())
    assert explicit.runner.torch_threads == 2


class FakeMethod:
    def __init__(self, answer):
        self.answer, self.calls = answer, 0

    async def _answer(self):
        self.calls += 1
        return self.answer

    def remote(self):
        return self._answer()


# Serve's ingress wrapper defines `async def __del__`, so dropping an instance made outside a
# replica leaves that coroutine unawaited; nothing of this test runs in it.
@pytest.mark.filterwarnings("ignore:coroutine .*ASGIIngressWrapper.__del__. was never awaited:RuntimeWarning")
def test_info_reports_the_model_replicas_threads_and_why(app):
    from types import SimpleNamespace

    picked = pick_replica_threads("image-classification", 2)
    endpoint = object.__new__(app.TaskEndpoint.func_or_class)  # an isolated ingress's state, without Serve
    endpoint.threads = None
    ask = FakeMethod(picked)
    endpoint.model = SimpleNamespace(picked_threads=ask)
    for _ in range(2):
        info = asyncio.run(endpoint._threads_info())
        assert info == {"torch_threads": 2, "torch_threads_why": list(picked.why)}
    assert ask.calls == 1  # asked of the model replica once
