"""Deterministic, varied test sounds (tones, chirps, noise, mixtures) and audio files.

Content differs per clip so that calibrated tiny heads give different labels and texts; lengths
span 0.2 s to 12 s so that micro-batches pad rows of different lengths together.
"""

from __future__ import annotations

import io

import numpy as np

RATE = 16_000

# Seconds per clip; two share a length so that equal-length rows meet in one micro-batch.
VARIED_SECONDS: tuple[float, ...] = (0.2, 1.3, 12.0, 0.45, 2.6, 1.1, 0.7, 0.9, 1.1, 1.8)


def clip(seed: int, seconds: float, rate: int = RATE) -> np.ndarray:
    """A mono float32 clip whose kind (tone, chirp, noise bursts, mixture) and pitch follow `seed`."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    kind = seed % 4
    if kind == 0:
        wave = np.sin(2 * np.pi * rng.uniform(100, 3000) * t)
    elif kind == 1:
        f0, f1 = rng.uniform(60, 400), rng.uniform(1000, min(7000, rate / 2 - 100))
        wave = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * max(seconds, 1e-3))))
    elif kind == 2:
        wave = rng.normal(0, 1, n) * (np.sin(2 * np.pi * rng.uniform(1, 6) * t) > 0)
    else:
        wave = np.sin(2 * np.pi * rng.uniform(120, 300) * t) + 0.4 * rng.normal(0, 1, n)
    return (rng.uniform(0.1, 0.8) * wave / max(np.abs(wave).max(), 1e-6)).astype(np.float32)


def varied_clips() -> list[np.ndarray]:
    return [clip(seed, seconds) for seed, seconds in enumerate(VARIED_SECONDS)]


def tone(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encode(wave: np.ndarray, rate: int = RATE, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    """Audio file bytes via soundfile; `wave` is (frames,) or (frames, channels)."""
    import soundfile as sf

    subtype = subtype or {"WAV": "FLOAT", "FLAC": "PCM_24", "OGG": "VORBIS"}[fmt]
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def stereo(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.stack([left, right], axis=1)


def silent(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(round(seconds * rate)), dtype=np.float32)


def corrupt_bytes() -> bytes:
    return np.random.default_rng(7).integers(0, 256, 2048, dtype=np.uint8).tobytes()
