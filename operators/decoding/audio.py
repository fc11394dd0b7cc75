"""Audio decoding: WAV/FLAC/OGG bytes via soundfile, {bytes, path} or {array, sampling_rate}
structs, or a bare float array already at the model's rate. Downmixed to mono and resampled
with soxr (a real polyphase resampler; no torchaudio)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from operators.decoding.structs import struct_bytes
from operators.errors import RowError, describe

DEFAULT_MAX_SECONDS = 3600.0


def decode_audio(value: Any, sampling_rate: int, max_seconds: float = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """A mono float32 waveform at `sampling_rate`."""
    if isinstance(value, dict):
        if value.get("array") is not None:
            rate = value.get("sampling_rate")
            if not isinstance(rate, (int, np.integer)) or rate <= 0:
                raise RowError("input", f"audio struct needs a positive int sampling_rate, got {rate!r}")
            wave, source_rate = _as_waveform(value["array"]), int(rate)
        else:
            wave, source_rate = _read(_struct_bytes(value))
    elif isinstance(value, (bytes, bytearray, memoryview)):
        wave, source_rate = _read(bytes(value))
    elif isinstance(value, (np.ndarray, list)):
        wave, source_rate = _as_waveform(value), sampling_rate
    elif value is None:
        raise RowError("input", "expected audio bytes, got None")
    else:
        raise RowError("input", f"expected audio bytes, got {type(value).__name__}")

    if wave.ndim == 2:  # (frames, channels) -> mono
        wave = wave.mean(axis=1)
    if wave.size == 0:
        raise RowError("input", "empty audio (no samples)")
    if not np.all(np.isfinite(wave)):
        raise RowError("decode", "waveform contains NaN or infinite samples")
    if wave.size / source_rate > max_seconds:
        raise RowError(
            "decode", f"audio too long: {wave.size / source_rate:.1f}s exceeds {max_seconds:.0f}s"
        )
    if source_rate != sampling_rate:
        import soxr

        wave = soxr.resample(wave, source_rate, sampling_rate, quality="HQ")
    return np.ascontiguousarray(wave, dtype=np.float32)


def _struct_bytes(value: dict) -> bytes:
    data = struct_bytes(value)
    if data is None:
        raise RowError("input", "audio struct has neither bytes, path nor array")
    return data


def _read(data: bytes) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if not data:
        raise RowError("input", "empty audio (0 bytes)")
    try:
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except Exception as e:  # libsndfile reports corrupt and unsupported data in many ways
        # LibsndfileError's str() names the BytesIO object's address; its error_string does not.
        cause = getattr(e, "error_string", None) or describe(e)
        raise RowError("decode", f"cannot decode audio: {cause}") from e
    return np.asarray(wave, dtype=np.float32), int(rate)


def _as_waveform(array: Any) -> np.ndarray:
    try:
        wave = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise RowError("input", f"audio array is not numeric: {e}") from e
    if wave.ndim == 2 and wave.shape[0] < wave.shape[1] and wave.shape[0] <= 8:
        wave = wave.T  # (channels, frames) as librosa and datasets give it
    if wave.ndim not in (1, 2):
        raise RowError("input", f"audio array must be 1-D or 2-D, got shape {wave.shape}")
    return wave
