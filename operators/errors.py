"""Per-row failures. A row that fails carries `error = "<stage>: <cause>"` and never fails its batch."""

from __future__ import annotations


class RowError(Exception):
    """A failure that belongs to one input row.

    `stage` is one of: input (wrong type or empty value), decode (media bytes), preprocess,
    forward, oom (out of device memory with the row alone in its micro-batch; see
    operators/out_of_memory.py), postprocess. The message is what the user sees in the
    `error` column.
    """

    def __init__(self, stage: str, message: str):
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.message = message


def describe(exc: BaseException) -> str:
    """A one-line cause for an exception, without a traceback."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text or type(exc).__name__


def row_error(stage: str, exc: BaseException) -> str:
    """The `error` column value for an exception raised while handling one row at `stage`."""
    if isinstance(exc, RowError):
        return str(exc)
    return f"{stage}: {describe(exc)}"


def error_kind(error: str | None) -> str | None:
    """The stage prefix of an `error` value ("decode", "input", ...), for per-kind counts."""
    if error is None:
        return None
    return error.split(":", 1)[0].strip() or "unknown"


def option_error(options_class: type, name: str, value: object, message: str) -> ValueError:
    """A pydantic ValidationError for one option value that the model cannot honour, raised
    like the options' own validation: Serve answers it with a 422 naming `parameters.<name>`,
    and the job spec check names `options.<name>`."""
    from pydantic import ValidationError

    return ValidationError.from_exception_data(
        options_class.__name__,
        [{"type": "value_error", "loc": (name,), "input": value, "ctx": {"error": ValueError(message)}}],
    )
