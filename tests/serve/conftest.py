"""One Serve instance for all Serve tests: every task from configs/serve.yaml (models swapped
for tiny ones) plus test endpoints tuned for the API, backpressure, crash and auth tests.
Deploying them together lets their replicas start in parallel, once; each replica is a process
that imports torch and transformers, so the tests share endpoints where their settings allow."""

from __future__ import annotations

import copy
import os
import socket
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SERVE_YAML = REPO / "configs" / "serve.yaml"

# The default (isolated) layout's endpoint: the API tests' and, last, the replica crash test's
# (tests/serve/test_replica_crash.py kills its model replica; no test uses it after that).
API_ROUTE = "/v1/test/api"
API_APP = "test-api"
SLOW_ROUTE = "/v1/test/slow"
# The feature-extraction application behind a token: the auth tests' endpoint, and the root
# POST /v1/embeddings's second application (the example endpoints hold the first).
SECURE_ROUTE = "/v1/test/secure-embeddings"
SECURE_EMBEDDINGS_APP = "test-secure-embeddings"
API_RETRY_AFTER_S = 2
AUTH_TOKEN = "s3cret-token-for-tests-5d1f0a"
API_MAX_BATCH = 4
API_MAX_INPUTS = 32  # the crash test's requests: max_inputs texts near the tiny model's positions
API_MAX_BODY = 65536  # above those requests (about 21 KB)
SLOW_WAIT_S = 1.5  # the one admitted request of the slow endpoint waits this long for company
# Test files that need the 13 example endpoints of configs/serve.yaml.
EXAMPLE_ENDPOINT_TESTS = ("test_parity.py", "test_clients.py", "test_openai_transcriptions.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _test_endpoints(model: str) -> list:
    from pipelines.serve.config import AppSpec, DeploymentOptions, EndpointArgs

    return [
        AppSpec(
            name=API_APP,
            route_prefix=API_ROUTE,
            # A long gathering wait makes concurrent requests share batches on a busy machine.
            args=EndpointArgs(task="text-classification", model=model, max_batch_size=API_MAX_BATCH,
                              batch_wait_timeout_s=0.2, max_body_bytes=API_MAX_BODY, max_inputs=API_MAX_INPUTS),
            deployment=DeploymentOptions(num_cpus=0, retry_after_s=API_RETRY_AFTER_S),
        ),
        AppSpec(
            name="test-slow",
            route_prefix=SLOW_ROUTE,
            # One process: the backpressure under test is the deployment's, whichever layout.
            args=EndpointArgs(task="text-classification", model=model, max_batch_size=8,
                              batch_wait_timeout_s=SLOW_WAIT_S, isolate_model=False),
            deployment=DeploymentOptions(num_cpus=0, max_ongoing_requests=1, max_queued_requests=1, retry_after_s=2),
        ),
    ]


def _secure_embeddings_endpoint(model: str):
    from pipelines.serve.config import AppSpec, DeploymentOptions, EndpointArgs

    return AppSpec(
        name=SECURE_EMBEDDINGS_APP,
        route_prefix=SECURE_ROUTE,
        # One process: what is under test here (the token, the root's forwarding) is the
        # ingress's; test-api runs the default, isolated layout.
        args=EndpointArgs(task="feature-extraction", model=model, isolate_model=False),
        deployment=DeploymentOptions(num_cpus=0),
        auth_token=AUTH_TOKEN,
    )


def example_config_with_tiny_models(tiny_model, port: int) -> dict:
    """configs/serve.yaml with each registered task's model replaced by its tiny model, the
    test options of tests/serve/references.py, and no CPU reservation (13 replicas share 2
    cores here)."""
    from operators import list_tasks
    from tests.serve.references import ENDPOINT_ONLY_OPTIONS, ENDPOINT_OPTIONS

    config = yaml.safe_load(SERVE_YAML.read_text())
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    registered = set(list_tasks())
    apps = []
    for app in config["applications"]:
        app = copy.deepcopy(app)
        task = (app.get("args") or {}).get("task")
        if task is not None:
            if task not in registered:
                continue  # an operator not written yet; test_every_task_is_served reports it
            app["args"]["model"] = tiny_model(task)
            extra = {**ENDPOINT_OPTIONS.get(task, {}), **ENDPOINT_ONLY_OPTIONS.get(task, {})}
            if extra:
                app["args"]["options"] = {**app["args"].get("options", {}), **extra}
            for deployment in app.get("deployments", []):
                deployment["ray_actor_options"] = {"num_cpus": 0, "num_gpus": 0}
            # One process per endpoint instead of two: parity does not depend on where the model
            # runs, and test-api runs the default (isolated) layout.
            app["args"]["isolate_model"] = False
        apps.append(app)
    config["applications"] = apps
    return config


def start_suite_ray() -> None:
    """The local Ray the Serve tests start when none is up: 2 CPUs, settings below."""
    from pipelines.local_ray import start_local_ray

    with pytest.MonkeyPatch.context() as patch:
        # One OpenMP thread per replica (some 20 share 2 cores), through the environment that
        # the raylet and so every worker inherit: a runtime_env would start each worker
        # through Ray's setup_worker.py, a second interpreter per replica.
        patch.setenv("OMP_NUM_THREADS", "1")
        # Each replica exports Serve's request metrics every 100 ms by default: with some 20
        # idle replicas that was about 0.4 of a core here, for metrics no test reads. Once a
        # second leaves a replica at ~1% of a core when idle (measured).
        patch.setenv("RAY_SERVE_METRICS_EXPORT_INTERVAL_MS", "1000")
        start_local_ray(num_cpus=2, namespace="serve")


def suite_serve_config(tiny_model, port: int, examples: bool = True) -> dict:
    """The Serve config of the tests' session: the 13 example endpoints (when `examples`) and
    the test endpoints above. benchmarks/serve_start_window.py starts the same applications."""
    from pipelines.serve.config import ServeSpec

    config = {"http_options": {"host": "127.0.0.1", "port": port}, "applications": []}
    tests = [*_test_endpoints(tiny_model("text-classification")), _secure_embeddings_endpoint(tiny_model("feature-extraction"))]
    if examples:
        config = example_config_with_tiny_models(tiny_model, port)
    extra = ServeSpec(port=port, applications=tests)
    config["applications"] += [
        a for a in extra.to_serve_config()["applications"]
        if a["route_prefix"] != "/" or not any(b["route_prefix"] == "/" for b in config["applications"])
    ]
    return config


@pytest.fixture(scope="session")
def serve_url(tiny_model, request):
    """Base URL of the session's Serve instance with all test applications running. The
    13 example endpoints are deployed only when tests that use them were collected."""
    import ray
    from ray import serve

    from pipelines.serve.runner import deploy

    port = free_port()
    examples = any(name in item.nodeid for item in request.session.items for name in EXAMPLE_ENDPOINT_TESTS)
    config = suite_serve_config(tiny_model, port, examples)

    started = not ray.is_initialized()
    if started:
        start_suite_ray()
    try:
        # Generous for every replica on an oversubscribed 2-core machine, yet under pytest-timeout
        # (600 s) so that a slow start fails naming the applications still deploying.
        deploy(config, timeout_s=540)
        yield f"http://127.0.0.1:{port}"
    finally:
        if started:
            ray.shutdown()  # takes Serve with it, without serve.shutdown()'s graceful replica stops
        else:
            serve.shutdown()


@pytest.fixture(scope="session")
def reference(tiny_model, legacy_pipeline):
    """reference(task) -> what transformers.pipeline returns for the task's test inputs
    (tests/serve/references.py), computed once per session."""
    from operators import get_operator
    from tests.serve.references import pipeline_reference

    cache = {}

    def get(task: str):
        if task not in cache:
            cache[task] = pipeline_reference(task, tiny_model(task), get_operator(task).input_roles, legacy_pipeline)
        return cache[task]

    return get


@pytest.fixture(scope="session")
def tc_model(tiny_model) -> str:
    return tiny_model("text-classification")


@pytest.fixture(scope="session")
def tc_op(tc_model):
    from operators import get_operator

    return get_operator("text-classification")(tc_model).load()


def pytest_collection_modifyitems(items):
    # Serve tests start real processes; keep them apart from -m "not ray" runs.
    for item in items:
        if "tests/serve/" in str(item.fspath) and os.path.basename(str(item.fspath)) != "test_codec.py":
            item.add_marker(pytest.mark.ray)
