"""The OpenAI embeddings API: POST {route}/embeddings on a feature-extraction endpoint, and
POST /v1/embeddings + GET /v1/models on the root (health) application, which forwards each
request to the feature-extraction application its `model` names. So both base URLs work
with the `openai` package unchanged:

    OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="<token or any>")
        .embeddings.create(model="<served model id or application name>", input=["a", "b"])
    OpenAI(base_url="http://127.0.0.1:8000/v1/feature-extraction", ...)   # any model name

Requests and answers follow https://platform.openai.com/docs/api-reference/embeddings;
errors carry OpenAI's `{"error": {"message", "type", "param", "code"}}` body.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.serve.codec import RequestError, json_type, shorten_embedding


class EmbeddingsRequest(BaseModel):
    """The JSON body of POST {route}/embeddings."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[str] = Field(
        description="A text or a list of texts. Token-id arrays, which OpenAI also takes, are refused: "
        "the endpoint tokenizes with its own model's tokenizer."
    )
    model: str = Field(description="Any name: the endpoint serves one model and answers with its id.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: lists of numbers; base64: little-endian float32 bytes, as the openai client asks."
    )
    dimensions: int | None = Field(
        None, ge=1, description="Keep the first n values of each embedding, normalized again when the model normalizes."
    )
    user: str | None = Field(None, description="OpenAI's end-user id; accepted and ignored.")


class OpenAIError(RequestError):
    """A RequestError answered with OpenAI's error body; `param` names the field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: Mapping[str, str] | None = None):
        super().__init__(status, message, headers)
        self.param = param
        self.code = code

    @classmethod
    def from_request_error(cls, error: RequestError) -> "OpenAIError":
        """The same refusal in OpenAI's terms: 400 for any invalid request (taskray's 422s),
        and `param` read from the field the message starts with ("input[2]: ..." -> input)."""
        if isinstance(error, OpenAIError):
            return error
        field = error.message.split(":")[0].split("[")[0].split(".")[0]
        status = 400 if error.status == 422 else error.status
        return cls(status, error.message, field if " " not in field else None, headers=error.headers)

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def load_json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise OpenAIError(400, f"malformed JSON: {e}") from None


def parse_embeddings_request(payload: Any, max_inputs: int) -> EmbeddingsRequest:
    """The request, or an OpenAIError (400, as OpenAI answers invalid requests) naming the field."""
    if not isinstance(payload, dict):
        raise OpenAIError(400, f"body: expected a JSON object, got {json_type(payload)}")
    token_ids = payload.get("input")
    if isinstance(token_ids, list) and token_ids and not all(isinstance(t, str) for t in token_ids):
        raise OpenAIError(400, "input: expected a string or a list of strings (token-id arrays are not accepted)", "input")
    try:
        request = EmbeddingsRequest.model_validate(payload)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not str(p).startswith(("str", "list[")))
        raise OpenAIError(400, f"{where}: {first['msg']}", where.split(".")[0] or None) from None
    texts = [request.input] if isinstance(request.input, str) else request.input
    if not texts:
        raise OpenAIError(400, "input: empty list", "input")
    if len(texts) > max_inputs:
        raise OpenAIError(400, f"input: at most {max_inputs} inputs per request, got {len(texts)}", "input")
    return request


def embeddings_response(
    request: EmbeddingsRequest,
    vectors: Sequence[Sequence[float]],
    prompt_tokens: int,
    model: str,
    normalized: bool,
) -> dict[str, Any]:
    data = []
    for i, vector in enumerate(vectors):
        values = shorten_embedding(vector, request.dimensions, normalized)
        if request.encoding_format == "base64":
            encoded: Any = base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")
        else:
            encoded = values
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


# ------------------------------------------------------------------ POST /v1/embeddings (root)


@dataclass(frozen=True)
class EmbeddingEndpoint:
    """A served feature-extraction application, as the root application routes to it."""

    app: str
    model: str
    max_body_bytes: int
    auth_token_sha256: str | None
    retry_after_s: float
    created: int  # when the application was deployed (Unix seconds): OpenAI's `created`

    def named(self, model: str) -> bool:
        return model in (self.app, self.model)


def no_endpoint_error() -> OpenAIError:
    return OpenAIError(404, "no feature-extraction endpoint is served here", "model", "model_not_found")


def choose_endpoint(model: str, endpoints: Sequence[EmbeddingEndpoint]) -> EmbeddingEndpoint:
    """The endpoint a request's `model` names: an application name first (always unique),
    else the model id one application serves. 404 (OpenAI's model_not_found) lists the
    served models when none matches."""
    if not endpoints:
        raise no_endpoint_error()
    by_app = [e for e in endpoints if e.app == model]
    if by_app:
        return by_app[0]
    by_model = [e for e in endpoints if e.model == model]
    if len(by_model) > 1:
        apps = ", ".join(sorted(e.app for e in by_model))
        raise OpenAIError(400, f"model: {model!r} is served by applications {apps}; name one of them", "model")
    if by_model:
        return by_model[0]
    available = ", ".join(sorted({repr(e.model) for e in endpoints} | {repr(e.app) for e in endpoints}))
    raise OpenAIError(
        404, f"model: {model!r} is not served here; available: {available}", "model", "model_not_found"
    )


def models_response(endpoints: Sequence[EmbeddingEndpoint]) -> dict[str, Any]:
    """GET /v1/models: one entry per feature-extraction application; `application` (not in
    OpenAI's schema, which clients keep as an extra field) is the name that always selects it."""
    data = [
        {"id": e.model, "object": "model", "created": e.created, "owned_by": "taskray", "application": e.app}
        for e in sorted(endpoints, key=lambda e: e.app)
    ]
    return {"object": "list", "data": data}
