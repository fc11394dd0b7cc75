"""Typed configuration of taskray's Serve applications.

A serve YAML is a standard Ray Serve config (`serve run` / `serve deploy` read it unchanged).
Each taskray application in it has `import_path: pipelines.serve.app:build_app` and `args`
matching `EndpointArgs`; its `deployments:` entry (named `TaskEndpoint`) may override any
of the defaults that `DeploymentOptions` derives from the batch size.

`ServeSpec` is the typed form `taskray serve` builds from flags or from such a YAML file.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from operators.runtime import OperatorSpec

APP_IMPORT_PATH = "pipelines.serve.app:build_app"
HEALTH_IMPORT_PATH = "pipelines.serve.app:build_health_app"
DEPLOYMENT_NAME = "TaskEndpoint"
MODEL_DEPLOYMENT_NAME = "TaskModel"  # the model behind TaskEndpoint with isolate_model (the default)
HEALTH_APP_NAME = "health"
TOKEN_ENV = "TASKRAY_API_TOKEN"


class EndpointArgs(OperatorSpec):
    """`args` of one taskray application: its operator (OperatorSpec: task, model, options fixed
    for the endpoint, how it loads; a request's `parameters` override request options per call)
    and how it batches and guards."""

    # Errors never echo the args back: they may sit next to secrets in a config.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    torch_threads: int | None = Field(
        None,
        ge=1,
        description="torch intra-op threads of each replica that holds the model. Default: picked "
        "per replica from the CPUs and GPUs Ray reserved for it (pipelines/hardware.py "
        "pick_replica_threads: one per whole CPU, 1 below one CPU or on a GPU), logged at its start "
        "and reported with the reason by GET {route}/info.",
    )
    max_batch_size: int = Field(16, ge=1, description="Most requests one @serve.batch call gathers.")
    batch_wait_timeout_s: float = Field(
        0.01, ge=0, description="Longest a request waits for others to join its batch."
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1, description="Request bodies larger than this get 413."
    )
    max_inputs: int = Field(64, ge=1, description="Most inputs in one request's `inputs` list.")
    isolate_model: bool = Field(
        True,
        description="Run the model in a deployment of its own (TaskModel) behind a light ingress "
        "(TaskEndpoint, no CPU or GPU reserved). A model replica that dies mid-request (OOM kill, "
        "segfault, lost node) then costs its requests a 503 with Retry-After instead of Serve's "
        "500, while Serve restarts it. Costs one more process per replica (the ingress, without "
        "weights) and one hop per batch (benchmarks/RESULTS.md). false: one process per replica, "
        "and a crash answers its requests in flight 500.",
    )
    auth_token_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 (hex) of the bearer token required on every route but /healthz. "
        "Serve logs application args, so a config holds only the digest; `taskray serve` turns "
        f"`auth_token` into it. When unset, the replica's {TOKEN_ENV} environment variable applies.",
    )


class DeploymentOptions(BaseModel):
    """Replica resources, autoscaling and backpressure of one task deployment.

    Unset limits follow the batch size: a replica admits two batches' worth of requests (one
    running, one forming), and the proxy queues four more batches' worth before it answers
    503 with Retry-After.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per replica.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (fractions share a GPU).")
    min_replicas: int = Field(1, ge=0, description="Autoscaling lower bound.")
    max_replicas: int = Field(1, ge=1, description="Autoscaling upper bound.")
    target_ongoing_requests: float | None = Field(
        None, gt=0, description="Autoscaling target per replica; default: max_batch_size."
    )
    max_ongoing_requests: int | None = Field(
        None, ge=1, description="Requests one replica holds at once; default: 2 x max_batch_size. "
        "Must be >= max_batch_size for full batches.",
    )
    max_queued_requests: int | None = Field(
        None, ge=-1, description="Requests queued per proxy before 503; default: 4 x max_batch_size; -1: unbounded."
    )
    overload_status: Literal[503, 429] = Field(503, description="HTTP status for a request refused by backpressure.")
    retry_after_s: float = Field(1.0, ge=0, description="Retry-After on refused requests, in seconds.")

    def to_serve(self, max_batch_size: int) -> dict[str, Any]:
        """Keyword options of `Deployment.options()` / a `deployments:` entry."""
        return {
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "autoscaling_config": {
                "min_replicas": self.min_replicas,
                "initial_replicas": max(self.min_replicas, 1),
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests or float(max_batch_size),
            },
            "max_ongoing_requests": self.max_ongoing_requests or 2 * max_batch_size,
            "max_queued_requests": self.max_queued_requests or 4 * max_batch_size,
            "backpressure_config": {"status_code": self.overload_status, "retry_after_s": self.retry_after_s},
        }


class AppSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(description="Serve application name.")
    route_prefix: str = Field(description="HTTP route of the endpoint, e.g. /v1/text-classification.")
    args: EndpointArgs = Field(description="What the endpoint serves.")
    deployment: DeploymentOptions = Field(default_factory=DeploymentOptions, description="Replica options.")
    auth_token: SecretStr | None = Field(
        None, description="Bearer token; only its SHA-256 digest reaches the Serve config."
    )

    @field_validator("route_prefix")
    @classmethod
    def _route(cls, route: str) -> str:
        if not route.startswith("/") or route == "/" or route.endswith("/"):
            raise ValueError(f"route must start with '/', not end with '/' and not be '/', got {route!r}")
        return route


class ServeSpec(BaseModel):
    """What `taskray serve` starts: the HTTP listener and one application per task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Address the Serve proxy listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port the Serve proxy listens on.")
    applications: list[AppSpec] = Field(min_length=1, description="Task endpoints.")

    def to_serve_config(self) -> dict[str, Any]:
        """A standard Ray Serve config (ServeDeploySchema) with a /healthz application."""
        apps: list[dict[str, Any]] = [
            {
                "name": app.name,
                "route_prefix": app.route_prefix,
                "import_path": APP_IMPORT_PATH,
                "args": _plain_args(app.args, app.auth_token),
                "deployments": [
                    {"name": DEPLOYMENT_NAME, **app.deployment.to_serve(app.args.max_batch_size)}
                ],
            }
            for app in self.applications
        ]
        apps.append(health_application())
        return {"http_options": {"host": self.host, "port": self.port}, "applications": apps}


def health_application() -> dict[str, Any]:
    """The application answering GET /healthz for the whole Serve instance."""
    return {"name": HEALTH_APP_NAME, "route_prefix": "/", "import_path": HEALTH_IMPORT_PATH, "args": {}}


def token_digest(token: str) -> str:
    """The SHA-256 hex digest that stands for a bearer token in configs and replicas."""
    return hashlib.sha256(token.encode()).hexdigest()


def _plain_args(args: EndpointArgs, token: SecretStr | None) -> dict[str, Any]:
    plain = args.model_dump(exclude_defaults=True)
    if token is not None:
        plain["auth_token_sha256"] = token_digest(token.get_secret_value())
    return plain


def digest_auth_tokens(config: dict[str, Any]) -> dict[str, Any]:
    """Replace each taskray application's `auth_token` arg by `auth_token_sha256`, in place,
    before the config reaches Serve (which logs application args)."""
    for app in taskray_applications(config):
        args = app.get("args") or {}
        token = args.pop("auth_token", None)
        if token is not None:
            if not isinstance(token, str) or not token:
                raise ValueError(f"application {app.get('name')!r}: auth_token must be a non-empty string")
            args["auth_token_sha256"] = token_digest(token)
    return config


def taskray_applications(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The applications of a Serve config that run taskray endpoints."""
    return [a for a in config.get("applications", []) if a.get("import_path") == APP_IMPORT_PATH]


def validate_serve_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check a Serve config as Ray does, plus each taskray application's args; errors name
    the application. Returns the config unchanged."""
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(config)
    for app in taskray_applications(config):
        try:
            EndpointArgs.model_validate(app.get("args") or {})
        except ValueError as e:
            raise ValueError(f"application {app.get('name')!r}: invalid args: {e}") from e
    return config
