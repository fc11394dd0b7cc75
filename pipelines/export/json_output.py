"""A JSON file written as it is produced: exports stream their arrays item by item, so their
memory does not grow with the output, and the file appears whole (a temporary name, then a
rename) or not at all."""

from __future__ import annotations

import json
import os
from typing import Any, TextIO


class JsonFile:
    """`with JsonFile(path) as out: out.raw('{"a": '); out.array(items); out.raw('}')`."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self._tmp = f"{self.path}.tmp"
        self._file: TextIO | None = None
        self.bytes = 0

    def __enter__(self) -> "JsonFile":
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._file = open(self._tmp, "w", encoding="utf-8")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._file is not None
        self._file.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
            self.bytes = os.path.getsize(self.path)
        else:
            os.unlink(self._tmp)

    def raw(self, text: str) -> None:
        assert self._file is not None
        self._file.write(text)

    def value(self, value: Any) -> None:
        self.raw(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def array(self, items) -> int:
        """Write the items as a JSON array, one per line; returns how many there were."""
        self.raw("[")
        n = 0
        for item in items:
            self.raw(",\n" if n else "\n")
            self.value(item)
            n += 1
        self.raw("\n]" if n else "]")
        return n
