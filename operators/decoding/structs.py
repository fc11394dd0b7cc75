"""HF-datasets media structs: {"bytes": ..., "path": ...}, bytes preferred over the path."""

from __future__ import annotations

from operators.errors import RowError


def struct_bytes(value: dict) -> bytes | None:
    """The struct's bytes, else the content of its path (local or any fsspec URL), else None."""
    data = value.get("bytes")
    if data is None and value.get("path"):
        path = value["path"]
        try:
            import fsspec

            with fsspec.open(path, "rb") as f:
                data = f.read()
        except Exception as e:  # an unreadable path is this row's problem only
            raise RowError("decode", f"cannot read {path!r}: {e}") from e
    return None if data is None else bytes(data)
