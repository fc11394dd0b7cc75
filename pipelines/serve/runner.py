"""Deploy a Serve config from this process and wait until it answers.

`serve run CONFIG` builds each application in a Ray task on the cluster (one worker process
per application). Here the applications are built in this process and handed to Serve
together (`serve.run_many`), which saves those processes: on a small machine starting a
dozen of them costs more than the replicas themselves. The config's `deployments:` entries
are applied to taskray endpoints as Serve would apply them.
"""

from __future__ import annotations

import time
from typing import Any

from pipelines.serve.config import (
    APP_IMPORT_PATH,
    DEPLOYMENT_NAME,
    HEALTH_IMPORT_PATH,
    MODEL_DEPLOYMENT_NAME,
    validate_serve_config,
)

TERMINAL_FAILURES = ("DEPLOY_FAILED", "UNHEALTHY")


def _application(app: dict[str, Any]):
    from pipelines.serve.app import build_endpoint, build_health_app

    path = app["import_path"]
    if path == APP_IMPORT_PATH:
        overrides = {d["name"]: d for d in app.get("deployments") or []}
        unknown = sorted(set(overrides) - {DEPLOYMENT_NAME, MODEL_DEPLOYMENT_NAME})
        if unknown:
            raise ValueError(
                f"application {app['name']!r}: unknown deployments {unknown}; expected {DEPLOYMENT_NAME} "
                f"(and {MODEL_DEPLOYMENT_NAME}, the model behind it with isolate_model)"
            )
        try:
            return build_endpoint(app.get("args") or {}, overrides.get(DEPLOYMENT_NAME), overrides.get(MODEL_DEPLOYMENT_NAME))
        except ValueError as e:
            raise ValueError(f"application {app['name']!r}: {e}") from None
    if path == HEALTH_IMPORT_PATH:
        return build_health_app(app.get("args"))
    raise ValueError(
        f"application {app['name']!r}: import_path {path!r} is not a taskray application; use `serve run` for it"
    )


def deploy(config: dict[str, Any], *, timeout_s: float = 300.0, starting_at_once: int | None = None) -> None:
    """Start Serve with the config's HTTP options and run every application in it.

    On one machine at most `starting_at_once` applications start at a time (default: one per
    CPU, at least 2; the next starts as soon as one is running): each replica's start-up is a
    process importing torch and transformers, and more of them at once than there are cores
    only share the cores, less efficiently: all of them run sooner, with less CPU, and the
    first endpoints answer within seconds instead of after the last has started
    (benchmarks/RESULTS.md, Serve cold start). On a cluster of several nodes all start at once.

    Raises ValueError for an invalid config and RuntimeError naming the application when
    one fails to deploy or the wait times out.
    """
    from ray import serve
    from ray.serve.api import RunTarget

    validate_serve_config(config)
    check_cuda(config)
    http = config.get("http_options") or {}
    serve.start(http_options={k: v for k, v in http.items() if k in ("host", "port")})
    targets = [
        RunTarget(target=_application(app), name=app["name"], route_prefix=app.get("route_prefix", "/"))
        for app in config["applications"]
    ]
    deadline = time.monotonic() + timeout_s
    start_in_window(targets, starting_at_once or _start_window(), timeout_s=timeout_s)
    wait_for_proxy(http.get("host", "127.0.0.1"), http.get("port", 8000), timeout_s=deadline - time.monotonic())


def start_in_window(targets: list, window: int, *, timeout_s: float) -> None:
    """Run the Serve `targets` (RunTargets), at most `window` of them starting at a time, the
    next as soon as one is running; return once all are running."""
    deadline = time.monotonic() + timeout_s
    started: list[str] = []
    while True:
        starting = list(_not_running(started))
        new = targets[len(started):len(started) + max(0, window - len(starting))]
        if new:
            _run(new)
            started += [t.name for t in new]
            starting += [t.name for t in new]
        if not starting and len(started) == len(targets):
            return
        if time.monotonic() > deadline:
            pending = {**_not_running(started), **{t.name: "NOT_STARTED" for t in targets[len(started):]}}
            raise RuntimeError(f"applications not running after {timeout_s:.0f}s: {pending}")
        time.sleep(0.25)


def _start_window() -> int:
    """Applications to start at a time: one per CPU (at least 2) on a single node, all on a
    cluster of several (their replicas start on different machines)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) != 1:
        return 1 << 30
    return max(2, int(nodes[0].get("Resources", {}).get("CPU", 0)))


def _run(targets: list) -> None:
    from ray import serve

    try:
        serve.run_many(targets, wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)
    except TimeoutError:
        # Serve gives its HTTP proxy a fixed 60 s to start (HTTP_PROXY_TIMEOUT), after the
        # applications were submitted; on a busy machine it needs longer. deploy's waits cover
        # the proxy and the applications within our own timeout.
        pass


def check_cuda(config: dict[str, Any]) -> None:
    """Each taskray application whose model replicas ask for a GPU (ray_actor_options num_gpus,
    or device cuda) can use CUDA where they would run, before any replica starts: a probe task
    with the replicas' resources imports torch there (pipelines/cuda_probe.py). Otherwise the
    replica constructor refuses (operators.loading.resolve_device) and Serve retries it until
    the deployment fails, minutes later. Raises RuntimeError naming the application."""
    from pipelines.cuda_probe import cuda_problems
    from pipelines.serve.app import endpoint_options
    from pipelines.serve.config import EndpointArgs

    requests = {}
    for app in config["applications"]:
        if app["import_path"] != APP_IMPORT_PATH:
            continue
        args = EndpointArgs.model_validate(app.get("args") or {})
        entries = {d.get("name"): d for d in app.get("deployments") or []}
        actor = endpoint_options(args, entries.get(DEPLOYMENT_NAME)).get("ray_actor_options") or {}
        if args.isolate_model and MODEL_DEPLOYMENT_NAME in entries:
            actor = entries[MODEL_DEPLOYMENT_NAME].get("ray_actor_options", actor)
        if actor.get("num_gpus") or args.device.startswith("cuda"):
            resources = {"num_gpus": actor.get("num_gpus") or 0, "resources": dict(actor.get("resources") or {})}
            requests[app["name"]] = (args.device, resources)
    for name, problem in cuda_problems(requests).items():
        raise RuntimeError(f"application {name!r} asks for a GPU, but where its replicas run {problem}")


def wait_for_proxy(host: str, port: int, *, timeout_s: float) -> None:
    """Until Serve's HTTP proxy answers its own health route."""
    import urllib.error
    import urllib.request

    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    deadline = time.monotonic() + max(timeout_s, 1.0)
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/-/healthz", timeout=10) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"Serve's HTTP proxy is not answering on {host}:{port} after {timeout_s:.0f}s")
        time.sleep(0.5)


def wait_until_running(names: list[str], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        pending = _not_running(names)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"applications not running after {timeout_s:.0f}s: {pending}")
        time.sleep(0.5)


def _not_running(names: list[str]) -> dict[str, str]:
    """The state of each of the applications `names` that is not running yet. Raises
    RuntimeError naming the application and its deployment's error when one failed."""
    from ray import serve

    if not names:
        return {}
    apps = serve.status().applications
    pending = {}
    for name in names:
        status = apps.get(name)
        state = str(getattr(status.status, "value", status.status)) if status else "NOT_STARTED"
        if state in TERMINAL_FAILURES:
            causes = [deployment_error(d.message) for d in status.deployments.values() if d.message]
            cause = "; ".join(c for c in causes if c)
            raise RuntimeError(f"application {name!r} is {state}: {status.message}" + (f" ({cause})" if cause else ""))
        if state != "RUNNING":
            pending[name] = state
    return pending


def deployment_error(message: str) -> str:
    """The exception at the end of a deployment's status message, on one line. Serve reports a
    replica constructor that raised (e.g. an operator's check_config() refusing an option) as
    the whole traceback; the user needs its last exception, not the frames."""
    lines = message.splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    start = frames[-1] + 1 if frames else 0
    while start < len(lines) and lines[start][:1].isspace():  # the frame's code and carets
        start += 1
    kept = [line.strip() for line in lines[start:] if not line.strip().startswith("For further information")]
    return " ".join(line for line in kept if line)
