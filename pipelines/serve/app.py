"""The Serve application: one FastAPI ingress deployment per task, holding one operator.

Requests are parsed and checked in the ingress handler (status codes below), then gathered
by `@serve.batch` so that concurrent requests share one operator call. Inference runs on a
single worker thread, so the event loop keeps parsing requests while a batch runs.

    POST {route}          {"inputs": ..., "parameters": {...}} or a raw image/* | audio/* body
                          (a body without a media type is sniffed, as the HF Inference API does)
    POST {route}/embeddings   OpenAI's embeddings API (feature-extraction endpoints)
    GET  {route}/info     task, model, labels, input roles, parameters, batching, the model
                          replica's torch threads and why (pipelines/hardware.py)
    GET  {route}/stats    batch sizes this replica has seen
    GET  {route}/healthz  this endpoint's readiness;  GET /healthz (health app): all endpoints
    POST /v1/embeddings, GET /v1/models (health app): OpenAI's API for the feature-extraction
                          application the request's `model` names, forwarded to it by handle
    POST /v1/audio/transcriptions (health app): OpenAI's transcriptions API (a multipart file
                          upload) for the automatic-speech-recognition application `model` names

400 malformed JSON, 401 missing/wrong token, 411 chunked body (Serve's proxy drops it),
413 body too large, 415 content type,
422 bad field / undecodable media / bad parameter, 503 (or 429) + Retry-After from Serve's
backpressure when the queue is full.
"""

# No `from __future__ import annotations`: FastAPI must see the real `Request` annotation
# on the class-based routes that Serve builds.
import asyncio
import hashlib
import hmac
import json
import logging
import math
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve

from operators import get_operator
from operators.runtime import OperatorRunner, build_operator
from operators.base import MEDIA_ROLES
from operators.errors import error_kind
from pipelines.hardware import ReplicaThreads, machine_cores, pick_replica_threads
from pipelines.serve.codec import (
    EMBEDDING_ROOT_FIELDS,
    UNTYPED_CONTENT_TYPES,
    RequestError,
    check_untyped_body,
    decode_inputs,
    embedding_root_options,
    json_type,
    shape_results,
    shorten_embedding,
    unused_generation_parameters,
)
from pipelines.serve.config import (
    DEPLOYMENT_NAME,
    MODEL_DEPLOYMENT_NAME,
    TOKEN_ENV,
    DeploymentOptions,
    EndpointArgs,
    token_digest,
)
from pipelines.serve.openai_api import (
    EmbeddingEndpoint,
    OpenAIEndpoint,
    OpenAIError,
    TranscriptionEndpoint,
    choose_endpoint,
    embeddings_response,
    load_json_body,
    models_response,
    no_endpoint_error,
    parse_embeddings_request,
    parse_transcription_upload,
    transcription_error,
    transcription_response,
    transcription_result,
)

logger = logging.getLogger("ray.serve")

# Row errors from these stages are the input's fault (422); forward/postprocess are ours.
CLIENT_ERROR_STAGES = ("input", "decode", "preprocess")
OPEN_PATHS = ("/healthz",)


class InferenceRequest(BaseModel):
    """The JSON body of POST {route} (Hugging Face inference convention)."""

    model_config = ConfigDict(extra="forbid")

    inputs: Any = Field(
        description="One input or a list of inputs: a string (text tasks), "
        '{"question": str, "context": str} (question-answering), or base64 / data-URL '
        "bytes (image and audio tasks). A list gives a list of results."
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Task options for this request, e.g. {\"top_k\": 3}. See GET {route}/info."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Hugging Face client options (wait_for_model, use_cache); accepted and ignored."
    )
    stream: bool = Field(
        False, description="text-generation-inference's streaming flag; only false (one JSON answer) is served."
    )


REQUEST_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": InferenceRequest.model_json_schema()},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "audio/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}

ingress = FastAPI(
    title="taskray",
    description="Hugging Face transformers task models served by Ray Serve. "
    "Responses have the shape transformers.pipeline returns.",
)


@ingress.exception_handler(RequestError)
async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
    body = exc.body() if isinstance(exc, OpenAIError) else {"error": exc.message}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


@ingress.middleware("http")
async def _route_and_authorize(request: Request, call_next):
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if root and path == root:
        # POST {route} without a trailing slash: FastAPI would answer 307 to {route}/, which
        # curl and many clients do not follow for a POST. Route it to "/" directly.
        request.scope["path"] = root + "/"
        path = request.scope["path"]
    relative = path[len(root):] if root and path.startswith(root) else path
    # The token's digest lives on the app state of this replica's process (one replica per
    # process).
    expected: str | None = getattr(request.app.state, "auth_token_sha256", None)
    if relative not in OPEN_PATHS and not bearer_token_matches(request.headers.get("authorization", ""), expected):
        return unauthorized()
    return await call_next(request)


def bearer_token_matches(authorization: str, expected: str | None) -> bool:
    """Whether an Authorization header carries the token of digest `expected` (None: no token
    required). Digests have a fixed length, and compare_digest takes the same time for any
    guess, so a timing probe learns nothing."""
    if not expected:
        return True
    scheme, _, given = authorization.partition(" ")
    digest = hashlib.sha256(given.strip().encode()).hexdigest()
    return scheme.lower() == "bearer" and bool(given) and hmac.compare_digest(digest, expected)


def unauthorized() -> JSONResponse:
    return JSONResponse(
        {"error": "missing or invalid bearer token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


def _first_validation_error(error: ValidationError, prefix: str = "") -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in (prefix, *first["loc"]) if p != "")
    got = f", got {json_type(first['input'])}" if first["type"].endswith("_type") else ""
    return f"{where}: {first['msg']}{got}"


def _raise_for_row_errors(errors: list[str | None], fields: list[str]) -> None:
    for error, where in zip(errors, fields):
        if error is not None and error_kind(error) in CLIENT_ERROR_STAGES:
            raise RequestError(422, f"{where}: {error}")
    for error, where in zip(errors, fields):
        if error is not None:
            raise RuntimeError(f"inference failed for {where}: {error}")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes: by the declared Content-Length
    before reading, and by counting what arrives (a chunked body declares no size)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, f"invalid Content-Length {declared!r}")
        if int(declared) > limit:
            raise RequestError(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    if not size and declared is None and "chunked" in request.headers.get("transfer-encoding", "").lower():
        # Ray Serve 2.60's HTTP proxy forwards a chunked request with an empty body; say so
        # rather than report the JSON as malformed.
        raise RequestError(411, "chunked request bodies do not reach the endpoint; send Content-Length")
    return b"".join(chunks)


@dataclass
class Job:
    """One request's rows on their way through a batch."""

    columns: dict[str, list]
    parameters: dict[str, Any]

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values())))


@dataclass
class BatchStats:
    requests: int = 0
    rows: int = 0
    batch_sizes: Counter = field(default_factory=Counter)

    def record(self, jobs: list[Job]) -> None:
        self.requests += len(jobs)
        self.rows += sum(j.rows for j in jobs)
        self.batch_sizes[len(jobs)] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "rows": self.rows,
            "batches": sum(self.batch_sizes.values()),
            "max_batch_size_seen": max(self.batch_sizes, default=0),
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
        }


# Defined before the deployments that call them: Serve pickles a deployment's class when the
# decorator runs, with the module globals that exist at that point.
def endpoint_operator(args: EndpointArgs):
    """The endpoint's operator, nothing loaded: its options start from the operator's
    endpoint_defaults (the HF Inference API's), then the endpoint's own."""
    return build_operator(args, get_operator(args.task).endpoint_defaults)


def replica_threads(args: EndpointArgs, resources: dict[str, float] | None = None) -> ReplicaThreads:
    """The torch threads of this model replica (pipelines/hardware.py pick_replica_threads), from
    the CPUs and GPUs Ray reserved for it (`resources`; None: this replica's own). Read here, not
    where the app is built: under `serve run`/`serve deploy` Serve's controller applies the
    config's deployments entries after build_app, so only the replica knows its resources."""
    if resources is None:
        import ray

        resources = ray.get_runtime_context().get_assigned_resources()
    return pick_replica_threads(
        args.task, resources.get("CPU", 0.0), resources.get("GPU", 0.0), device=args.device,
        torch_threads=args.torch_threads, cores=machine_cores(),
    )


def endpoint_runner(args: EndpointArgs, threads: ReplicaThreads | None = None) -> OperatorRunner:
    """The endpoint's operator with its weights, as every serving process holds one
    (operators/runtime.py); one call at a time (the replica's single inference thread), on the
    replica's picked torch `threads` (None, outside a replica: args.torch_threads, else the
    process's own count)."""
    if threads is not None:
        logger.info("%s: %s", args.task, "; ".join(threads.why))
    torch_threads = args.torch_threads if threads is None else threads.torch_threads
    return OperatorRunner(endpoint_operator(args), torch_threads=torch_threads)


def refuse_gpus_on_the_ingress(args: EndpointArgs) -> None:
    """An isolated endpoint's ingress holds no weights: a GPU given to it is one the model
    replicas lack, and they would run on the CPU. `taskray serve` gives a TaskEndpoint entry's
    resources to the model; `serve run`/`serve deploy` apply the entry to the ingress itself."""
    import ray

    if ray.get_gpu_ids():
        raise ValueError(
            f"{args.task}: the TaskEndpoint ingress was given GPUs {ray.get_gpu_ids()}, but with isolate_model "
            f"(the default) the model runs in the {MODEL_DEPLOYMENT_NAME} deployment: under `serve run`/`serve deploy` "
            f"put ray_actor_options and autoscaling in a deployments entry named {MODEL_DEPLOYMENT_NAME} "
            "(`taskray serve` maps a TaskEndpoint entry itself), or set isolate_model: false"
        )


def run_jobs(runner: OperatorRunner, jobs: list[Job]) -> list[dict[str, list] | BaseException]:
    """Run a batch: one operator call per distinct `parameters`, split back per request."""
    results: list[dict[str, list] | BaseException | None] = [None] * len(jobs)
    groups: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(json.dumps(job.parameters, sort_keys=True), []).append(i)
    for members in groups.values():
        try:
            columns = {r: [v for i in members for v in jobs[i].columns[r]] for r in runner.op.input_roles}
            out = runner(columns, **jobs[members[0]].parameters)
        except Exception as e:  # a failed call fails its own requests, never the replica
            logger.exception("operator call failed for %d requests", len(members))
            for i in members:
                results[i] = RuntimeError(f"inference failed: {e}")
            continue
        start = 0
        for i in members:
            stop = start + jobs[i].rows
            results[i] = {c: v[start:stop] for c, v in out.items()}
            start = stop
    return results  # type: ignore[return-value]


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress(ingress)
class TaskEndpoint:
    def __init__(self, args: dict[str, Any], model: Any = None, retry_after_s: float = 1.0):
        """`model`: a handle to the endpoint's TaskModel deployment (`isolate_model`); the
        operator here then parses and checks requests only and never loads weights."""
        self.args = EndpointArgs.model_validate(args)
        self.model = model
        self.retry_after_s = retry_after_s
        if model is not None:
            refuse_gpus_on_the_ingress(self.args)
        if model is None:
            self.threads: ReplicaThreads | None = replica_threads(self.args)
            self.runner: OperatorRunner | None = endpoint_runner(self.args, self.threads)
            self.op = self.runner.op
        else:
            # No weights, but the configuration checked: with_options() then checks every
            # request's options against the checkpoint here, where a bad one is its 422.
            self.threads = None  # the model replica's, asked for by GET /info
            self.runner = None
            self.op = endpoint_operator(self.args).checked()
        self.infer_batch.set_max_batch_size(self.args.max_batch_size)
        self.infer_batch.set_batch_wait_timeout_s(self.args.batch_wait_timeout_s)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskray-infer")
        self.stats = BatchStats()
        env_token = os.environ.get(TOKEN_ENV)
        digest = self.args.auth_token_sha256 or (token_digest(env_token) if env_token else None)
        ingress.state.auth_token_sha256 = digest
        logger.info(
            "serving %s with %s (batch %d, wait %.3fs, auth %s)",
            self.args.task, self.args.model, self.args.max_batch_size,
            self.args.batch_wait_timeout_s, "on" if digest else "off",
        )

    # -------------------------------------------------------------- routes

    @ingress.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @ingress.get("/info")
    async def info(self) -> dict[str, Any]:
        schema = self.op.Options.model_json_schema()
        # Defaults as this endpoint applies them (the operator's endpoint_defaults, the endpoint's options).
        current = self.op.options.model_dump(mode="json")
        parameters = {
            name: {**prop, "default": current[name]}
            for name, prop in schema.get("properties", {}).items()
            if name not in self.op.Options.with_role("server", "model")
        }
        return {
            **type(self.op).describe(),
            "model": self.args.model,
            "labels": self.op.labels(),
            "parameters": parameters,
            "max_batch_size": self.args.max_batch_size,
            "batch_wait_timeout_s": self.args.batch_wait_timeout_s,
            **await self._threads_info(),
        }

    async def _threads_info(self) -> dict[str, Any]:
        """The model replica's torch threads and why: this replica's own, or (isolate_model) a
        TaskModel replica's, asked once (its replicas share one deployment's resources)."""
        if self.threads is None:
            from ray.exceptions import RayActorError
            from ray.serve.exceptions import BackPressureError

            try:
                self.threads = await self.model.picked_threads.remote()
            except (RayActorError, BackPressureError):  # the model replica is restarting: ask again next time
                return {"torch_threads": None, "torch_threads_why": []}
        return {"torch_threads": self.threads.torch_threads, "torch_threads_why": list(self.threads.why)}

    @ingress.get("/stats")
    async def stats(self) -> dict[str, Any]:
        """Counters of this replica (each replica keeps its own)."""
        return self.stats.as_dict()

    @ingress.post("/", openapi_extra=REQUEST_BODY_DOC)
    async def predict(self, request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        roles = self.op.input_roles
        medium = roles[0] if len(roles) == 1 and roles[0] in MEDIA_ROLES else None
        # A raw body is one input of a task whose only role is a medium: declared as that
        # medium (image/*, audio/*), or undeclared and recognised by its bytes.
        untyped = content_type in UNTYPED_CONTENT_TYPES
        raw = medium is not None and (content_type.split("/")[0] == medium or untyped)
        if content_type != "application/json" and not raw:
            accepted = ["application/json", *(f"{r}/*" for r in roles if r in MEDIA_ROLES)]
            raise RequestError(
                415, f"unsupported Content-Type {content_type or '(none)'!r}; expected {' or '.join(accepted)}"
            )
        body = await read_body(request, self.args.max_body_bytes)
        dimensions = None
        if raw:
            if not body:
                raise RequestError(422, "body: empty")
            if untyped:
                check_untyped_body(body, medium, content_type)
            decoded_columns, fields, is_list, parameters = {medium: [body]}, ["body"], False, {}
        else:
            inputs, parameters, dimensions = self._parse_json(body)
            decoded = decode_inputs(roles, inputs, self.args.max_inputs)
            decoded_columns, fields, is_list = decoded.columns, decoded.fields, decoded.is_list
        parameters = self._check_parameters(parameters)
        result = await self._infer(decoded_columns, parameters, fields)
        if dimensions is not None:
            normalized = self.op.with_options(**parameters).normalize
            result["embedding"] = [shorten_embedding(v, dimensions, normalized) for v in result["embedding"]]
        answer = shape_results(self.op.response_shape(), self.op.output_columns, result, is_list)
        return JSONResponse(answer)

    @ingress.post("/embeddings")
    async def embeddings(self, request: Request) -> JSONResponse:
        """OpenAI's embeddings API (pipelines/serve/openai_api.py), on feature-extraction endpoints."""
        if self.op.task != "feature-extraction":
            raise OpenAIError(
                404, f"POST {{route}}/embeddings is served by feature-extraction endpoints; this one serves {self.op.task}"
            )
        try:
            body = await read_body(request, self.args.max_body_bytes)
        except RequestError as e:
            raise OpenAIError.from_request_error(e) from None
        return JSONResponse(await self._openai_embeddings(load_json_body(body)))

    async def _openai_embeddings(self, payload: Any) -> dict[str, Any]:
        """The answer to an embeddings request's decoded JSON body (read and authorized by the caller)."""
        try:
            embedding_request = parse_embeddings_request(payload, self.args.max_inputs)
            texts = [embedding_request.input] if isinstance(embedding_request.input, str) else embedding_request.input
            fields = [f"input[{i}]" for i in range(len(texts))]
            result = await self._infer({"text": texts}, {}, fields)
            loop = asyncio.get_running_loop()
            # On the inference thread: the tokenizer is not safe to call from two threads at once.
            tokens = await loop.run_in_executor(self.executor, self._count_tokens, texts)
            return embeddings_response(
                embedding_request, result["embedding"], tokens, self.args.model, self.op.normalize
            )
        except RequestError as e:
            raise OpenAIError.from_request_error(e) from None

    # -------------------------------------------------------------- handle methods (root app)

    def embedding_endpoint(self) -> dict[str, Any] | None:
        """What the root application needs to route POST /v1/embeddings here (None: not a
        feature-extraction endpoint): the model, the body limit, and the token digest this
        replica checks."""
        return self._root_route("feature-extraction")

    async def forwarded_embeddings(self, payload: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        """POST /v1/embeddings forwarded by the root application, which checked the token and
        body size as this endpoint's routes do. Through `infer_batch`, so these requests share
        batches with the endpoint's own. Errors come back as (status, OpenAI body, headers):
        the root answers them as they are."""
        try:
            return 200, await self._openai_embeddings(payload), {}
        except OpenAIError as e:
            return e.status, e.body(), e.headers

    def transcription_endpoint(self) -> dict[str, Any] | None:
        """What the root application needs to route POST /v1/audio/transcriptions here (None:
        not an automatic-speech-recognition endpoint), as `embedding_endpoint` tells it."""
        return self._root_route("automatic-speech-recognition")

    def _root_route(self, task: str) -> dict[str, Any] | None:
        if self.op.task != task:
            return None
        return {
            "model": self.args.model,
            "max_body_bytes": self.args.max_body_bytes,
            "auth_token_sha256": ingress.state.auth_token_sha256,
            "retry_after_s": self.retry_after_s,
        }

    async def forwarded_transcription(
        self, audio: bytes, parameters: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """An upload of POST /v1/audio/transcriptions, forwarded by the root application
        (token and body size checked there): the file's bytes as a raw audio body of
        POST {route} would arrive, through the same parameter checks and `infer_batch`.
        Errors come back as (status, OpenAI body, headers)."""
        try:
            parameters = self._check_parameters(parameters)
            op = self.op.with_options(**parameters)
            result = await self._infer({"audio": [audio]}, parameters, ["file"])
            answer = transcription_result(op, audio, result["text"][0], result["chunks"][0])
            return 200, answer, {}
        except RequestError as e:
            error = transcription_error(e)
            return error.status, error.body(), error.headers

    async def _infer(self, columns: dict[str, list], parameters: dict[str, Any], fields: list[str]) -> dict[str, list]:
        """The operator's result columns for one request's rows, through the batcher; 422
        naming the input for a row the client must fix."""
        result = await self.infer_batch(Job(columns, parameters))
        if isinstance(result, BaseException):
            raise result
        _raise_for_row_errors(result["error"], fields)
        return result

    def _count_tokens(self, texts: list[str]) -> int:
        """Tokens the model reads for these texts (prompt included, truncated as the endpoint truncates)."""
        features = self.op.preprocess({"text": texts})["features"]
        return sum(len(f["input_ids"]) for f in features if f is not None)

    # -------------------------------------------------------------- batching

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)  # reset from args in __init__
    async def infer_batch(self, jobs: list[Job]) -> list[dict[str, list] | BaseException]:
        self.stats.record(jobs)
        if self.model is not None:
            return await self._run_on_model(jobs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._run_jobs, jobs)

    async def _run_on_model(self, jobs: list[Job]) -> list[dict[str, list] | BaseException]:
        """The batch on the TaskModel deployment. A model replica that dies with the batch
        (OOM kill, segfault, node loss) fails these requests with 503 + Retry-After: Serve
        restarts the replica, and the client may retry. Without this ingress Serve's proxy
        answers such requests 500 (ray-project/ray#47219)."""
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError

        try:
            return await self.model.run_jobs.remote(jobs)
        except (RayActorError, BackPressureError) as e:  # ActorDiedError, ActorUnavailableError
            logger.warning("model replica unavailable for %d requests: %s", len(jobs), type(e).__name__)
            retry_after = {"Retry-After": str(math.ceil(self.retry_after_s))}
            return [
                RequestError(503, "the model replica stopped while serving this request; retry", headers=retry_after)
                for _ in jobs
            ]

    def _run_jobs(self, jobs: list[Job]) -> list[dict[str, list] | BaseException]:
        return run_jobs(self.runner, jobs)

    # -------------------------------------------------------------- request checks

    def _parse_json(self, body: bytes) -> tuple[Any, dict[str, Any], int | None]:
        """inputs, parameters, and (feature-extraction) the embedding `dimensions` asked for."""
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(400, f"malformed JSON: {e}") from None
        if not isinstance(payload, dict):
            raise RequestError(422, f"body: expected a JSON object with \"inputs\", got {json_type(payload)}")
        root = None
        if self.op.task == "feature-extraction":
            root = embedding_root_options({k: payload.pop(k) for k in EMBEDDING_ROOT_FIELDS if k in payload})
        try:
            parsed = InferenceRequest.model_validate(payload)
        except ValidationError as e:
            raise RequestError(422, _first_validation_error(e)) from None
        if parsed.stream:
            raise RequestError(422, "stream: streaming is not served; send stream=false (or leave it out)")
        if root is None:
            return parsed.inputs, parsed.parameters, None
        return parsed.inputs, {**parsed.parameters, **root.parameters}, root.dimensions

    def _check_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        # Options that bound the server's work or built the model: the endpoint's, never a request's.
        owned = sorted(set(parameters) & self.op.Options.with_role("server", "model"))
        if owned:
            raise RequestError(422, f"parameters.{owned[0]}: set by the server, not per request")
        unknown = sorted(set(parameters) - set(self.op.Options.model_fields))
        if unknown and self.op.task == "text-generation":
            raise unused_generation_parameters(unknown)
        try:
            self.op.with_options(**parameters)
        except ValidationError as e:
            raise RequestError(422, _first_validation_error(e, prefix="parameters")) from None
        return parameters


@serve.deployment(name=MODEL_DEPLOYMENT_NAME)
class TaskModel:
    """The operator with its weights, in a deployment of its own behind the TaskEndpoint
    ingress (`isolate_model`). The ingress gathers batches; this runs them one at a time."""

    def __init__(self, args: dict[str, Any]):
        self.args = EndpointArgs.model_validate(args)
        self.threads = replica_threads(self.args)
        self.runner = endpoint_runner(self.args, self.threads)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskray-infer")

    async def run_jobs(self, jobs: list[Job]) -> list[dict[str, list] | BaseException]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, run_jobs, self.runner, jobs)

    async def picked_threads(self) -> ReplicaThreads:
        """This replica's torch threads and why (the ingress's GET /info)."""
        return self.threads


def endpoint_options(args: EndpointArgs, override: dict[str, Any] | None = None) -> dict[str, Any]:
    """Deployment options: defaults that follow the batch size, then a Serve-config
    `deployments:` entry on top, key by key as Serve applies it."""
    options = DeploymentOptions().to_serve(args.max_batch_size)
    override = {k: v for k, v in (override or {}).items() if k != "name"}
    if "num_replicas" in override:
        options.pop("autoscaling_config")  # a fixed replica count replaces autoscaling
    return {**options, **override}


def build_app(args: dict[str, Any]) -> serve.Application:
    """Application builder for `import_path: pipelines.serve.app:build_app`.

    Serve's controller applies the config's `deployments:` entry (named TaskEndpoint) on
    top of these options itself.
    """
    return build_endpoint(args)


def build_endpoint(
    args: dict[str, Any], override: dict[str, Any] | None = None, model_override: dict[str, Any] | None = None
) -> serve.Application:
    """`override`: a config's TaskEndpoint entry (the replicas' resources and limits, mapped
    to the model and the ingress below); `model_override`: a TaskModel entry, applied last."""
    endpoint = EndpointArgs.model_validate(args)
    options = endpoint_options(endpoint, override)
    if not endpoint.isolate_model:
        if model_override:
            raise ValueError(f"a {MODEL_DEPLOYMENT_NAME} deployments entry needs isolate_model (the default); this endpoint sets it false")
        return TaskEndpoint.options(**options).bind(dict(args))
    # The model deployment takes the replicas' resources and scales with batches in flight
    # (one per replica at a time, as the single inference thread runs them); the ingress
    # keeps the request limits and backpressure, and reserves no CPU or GPU.
    model_options = {k: v for k, v in options.items() if k not in ("max_queued_requests", "backpressure_config")}
    model_options.update(max_ongoing_requests=1, max_queued_requests=-1)
    if "autoscaling_config" in model_options:
        model_options["autoscaling_config"] = {**model_options["autoscaling_config"], "target_ongoing_requests": 1.0}
    model_options.update({k: v for k, v in (model_override or {}).items() if k != "name"})
    model = TaskModel.options(**model_options).bind(dict(args))
    ingress_options = {**options, "ray_actor_options": {"num_cpus": 0}}
    retry_after_s = (options.get("backpressure_config") or {}).get("retry_after_s", 1.0)
    return TaskEndpoint.options(**ingress_options).bind(dict(args), model, retry_after_s)


# ------------------------------------------------------------------ the root application
# GET /healthz for the whole instance, and OpenAI's POST /v1/embeddings + GET /v1/models
# forwarded to the feature-extraction applications. At route prefix "/", it receives every
# path no endpoint's longer prefix claims.


health_ingress = FastAPI(title="taskray health", docs_url=None, redoc_url=None, openapi_url=None)
health_ingress.add_exception_handler(RequestError, _request_error)

# serve.status() is a controller round trip; the root re-reads the applications at most this
# often, and at once for a model it does not know (e.g. an application deployed just now).
DIRECTORY_TTL_S = 2.0


class EmbeddingDirectory:
    """The feature-extraction applications of this Serve instance, with handles to their
    TaskEndpoint ingress deployments (what `embedding_endpoint` told, per deployment of each);
    or, with `describe` "transcription_endpoint", its automatic-speech-recognition ones."""

    def __init__(self, own_app: str, describe: str = "embedding_endpoint", kind: type = EmbeddingEndpoint):
        self.own_app = own_app
        self.describe = describe
        self.kind = kind
        self.lock = asyncio.Lock()
        self.read_at = -math.inf
        self.endpoints: list[EmbeddingEndpoint] = []
        self.handles: dict[str, Any] = {}
        self.described: dict[tuple[str, float], EmbeddingEndpoint | None] = {}

    async def list(self, refresh: bool = False) -> list[EmbeddingEndpoint]:
        async with self.lock:
            if refresh or time.monotonic() - self.read_at > DIRECTORY_TTL_S:
                await self._read()
        return self.endpoints

    async def _read(self) -> None:
        status = await asyncio.to_thread(serve.status)
        endpoints, described = [], {}
        for name, app in status.applications.items():
            running = str(getattr(app.status, "value", app.status)) == "RUNNING"
            if name == self.own_app or not running or DEPLOYMENT_NAME not in app.deployments:
                continue
            key = (name, app.last_deployed_time_s)
            if key not in self.described:
                try:
                    handle = await asyncio.to_thread(serve.get_app_handle, name)
                    info = await getattr(handle, self.describe).remote()
                except Exception:  # an application going away between the two calls
                    logger.warning("could not describe application %r", name, exc_info=True)
                    continue
                self.handles[name] = handle
                self.described[key] = info and self.kind(app=name, created=int(key[1]), **info)
            described[key] = self.described[key]
            if described[key] is not None:
                endpoints.append(described[key])
        self.described = described  # forget applications deleted or redeployed since
        self.endpoints = endpoints
        self.read_at = time.monotonic()


@serve.deployment(
    name="Health",
    num_replicas=1,
    ray_actor_options={"num_cpus": 0},
    # It only awaits the endpoints it forwards to, whose own limits (max_ongoing_requests,
    # max_queued_requests) bound the work; Serve's default of 5 would cap their batches at 5.
    max_ongoing_requests=1024,
)
@serve.ingress(health_ingress)
class Health:
    def __init__(self):
        self.directory = EmbeddingDirectory(serve.get_replica_context().app_name)
        self.transcribers = EmbeddingDirectory(
            serve.get_replica_context().app_name, "transcription_endpoint", TranscriptionEndpoint
        )

    @health_ingress.get("/healthz")
    def healthz(self) -> JSONResponse:
        """200 when every other application of this Serve instance is RUNNING, else 503."""
        own = serve.get_replica_context().app_name
        statuses = {
            name: str(getattr(app.status, "value", app.status))
            for name, app in serve.status().applications.items()
            if name != own
        }
        ready = all(s == "RUNNING" for s in statuses.values())
        return JSONResponse(
            {"status": "ok" if ready else "starting", "applications": statuses},
            status_code=200 if ready else 503,
        )

    @health_ingress.get("/v1/models")
    async def models(self, request: Request) -> JSONResponse:
        """The feature-extraction models the caller's token opens, in OpenAI's shape."""
        endpoints = await self.directory.list()
        opened = self._opened(request, endpoints)
        if endpoints and not opened:
            return unauthorized()
        return JSONResponse(models_response(opened))

    @health_ingress.post("/v1/embeddings")
    async def embeddings(self, request: Request) -> JSONResponse:
        """OpenAI's embeddings API for the feature-extraction application the `model` field
        names (its application name or model id), answered by that application: the same
        token, body limit, parsing and batches as its own POST {route}/embeddings."""
        read = await self._open_and_read(request, self.directory, "feature-extraction")
        if isinstance(read, Response):
            return read
        opened, body = read
        payload = load_json_body(body)
        model = parse_embeddings_request(payload, max_inputs=sys.maxsize).model  # the endpoint applies its own limit
        endpoint = await self._choose(request, self.directory, "feature-extraction", model, opened, len(body))
        if isinstance(endpoint, Response):
            return endpoint
        status, answer, headers = await self._forward(endpoint, payload)
        return JSONResponse(answer, status_code=status, headers=headers)

    @health_ingress.post("/v1/audio/transcriptions")
    async def transcriptions(self, request: Request) -> Response:
        """OpenAI's transcriptions API for the automatic-speech-recognition application the
        `model` field names, answered by that application with its token, body limit, audio
        parsing and batches (pipelines/serve/openai_api.py)."""
        task = "automatic-speech-recognition"
        read = await self._open_and_read(request, self.transcribers, task)
        if isinstance(read, Response):
            return read
        opened, body = read
        upload = await parse_transcription_upload(request.headers.get("content-type", ""), body)
        endpoint = await self._choose(request, self.transcribers, task, upload.request.model, opened, len(body))
        if isinstance(endpoint, Response):
            return endpoint
        status, answer, headers = await self._forward(
            endpoint, upload.audio, upload.request.operator_parameters(), directory=self.transcribers,
            method="forwarded_transcription",
        )
        if status != 200:
            return JSONResponse(answer, status_code=status, headers=headers)
        content, media_type = transcription_response(upload.request, answer)
        if media_type == "application/json":
            return JSONResponse(content)
        return Response(content, media_type=media_type)

    async def _forward(
        self, endpoint: OpenAIEndpoint, *payload: Any, directory: EmbeddingDirectory | None = None,
        method: str = "forwarded_embeddings",
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError

        directory = directory or self.directory
        try:
            return await getattr(directory.handles[endpoint.app], method).remote(*payload)
        except (RayActorError, BackPressureError) as e:
            # The endpoint's queue is full, or its replica stopped: as its own route answers.
            logger.warning("application %r unavailable: %s", endpoint.app, type(e).__name__)
            retry_after = {"Retry-After": str(math.ceil(endpoint.retry_after_s))}
            error = OpenAIError(503, f"{endpoint.app} is overloaded or restarting; retry", headers=retry_after)
        except Exception:
            logger.exception("%s failed in application %r", method, endpoint.app)
            error = OpenAIError(500, f"inference failed in application {endpoint.app!r}")
        return error.status, error.body(), error.headers

    async def _open_and_read(
        self, request: Request, directory: EmbeddingDirectory, task: str
    ) -> tuple[list[OpenAIEndpoint], bytes] | Response:
        """The endpoints of `task` the caller's token opens (401 when none) and the body, read
        within the largest of their limits."""
        endpoints = await directory.list()
        if not endpoints:
            raise no_endpoint_error(task)
        # Before reading the body: a caller whose token opens no endpoint sends nothing more.
        opened = self._opened(request, endpoints)
        if not opened:
            return unauthorized()
        try:
            return opened, await read_body(request, max(e.max_body_bytes for e in opened))
        except RequestError as e:
            raise OpenAIError.from_request_error(e) from None

    async def _choose(
        self, request: Request, directory: EmbeddingDirectory, task: str, model: str,
        opened: list[OpenAIEndpoint], body_bytes: int,
    ) -> OpenAIEndpoint | Response:
        """The opened endpoint `model` names, looking again once for applications deployed
        since (401 when the model is served only behind another token), within its body limit."""
        try:
            # Among the endpoints the token opens: two applications may serve one model with
            # different tokens, and the 404 lists only what the caller may use.
            endpoint = choose_endpoint(model, opened, task)
        except OpenAIError as e:
            if e.status != 404:
                raise
            endpoints = await directory.list(refresh=True)
            opened = self._opened(request, endpoints)
            if any(other.named(model) for other in endpoints if other not in opened):
                return unauthorized()
            endpoint = choose_endpoint(model, opened, task)
        if body_bytes > endpoint.max_body_bytes:
            raise OpenAIError(413, f"body of {body_bytes} bytes exceeds the limit of {endpoint.max_body_bytes} bytes")
        return endpoint

    @staticmethod
    def _opened(request: Request, endpoints: list[OpenAIEndpoint]) -> list[OpenAIEndpoint]:
        authorization = request.headers.get("authorization", "")
        return [e for e in endpoints if bearer_token_matches(authorization, e.auth_token_sha256)]


def build_health_app(args: dict[str, Any] | None = None) -> serve.Application:
    return Health.bind()
