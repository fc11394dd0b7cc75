"""Request decoding and response shaping for the Serve endpoints.

Requests follow the Hugging Face inference convention: `inputs` is one input or a list of
inputs. One input is a string for a single-role text task, an object keyed by role for
multi-role tasks (`{"question", "context"}`), and base64 (or a data URL) for image and audio
roles. Responses are shaped as `transformers.pipeline` returns them, from the operator's
result columns; bytes (PNG masks, depth maps) become base64 strings.

Adding a task means adding one line to `RESULT_SHAPES`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from operators.base import MEDIA_ROLES


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


# ---------------------------------------------------------------------------- responses


def _ranked(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Classification: the top-k list when `scores` was asked for, else the best label."""
    if row.get("scores") is not None:
        return list(row["scores"])
    return [{"label": row["label"], "score": row["score"]}]


def _answers(row: Mapping[str, Any]) -> Any:
    """Question answering: the k best answers when top_k was asked for, else the best one
    (pipeline() returns a lone answer unwrapped even for top_k=1)."""
    if row.get("answers") is not None and len(row["answers"]) > 1:
        return list(row["answers"])
    return {n: row[n] for n in ("answer", "score", "start", "end")}


def _column(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda row: row[name]


def _fields(*names: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    return lambda row: {n: row[n] for n in names}


def _one_record(*names: str) -> Callable[[Mapping[str, Any]], list[dict[str, Any]]]:
    return lambda row: [{n: row[n] for n in names}]


def _transcript(row: Mapping[str, Any]) -> dict[str, Any]:
    # The pipeline adds "chunks" only with return_timestamps.
    chunks = {"chunks": row["chunks"]} if row.get("chunks") is not None else {}
    return {"text": row["text"], **chunks}


@dataclass(frozen=True)
class ResultShape:
    """How one operator row becomes the pipeline's answer for one input.

    `unwrap_in_list`: for a list of inputs, pipeline() returns the lone record of a
    one-record answer instead of a one-item list (text-classification without top_k,
    summarization, translation in transformers 4.57).
    """

    single: Callable[[Mapping[str, Any]], Any]
    unwrap_in_list: bool = False


RESULT_SHAPES: dict[str, ResultShape] = {
    "text-classification": ResultShape(_ranked, unwrap_in_list=True),
    "token-classification": ResultShape(_column("entities")),
    "question-answering": ResultShape(_answers),
    "feature-extraction": ResultShape(_column("embedding")),
    "text-generation": ResultShape(_one_record("generated_text")),
    "summarization": ResultShape(_one_record("summary_text"), unwrap_in_list=True),
    "translation": ResultShape(_one_record("translation_text"), unwrap_in_list=True),
    "image-classification": ResultShape(_ranked),
    "object-detection": ResultShape(_column("objects")),
    "image-segmentation": ResultShape(_column("segments")),
    "depth-estimation": ResultShape(_fields("depth", "predicted_depth")),
    "audio-classification": ResultShape(_ranked),
    "automatic-speech-recognition": ResultShape(_transcript),
}


def _shape_for(task: str, output_columns: Sequence[str]) -> ResultShape:
    # A task without a line here still answers: with all of its result columns.
    return RESULT_SHAPES.get(task) or ResultShape(_fields(*output_columns))


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
    task: str, output_columns: Sequence[str], columns: Mapping[str, Sequence], is_list: bool
) -> Any:
    """The pipeline-shaped JSON answer for successful rows of `columns`."""
    shape = _shape_for(task, output_columns)
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
    return answers[0]
