"""Audio decoding (WAV/FLAC/OGG, structs, stereo, resampling), per-row errors for bad audio,
and micro-batch planning of the shared audio operator base."""

from __future__ import annotations

import numpy as np
import pytest

from operators import get_operator
from operators.decoding.audio import decode_audio
from operators.errors import RowError
from tests.operators import sounds

RATE = sounds.RATE


def _peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(spectrum)])


@pytest.fixture(scope="module")
def op(tiny_model):
    return get_operator("audio-classification")(tiny_model("audio-classification"))


# ---------------------------------------------------------------- decoding


def test_wav_flac_round_trip_and_ogg_decodes():
    wave = sounds.clip(3, 0.8)
    assert np.array_equal(decode_audio(sounds.encode(wave, fmt="WAV"), RATE), wave)  # float WAV: lossless
    flac = decode_audio(sounds.encode(wave, fmt="FLAC"), RATE)
    assert flac.dtype == np.float32 and np.abs(flac - wave).max() < 1e-6  # 24-bit quantization
    ogg = decode_audio(sounds.encode(wave, fmt="OGG"), RATE)
    assert len(ogg) == len(wave)
    assert np.corrcoef(ogg, wave)[0, 1] > 0.95  # lossy, but the same sound


def test_structs_bytes_path_and_array(tmp_path):
    wave = sounds.clip(1, 0.5)
    data = sounds.encode(wave, fmt="FLAC")
    path = tmp_path / "clip.flac"
    path.write_bytes(data)
    expected = decode_audio(data, RATE)
    assert np.array_equal(decode_audio({"bytes": data, "path": "ignored.flac"}, RATE), expected)
    assert np.array_equal(decode_audio({"bytes": None, "path": str(path)}, RATE), expected)
    assert np.array_equal(decode_audio({"array": wave, "sampling_rate": RATE}, RATE), wave)
    assert np.array_equal(decode_audio({"array": wave.tolist(), "sampling_rate": RATE}, RATE), wave)


def test_stereo_is_downmixed_to_mono():
    left, right = sounds.clip(0, 0.5), sounds.clip(2, 0.5)
    mixed = decode_audio(sounds.encode(sounds.stereo(left, right), fmt="WAV"), RATE)
    np.testing.assert_allclose(mixed, (left + right) / 2, atol=1e-7)
    # (channels, frames) arrays, as librosa and datasets give them, are downmixed too.
    channels_first = decode_audio({"array": np.stack([left, -left]), "sampling_rate": RATE}, RATE)
    assert np.abs(channels_first).max() == 0


@pytest.mark.parametrize("source_rate", [8_000, 44_100])
def test_resampling_to_the_model_rate(source_rate):
    import soxr

    wave = sounds.tone(440.0, 1.0, source_rate)
    for value in (sounds.encode(wave, source_rate, "WAV"), {"array": wave, "sampling_rate": source_rate}):
        out = decode_audio(value, RATE)
        assert len(out) == RATE  # one second at 16 kHz
        assert _peak_hz(out, RATE) == pytest.approx(440.0, abs=1.0)
        np.testing.assert_allclose(out, soxr.resample(wave, source_rate, RATE, quality="HQ"), atol=1e-6)


# ---------------------------------------------------------------- bad input, per row


def _wav_without_samples() -> bytes:
    return sounds.encode(np.zeros(0, np.float32), fmt="WAV")


CANNOT_DECODE = "decode: cannot decode audio: "  # libsndfile's own cause follows; it varies by version

BAD_ROWS = [
    (sounds.corrupt_bytes(), CANNOT_DECODE),
    (b"", "input: empty audio (0 bytes)"),
    (_wav_without_samples(), "input: empty audio (no samples)"),
    (None, "input: expected audio bytes, got None"),
    (42, "input: expected audio bytes, got int"),
    (3.5, "input: expected audio bytes, got float"),
    ("clip.wav", "input: expected audio bytes, got str"),
    (sounds.encode(sounds.clip(1, 0.5), fmt="WAV")[:30], CANNOT_DECODE),  # cut inside the header
    (sounds.encode(sounds.clip(1, 0.5), fmt="FLAC")[:1500], CANNOT_DECODE),
    (sounds.encode(sounds.clip(1, 0.5), fmt="OGG")[:500], CANNOT_DECODE),
    (np.full(8000, np.nan, np.float32), "decode: waveform contains NaN or infinite samples"),
    ({"array": [0.1, np.inf] * 400, "sampling_rate": RATE}, "decode: waveform contains NaN or infinite samples"),
    ({"array": sounds.clip(0, 0.1), "sampling_rate": 0}, "input: audio struct needs a positive int sampling_rate, got 0"),
    ({"path": None}, "input: audio struct has neither bytes, path nor array"),
    (np.zeros((2, 2, 2), np.float32), "input: audio array must be 1-D or 2-D, got shape (2, 2, 2)"),
    (np.zeros(100, np.float32), "input: audio too short: 100 samples at 16000 Hz, the model needs at least 400"),
]


def test_bad_audio_becomes_row_errors_naming_the_stage(op):
    good = sounds.clip(5, 1.0)
    values = [good, *[value for value, _ in BAD_ROWS], good]
    prepared = op.preprocess({"audio": values})
    assert prepared["error"][0] is None and prepared["error"][-1] is None
    for error, (_, expected) in zip(prepared["error"][1:-1], BAD_ROWS):
        if expected == CANNOT_DECODE:
            assert error.startswith(CANNOT_DECODE) and len(error) > len(CANNOT_DECODE)
            assert " at 0x" not in error, "the cause must not name a memory address"
        else:
            assert error == expected
    assert prepared["features"][1:-1] == [None] * len(BAD_ROWS)
    assert np.array_equal(prepared["features"][0]["waveform"], good)


def test_max_seconds_refuses_long_clips(op):
    out = op.with_options(max_seconds=2.0).preprocess({"audio": [sounds.clip(0, 2.5), sounds.clip(0, 1.5)]})
    assert out["error"] == ["decode: audio too long: 2.5s exceeds 2s", None]


def test_truncated_wav_body_decodes_the_samples_present():
    # libsndfile (like ffmpeg, which the pipeline uses) reads what a cut WAV still holds;
    # a cut inside the header fails (BAD_ROWS above).
    wave = sounds.clip(2, 1.0)
    data = sounds.encode(wave, fmt="WAV")
    out = decode_audio(data[: len(data) // 2], RATE)
    assert 0 < len(out) < len(wave) and np.array_equal(out, wave[: len(out)])


def test_decode_raises_row_error_not_library_errors():
    with pytest.raises(RowError) as info:
        decode_audio(sounds.corrupt_bytes(), RATE)
    assert info.value.stage == "decode"


# ---------------------------------------------------------------- micro-batch planning


def test_plan_keeps_similar_lengths_together_within_the_sample_budget(op):
    lengths = [RATE * 12, 3_200, RATE * 11, 4_000, RATE * 5, 3_900]
    features = [{"waveform": np.zeros(n, np.float32)} for n in lengths]
    plan = op.with_options(max_batch_samples=RATE * 24).plan_batches(features)
    assert sorted(i for batch in plan for i in batch) == list(range(len(lengths)))
    assert plan == [[0, 2], [4, 3, 5, 1]]
    for batch in plan:
        assert len(batch) * max(lengths[i] for i in batch) <= RATE * 24 or len(batch) == 1


def test_sample_budget_defaults_by_device(tiny_model, monkeypatch):
    """60 s of audio per micro-batch on the CPU, 480 s on a GPU (where 60 s ran launch-bound),
    and the option over both."""
    import torch

    op = get_operator("audio-classification")(tiny_model("audio-classification")).load()
    assert op.device.type == "cpu" and op.sample_budget == 60 * op.sampling_rate
    monkeypatch.setattr(op, "_device", torch.device("cuda"))
    assert op.sample_budget == 480 * op.sampling_rate
    assert op.with_options(max_batch_samples=1234).sample_budget == 1234
    long_clips = [{"waveform": np.zeros(RATE * 30, np.float32)} for _ in range(20)]
    assert [len(b) for b in op.plan_batches(long_clips)] == [16, 4]


def test_group_norm_model_batches_only_equal_lengths(tiny_model):
    base = get_operator("audio-classification")(tiny_model("audio-classification", "base"))
    assert not base.padding_is_exact
    lengths = [8_000, 16_000, 8_000, 12_000, 16_000, 8_000]
    plan = base.with_options(max_batch_rows=2).plan_batches([{"waveform": np.zeros(n)} for n in lengths])
    assert plan == [[1, 4], [3], [0, 2], [5]]
