"""Request decoding and response shaping for the Serve endpoints.

Requests follow the Hugging Face inference convention: `inputs` is one input or a list of
inputs. One input is a string for a single-role text task, an object keyed by role for
multi-role tasks (`{"question", "context"}`), and base64 (or a data URL) for image and audio
roles. Responses are shaped as `transformers.pipeline` returns them, from the operator's
result columns; bytes (PNG masks, depth maps) become base64 strings.

Where the Hugging Face Inference API (and so `huggingface_hub.InferenceClient`) differs from
pipeline(), the API wins and the difference is named where it is made: raw bodies without a
media type are sniffed (`sniff_media`), a single text-classification answer is wrapped in a
list (the operator's `ResponseShape.wrap_single`), and endpoints start from the operator's
`endpoint_defaults`. Each task operator declares its response shape (operators/results.py);
nothing here names a task's answer.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from operators.base import MEDIA_ROLES
from operators.results import ResponseShape


class RequestError(Exception):
    """A request the client must fix; carries the HTTP status and a message naming the field."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def json_type(value: Any) -> str:
    """The JSON name of a decoded JSON value's type, for messages a client understands."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# ---------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class DecodedInputs:
    columns: dict[str, list]  # role -> values, one per input
    fields: list[str]  # the request field each input came from: "inputs" or "inputs[3]"
    is_list: bool


def decode_base64(value: Any, field: str) -> bytes:
    """Bytes from a base64 string or a `data:<type>;base64,` URL; 422 naming the field otherwise."""
    if not isinstance(value, str):
        raise RequestError(422, f"{field}: expected a base64 string, got {json_type(value)}")
    text = value
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise RequestError(422, f"{field}: a data URL must be base64-encoded (data:<type>;base64,...)")
    text = "".join(text.split())  # line-wrapped base64 (MIME style) is common
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(422, f"{field}: invalid base64 ({e})") from None


def _decode_value(role: str, value: Any, field: str) -> Any:
    if role in MEDIA_ROLES:
        return decode_base64(value, field)
    if not isinstance(value, str):
        raise RequestError(422, f"{field}: expected a string, got {json_type(value)}")
    return value


def _decode_item(roles: Sequence[str], item: Any, field: str) -> dict[str, Any]:
    if len(roles) == 1:
        return {roles[0]: _decode_value(roles[0], item, field)}
    if not isinstance(item, dict):
        names = ", ".join(f'"{r}"' for r in roles)
        raise RequestError(422, f"{field}: expected an object with {names}, got {json_type(item)}")
    unknown = sorted(set(item) - set(roles))
    if unknown:
        raise RequestError(422, f"{field}.{unknown[0]}: unexpected field; expected {', '.join(roles)}")
    row = {}
    for role in roles:
        if role not in item:
            raise RequestError(422, f"{field}.{role}: field required")
        row[role] = _decode_value(role, item[role], f"{field}.{role}")
    return row


def decode_inputs(roles: Sequence[str], inputs: Any, max_inputs: int) -> DecodedInputs:
    """Columns for the operator from a request's `inputs` (one input or a list of them)."""
    is_list = isinstance(inputs, list)
    items = inputs if is_list else [inputs]
    if is_list and not items:
        raise RequestError(422, "inputs: empty list")
    if len(items) > max_inputs:
        raise RequestError(422, f"inputs: at most {max_inputs} inputs per request, got {len(items)}")
    fields = [f"inputs[{i}]" if is_list else "inputs" for i in range(len(items))]
    rows = [_decode_item(roles, item, field) for item, field in zip(items, fields)]
    return DecodedInputs({r: [row[r] for row in rows] for r in roles}, fields, is_list)


# ---------------------------------------------------------------------------- raw bodies

# Leading bytes of the formats our decoders read (Pillow for images, soundfile for audio):
# (offset, bytes, role, format). huggingface_hub's InferenceClient sends raw image and audio
# bytes with no Content-Type when a call has no parameters, and the HF Inference API takes
# them, so a body without a media type (or sent as application/octet-stream) is sniffed.
SIGNATURES: tuple[tuple[int, bytes, str, str], ...] = (
    (0, b"\xff\xd8\xff", "image", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "image", "PNG"),
    (0, b"GIF87a", "image", "GIF"),
    (0, b"GIF89a", "image", "GIF"),
    (8, b"WEBP", "image", "WebP"),  # after "RIFF" and the size, as WAVE below
    (0, b"II*\x00", "image", "TIFF"),
    (0, b"MM\x00*", "image", "TIFF"),
    (0, b"BM", "image", "BMP"),
    (8, b"WAVE", "audio", "WAV"),
    (0, b"fLaC", "audio", "FLAC"),
    (0, b"OggS", "audio", "Ogg"),
    (0, b"ID3", "audio", "MP3"),
    (8, b"AIFF", "audio", "AIFF"),
    (8, b"AIFC", "audio", "AIFF"),
)
UNTYPED_CONTENT_TYPES = ("", "application/octet-stream")


def sniff_media(body: bytes) -> tuple[str, str] | None:
    """(role, format) of a raw body from its leading bytes, or None when they match no
    signature. MP3 frames without an ID3 tag are recognised by their frame sync (11 set
    bits) and a layer other than the reserved 0, which keeps AAC's ADTS headers out."""
    for offset, magic, role, fmt in SIGNATURES:
        if offset and body[:4] not in (b"RIFF", b"FORM"):
            continue
        if body[offset : offset + len(magic)] == magic:
            return role, fmt
    if len(body) >= 2 and body[0] == 0xFF and body[1] & 0xE0 == 0xE0 and (body[1] >> 1) & 0x3:
        return "audio", "MP3"
    return None


def _identify(role: str, body: bytes) -> str | None:
    """The format a decoder library finds in the body's header (no full decode), or None."""
    try:
        if role == "image":
            from PIL import Image

            with Image.open(io.BytesIO(body)) as image:
                return image.format
        import soundfile

        return soundfile.info(io.BytesIO(body)).format
    except Exception:  # any failure to identify means "not this medium"
        return None


def check_untyped_body(body: bytes, role: str, content_type: str) -> None:
    """Accept a body that came without a media type as one `role` ("image" or "audio")
    input when its bytes say so; 415 saying what the bytes look like otherwise."""
    sniffed = sniff_media(body)
    if sniffed is not None and sniffed[0] == role:
        return
    declared = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
    if sniffed is not None:
        raise RequestError(
            415, f"body sent with {declared} looks like {sniffed[0]} ({sniffed[1]}); this endpoint takes {role}"
        )
    if _identify(role, body) is not None:
        return
    hint = " (a JSON body needs Content-Type: application/json)" if body.lstrip()[:1] in (b"{", b"[") else ""
    raise RequestError(
        415, f"body sent with {declared} is not a recognised {role} file{hint}; send Content-Type: {role}/<type>"
    )


def unused_generation_parameters(names: Sequence[str]) -> RequestError:
    """text-generation parameters the operator does not know, refused with the message and
    status (400) that transformers gives for unused model_kwargs: InferenceClient.text_generation
    reads it, drops those TGI-only parameters (stop, details, watermark, ...) with a warning,
    and sends the request again."""
    listed = ", ".join(repr(n) for n in names)
    return RequestError(
        400,
        f"The following `model_kwargs` are not used by the model: [{listed}] "
        "(taskray serves transformers generate(), not text-generation-inference)",
    )


# text-embeddings-inference takes these beside `inputs`, at the top of a feature-extraction
# request, and InferenceClient.feature_extraction sends them there.
EMBEDDING_ROOT_FIELDS = ("normalize", "prompt_name", "truncate", "truncation_direction", "dimensions", "encoding_format")


@dataclass(frozen=True)
class EmbeddingRequestOptions:
    parameters: dict[str, Any]  # operator options
    dimensions: int | None  # keep this many leading values of each embedding


def embedding_root_options(fields: Mapping[str, Any]) -> EmbeddingRequestOptions:
    """Operator parameters and `dimensions` from the top-level fields of a TEI-style request."""
    parameters: dict[str, Any] = {}
    for name, option in (("normalize", "normalize"), ("truncate", "truncation")):
        if fields.get(name) is not None:
            if not isinstance(fields[name], bool):
                raise RequestError(422, f"{name}: expected a boolean, got {json_type(fields[name])}")
            parameters[option] = fields[name]
    if fields.get("prompt_name") is not None:
        parameters["prompt_name"] = fields["prompt_name"]  # the operator checks it (422 when unknown)
    if fields.get("truncation_direction") not in (None, "right"):
        raise RequestError(422, "truncation_direction: only 'right' is supported (the end of a long text is cut)")
    if fields.get("encoding_format") not in (None, "float"):
        raise RequestError(422, "encoding_format: this route answers JSON floats; POST {route}/embeddings "
                                "(OpenAI style) also answers base64")
    return EmbeddingRequestOptions(parameters, check_dimensions(fields.get("dimensions"), "dimensions"))


def check_dimensions(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(422, f"{field}: expected a positive integer, got {value!r}")
    return value


def shorten_embedding(vector: Sequence[float], dimensions: int | None, normalized: bool) -> list[float]:
    """The first `dimensions` values (Matryoshka truncation), L2-normalized again when the
    endpoint's embeddings are normalized: SentenceTransformer.encode(truncate_dim=d,
    normalize_embeddings=True). 422 when the model's embeddings are shorter."""
    values = np.asarray(vector, dtype=np.float32)
    if dimensions is None:
        return values.tolist()
    if dimensions > values.shape[-1]:
        raise RequestError(422, f"dimensions: {dimensions} exceeds the model's {values.shape[-1]} dimensions")
    values = values[:dimensions]
    if normalized:
        values = values / max(float(np.linalg.norm(values)), 1e-12)
    return values.tolist()


# ---------------------------------------------------------------------------- responses


def jsonable(value: Any) -> Any:
    """Plain JSON values: bytes -> base64 text (PNG masks, depth maps), numpy -> lists/scalars."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # torch tensors, pyarrow scalars
        return jsonable(value.tolist())
    return value


def shape_results(
    shape: ResponseShape, output_columns: Sequence[str], columns: Mapping[str, Sequence], is_list: bool
) -> Any:
    """The pipeline-shaped JSON answer for successful rows of `columns`."""
    n = len(columns["error"])
    answers = []
    for i in range(n):
        row = {c: columns[c][i] for c in output_columns if c in columns}
        answer = shape.single(row)
        if is_list and shape.unwrap_in_list and isinstance(answer, list) and len(answer) == 1 and row.get("scores") is None:
            answer = answer[0]
        answers.append(jsonable(answer))
    if is_list:
        return answers
    return [answers[0]] if shape.wrap_single else answers[0]
