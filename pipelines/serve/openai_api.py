"""The OpenAI embeddings API: POST {route}/embeddings on a feature-extraction endpoint, and
POST /v1/embeddings + GET /v1/models on the root (health) application, which forwards each
request to the feature-extraction application its `model` names. So both base URLs work
with the `openai` package unchanged:

    OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="<token or any>")
        .embeddings.create(model="<served model id or application name>", input=["a", "b"])
    OpenAI(base_url="http://127.0.0.1:8000/v1/feature-extraction", ...)   # any model name

Requests and answers follow https://platform.openai.com/docs/api-reference/embeddings;
errors carry OpenAI's `{"error": {"message", "type", "param", "code"}}` body.

The transcriptions API likewise: POST /v1/audio/transcriptions on the root application takes
OpenAI's multipart upload and forwards the file to the automatic-speech-recognition
application its `model` names (https://platform.openai.com/docs/api-reference/audio):

    OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="<token or any>")
        .audio.transcriptions.create(model="<model id or application name>", file=open("a.flac", "rb"))
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
class OpenAIEndpoint:
    """A served application, as the root application routes OpenAI's API to it."""

    app: str
    model: str
    max_body_bytes: int
    auth_token_sha256: str | None
    retry_after_s: float
    created: int  # when the application was deployed (Unix seconds): OpenAI's `created`

    def named(self, model: str) -> bool:
        return model in (self.app, self.model)


class EmbeddingEndpoint(OpenAIEndpoint):
    """A served feature-extraction application (POST /v1/embeddings)."""


class TranscriptionEndpoint(OpenAIEndpoint):
    """A served automatic-speech-recognition application (POST /v1/audio/transcriptions)."""


def no_endpoint_error(task: str = "feature-extraction") -> OpenAIError:
    return OpenAIError(404, f"no {task} endpoint is served here", "model", "model_not_found")


def choose_endpoint(model: str, endpoints: Sequence[OpenAIEndpoint], task: str = "feature-extraction") -> OpenAIEndpoint:
    """The endpoint a request's `model` names: an application name first (always unique),
    else the model id one application serves. 404 (OpenAI's model_not_found) lists the
    served models when none matches."""
    if not endpoints:
        raise no_endpoint_error(task)
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


# ------------------------------------------------------------------ POST /v1/audio/transcriptions (root)

# Formats whose answer is built from Whisper's segments (the operator's return_timestamps).
TIMED_FORMATS = ("srt", "vtt")


class TranscriptionRequest(BaseModel):
    """The form fields of POST /v1/audio/transcriptions, beside the `file` upload."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="The automatic-speech-recognition application's name, or the model id it serves.")
    response_format: Literal["json", "text", "verbose_json", "srt", "vtt"] = Field(
        "json",
        description="json: {text}; text: the text alone; verbose_json: text, language, duration and, with "
        "timestamp_granularities segment, segments; srt and vtt: subtitles from Whisper's segments.",
    )
    language: str | None = Field(
        None, description="The spoken language (ISO-639-1 code or name); Whisper's `language` option."
    )
    prompt: str | None = Field(
        None,
        description="Refused unless empty: the operator does not pass Whisper's prompt_ids, and a prompt "
        "ignored without a word would change nothing the caller can see.",
    )
    temperature: float | None = Field(
        None,
        description="Only 0 (or none): the endpoint decodes as transformers.pipeline does (greedy or the "
        "checkpoint's beam search), so its answer equals the offline transcription; sampling is not served.",
    )
    timestamp_granularities: list[Literal["segment", "word"]] = Field(
        default_factory=list,
        description="segment: Whisper's segment timestamps (verbose_json's `segments`). word is refused: the "
        "operator returns segment timestamps only.",
    )

    def operator_parameters(self) -> dict[str, Any]:
        """The ASR operator's per-request options this request asks for."""
        parameters: dict[str, Any] = {}
        if self.language is not None:
            parameters["language"] = self.language
        if self.wants_segments or self.response_format in TIMED_FORMATS:
            parameters["return_timestamps"] = True
        return parameters

    @property
    def wants_segments(self) -> bool:
        return "segment" in self.timestamp_granularities


@dataclass(frozen=True)
class TranscriptionUpload:
    request: TranscriptionRequest
    audio: bytes
    filename: str | None


async def parse_transcription_upload(content_type: str, body: bytes) -> TranscriptionUpload:
    """The form of a multipart/form-data body, already read within the body limit, or an
    OpenAIError (400) that names the field at fault."""
    from starlette.datastructures import Headers, UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    media = content_type.split(";")[0].strip().lower()
    if media != "multipart/form-data":
        raise OpenAIError(
            400, f"Content-Type: expected multipart/form-data (a file upload), got {media or '(none)'!r}"
        )

    async def stream():
        yield body

    try:
        form = await MultiPartParser(Headers({"content-type": content_type}), stream(), max_files=1).parse()
    except MultiPartException as e:
        raise OpenAIError(400, f"body: malformed multipart form: {e.message}") from None
    fields: dict[str, Any] = {}
    upload: UploadFile | None = None
    try:
        for name, value in form.multi_items():
            if name == "file":
                if not isinstance(value, UploadFile):
                    raise OpenAIError(400, "file: expected a file upload, got a text field", "file")
                upload = value
            elif name in ("timestamp_granularities[]", "timestamp_granularities"):
                fields.setdefault("timestamp_granularities", []).append(value)
            elif isinstance(value, UploadFile):
                raise OpenAIError(400, f"{name}: expected a text field, got a file upload", name)
            elif name in fields:
                raise OpenAIError(400, f"{name}: given more than once", name)
            else:
                fields[name] = value
        if upload is None:
            raise OpenAIError(400, "file: required: the audio file as a multipart upload", "file")
        audio = await upload.read()
        filename = upload.filename
    finally:
        await form.close()
    if not audio:
        raise OpenAIError(400, "file: empty upload", "file")
    if fields.get("stream") in ("true", "True", "1"):
        raise OpenAIError(400, "stream: streamed transcriptions are not served; leave stream out", "stream")
    fields.pop("stream", None)
    try:
        request = TranscriptionRequest.model_validate(fields)
    except ValidationError as e:
        first = e.errors()[0]
        where = str(first["loc"][0]) if first["loc"] else "body"
        extra = " (not an OpenAI transcription field taskray serves)" if first["type"] == "extra_forbidden" else ""
        raise OpenAIError(400, f"{where}: {first['msg']}{extra}", where) from None
    if request.temperature not in (None, 0):
        raise OpenAIError(
            400,
            f"temperature: only 0 is served, got {request.temperature}: the endpoint decodes as transformers.pipeline "
            "does (greedy or the checkpoint's beam search), so that its answer equals the offline transcription",
            "temperature",
        )
    if request.prompt:
        raise OpenAIError(
            400, "prompt: not served: the endpoint does not pass Whisper's prompt_ids to the model", "prompt"
        )
    if "word" in request.timestamp_granularities:
        raise OpenAIError(
            400, "timestamp_granularities: word timestamps are not served; ask for segment", "timestamp_granularities"
        )
    return TranscriptionUpload(request, audio, filename)


# The ASR operator's options a transcription request sets, by the form field that asked for
# them, and what a refusal of one says first.
TRANSCRIPTION_OPTION_FIELDS = {
    "return_timestamps": ("timestamp_granularities", "segment timestamps (and srt, vtt) need a Whisper model: "),
    "language": ("language", ""),
}


def transcription_error(error: RequestError) -> OpenAIError:
    """An ASR endpoint's refusal in the request's own terms: an operator option the request
    set is named by the form field that asked for it (OpenAI's 400 for taskray's 422)."""
    for option, (field, lead) in TRANSCRIPTION_OPTION_FIELDS.items():
        prefix = f"parameters.{option}: "
        if error.message.startswith(prefix):
            detail = error.message[len(prefix):].removeprefix("Value error, ")
            return OpenAIError(400 if error.status == 422 else error.status, f"{field}: {lead}{detail}", field)
    return OpenAIError.from_request_error(error)


def transcription_result(operator, audio: bytes, text: str, chunks: list[dict] | None) -> dict[str, Any]:
    """What an ASR endpoint returns to the root for one transcribed upload: the operator's
    text and segments, the clip's duration, and the language and task as OpenAI names them
    (the ones the request or the endpoint set; Whisper's per-clip detection is not returned
    by the operator, so a detected language is None)."""
    import io

    import soundfile

    try:
        duration = float(soundfile.info(io.BytesIO(audio)).duration)
    except Exception:  # a raw array or a format soundfile reads only by decoding: measure that
        from operators.decoding.audio import decode_audio

        duration = len(decode_audio(audio, operator.sampling_rate)) / operator.sampling_rate
    options = operator.options
    return {
        "text": text,
        "chunks": [{"start": c["timestamp"][0], "end": c["timestamp"][1], "text": c["text"]} for c in chunks or []]
        if chunks is not None else None,
        "duration": duration,
        "language": _language_name(getattr(options, "language", None)),
        "task": getattr(options, "task", None) or "transcribe",
    }


def _language_name(language: str | None) -> str | None:
    """OpenAI's spelling of a language (its lowercase English name, as Whisper's table has it)."""
    if language is None:
        return None
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    key = language.lower().strip("<|>")
    return LANGUAGES.get(key, key)


def transcription_response(request: TranscriptionRequest, result: Mapping[str, Any]) -> tuple[Any, str]:
    """(content, media type) of the answer in the request's response_format."""
    text = result["text"]
    fmt = request.response_format
    if fmt == "json":
        return {"text": text}, "application/json"
    if fmt == "text":
        return text, "text/plain"
    segments = _segments(result)
    if fmt == "verbose_json":
        body = {"task": result["task"], "language": result["language"], "duration": result["duration"], "text": text}
        if request.wants_segments:
            body["segments"] = segments
        return body, "application/json"
    cues = [s for s in segments if s["text"].strip()]  # an empty cue would end the file for a player
    if fmt == "srt":
        blocks = [
            f"{i}\n{_clock(s['start'], ',')} --> {_clock(s['end'], ',')}\n{s['text'].strip()}\n"
            for i, s in enumerate(cues, 1)
        ]
        return "\n".join(blocks), "text/plain"
    blocks = [f"{_clock(s['start'], '.')} --> {_clock(s['end'], '.')}\n{s['text'].strip()}\n" for s in cues]
    return "\n".join(["WEBVTT\n", *blocks]), "text/vtt"


def _segments(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """OpenAI's segments from the operator's chunks. A last segment that Whisper left open
    (end None, as the pipeline returns it) ends with the clip; an end before its start (a
    model that wrote its timestamps out of order) is raised to the start. OpenAI's decoder
    statistics (avg_logprob, no_speech_prob, ...) are not computed and are left out."""
    segments = []
    for i, chunk in enumerate(result.get("chunks") or []):
        start = float(chunk["start"] or 0.0)
        end = float(chunk["end"]) if chunk["end"] is not None else float(result["duration"])
        segments.append({"id": i, "start": start, "end": max(start, end), "text": chunk["text"]})
    return segments


def _clock(seconds: float, separator: str) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"
