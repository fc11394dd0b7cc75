"""Deploy a Serve config in-process and wait until it answers, as `serve run CONFIG` does."""

from __future__ import annotations

import time
from typing import Any

from pipelines.serve.config import validate_serve_config

TERMINAL_FAILURES = ("DEPLOY_FAILED", "UNHEALTHY")


def deploy(config: dict[str, Any], *, timeout_s: float = 300.0) -> None:
    """Start Serve (HTTP options from the config) and deploy every application in it.

    Like Ray's `serve run` (ray/serve/scripts.py), this goes through the controller's
    declarative `deploy_apps`, so `deployments:` overrides apply exactly as `serve deploy`
    applies them. Deploying replaces the applications of an earlier config. Raises
    RuntimeError naming the application when one fails to deploy or the wait times out.
    """
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(validate_serve_config(config))
    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
    )
    client.deploy_apps(schema, _blocking=False)
    wait_until_running([app.name for app in schema.applications], timeout_s=timeout_s)


def wait_until_running(names: list[str], *, timeout_s: float) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while True:
        apps = serve.status().applications
        pending = {}
        for name in names:
            status = apps.get(name)
            state = str(getattr(status.status, "value", status.status)) if status else "NOT_STARTED"
            if state in TERMINAL_FAILURES:
                raise RuntimeError(f"application {name!r} is {state}: {status.message}")
            if state != "RUNNING":
                pending[name] = state
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"applications not running after {timeout_s:.0f}s: {pending}")
        time.sleep(0.5)
