"""Tiny models rebuilding the published configurations of the audio families users bring most
(audio-classification and automatic-speech-recognition), offline. See checkpoints.py for the rules a builder follows."""

from __future__ import annotations

from typing import Callable

# hub id -> (task, builder(out_dir) -> out_dir)
CHECKPOINTS: dict[str, tuple[str, Callable[[str], str]]] = {}
