"""Tiny models rebuilding the published configurations of the generation families users bring most
(translation, summarization and text-generation), offline. See checkpoints.py for the rules a builder follows."""

from __future__ import annotations

from typing import Callable

# hub id -> (task, builder(out_dir) -> out_dir)
CHECKPOINTS: dict[str, tuple[str, Callable[[str], str]]] = {}
