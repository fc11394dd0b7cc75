"""audio-classification: parity with transformers.pipeline, top_k, input forms, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from operators import get_operator
from tests.operators import sounds

# fp32 on CPU. Rows padded in a micro-batch change summation order only (the model masks
# padding), which moves softmax scores by ~1e-6; 1e-4 leaves margin and still catches any
# real difference in normalization, masking or pooling.
SCORE_TOL = 1e-4


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model("audio-classification")


@pytest.fixture(scope="module")
def clips():
    return sounds.varied_clips()


@pytest.fixture(scope="module")
def reference(model_dir, clips):
    """The pipeline's top-3 for each clip, run one clip at a time as pipeline() does."""
    from transformers import pipeline

    classifier = pipeline("audio-classification", model=model_dir, device="cpu")
    return [classifier(clip, top_k=3) for clip in clips]


def test_parity_with_pipeline(model_dir, clips, reference):
    # A small budget gives several micro-batches that pad rows of different lengths together.
    op = get_operator("audio-classification")(model_dir, max_batch_rows=4, max_batch_samples=16_000 * 16)
    assert len(op.plan_batches([{"waveform": c} for c in clips])) >= 3
    out = op({"audio": clips})
    assert out["error"] == [None] * len(clips)
    assert out["scores"] == [None] * len(clips)  # only with top_k
    for i, expected in enumerate(reference):
        assert out["label"][i] == expected[0]["label"], f"clip {i}"
        assert out["score"][i] == pytest.approx(expected[0]["score"], abs=SCORE_TOL)
    assert len(set(out["label"])) >= 3, "calibrated tiny model should give labels that vary with the clip"


def test_top_k_matches_pipeline(model_dir, clips, reference):
    out = get_operator("audio-classification")(model_dir, top_k=3)({"audio": clips})
    for got, expected in zip(out["scores"], reference):
        assert [s["label"] for s in got] == [e["label"] for e in expected]
        for g, e in zip(got, expected):
            assert g["score"] == pytest.approx(e["score"], abs=SCORE_TOL)
    assert out["label"] == [s[0]["label"] for s in out["scores"]]


def test_input_forms_agree(model_dir):
    """Bytes (WAV/FLAC/OGG), {bytes, path}, {array, sampling_rate}, other rates and stereo."""
    import soxr

    op = get_operator("audio-classification")(model_dir, top_k=2)
    wave = sounds.clip(6, 1.5)
    at_8k = sounds.clip(7, 1.0, rate=8_000)
    at_44k = sounds.clip(4, 0.7, rate=44_100)
    wav = sounds.encode(wave, fmt="WAV")
    out = op(
        {
            "audio": [
                wave,
                wav,
                {"bytes": wav, "path": "clip.wav"},
                {"array": wave, "sampling_rate": sounds.RATE},
                sounds.encode(sounds.stereo(wave, wave), fmt="WAV"),
                sounds.encode(wave, fmt="FLAC"),
                sounds.encode(wave, fmt="OGG"),
                {"array": at_8k, "sampling_rate": 8_000},
                soxr.resample(at_8k, 8_000, sounds.RATE, quality="HQ"),
                sounds.encode(at_44k, 44_100, "FLAC"),
                soxr.resample(at_44k, 44_100, sounds.RATE, quality="HQ"),
            ]
        }
    )
    assert out["error"] == [None] * 11
    for i in range(1, 5):  # the same samples, however they arrive
        assert out["label"][i] == out["label"][0] and out["score"][i] == pytest.approx(out["score"][0], abs=SCORE_TOL)
    for i in (5, 6):  # FLAC (24-bit) and OGG (lossy) carry nearly the same sound
        assert out["label"][i] == out["label"][0]
    assert out["label"][7] == out["label"][8] and out["score"][7] == pytest.approx(out["score"][8], abs=SCORE_TOL)
    assert out["label"][9] == out["label"][10] and out["score"][9] == pytest.approx(out["score"][10], abs=1e-3)


def test_bad_rows_become_errors_and_neighbours_keep_parity(model_dir, clips, reference):
    op = get_operator("audio-classification")(model_dir)
    out = op({"audio": [clips[1], b"", None, sounds.corrupt_bytes(), np.full(4000, np.nan, np.float32), 7, clips[4]]})
    assert out["error"][0] is None and out["error"][6] is None
    assert out["error"][1] == "input: empty audio (0 bytes)"
    assert out["error"][2] == "input: expected audio bytes, got None"
    assert out["error"][3].startswith("decode: cannot decode audio: ")
    assert out["error"][4] == "decode: waveform contains NaN or infinite samples"
    assert out["error"][5] == "input: expected audio bytes, got int"
    assert out["label"][1:6] == [None] * 5 and out["score"][1:6] == [None] * 5
    for i, ref in ((0, reference[1]), (6, reference[4])):
        assert out["label"][i] == ref[0]["label"]
        assert out["score"][i] == pytest.approx(ref[0]["score"], abs=SCORE_TOL)


def test_silent_clip_gives_a_well_formed_result(model_dir):
    from transformers import pipeline

    silence = sounds.silent(1.0)
    out = get_operator("audio-classification")(model_dir, top_k=2)({"audio": [silence]})
    expected = pipeline("audio-classification", model=model_dir, device="cpu")(silence, top_k=2)
    assert out["error"] == [None]
    assert out["label"][0] == expected[0]["label"]
    assert 0.0 <= out["score"][0] <= 1.0 and out["score"][0] == pytest.approx(expected[0]["score"], abs=SCORE_TOL)
    assert len(out["scores"][0]) == 2


def test_group_norm_model_keeps_parity_by_batching_equal_lengths(tiny_model, clips):
    """wav2vec2-base style (group norm, no attention mask): padding would change its outputs,
    so the operator batches it by exact length; results still equal the pipeline's."""
    from transformers import pipeline

    model_dir = tiny_model("audio-classification", "base")
    subset = [clips[i] for i in (0, 1, 3, 5, 7, 8)]  # two clips of 1.1 s share a micro-batch
    out = get_operator("audio-classification")(model_dir)({"audio": subset})
    classifier = pipeline("audio-classification", model=model_dir, device="cpu")
    for i, clip in enumerate(subset):
        expected = classifier(clip, top_k=1)[0]
        assert out["label"][i] == expected["label"]
        assert out["score"][i] == pytest.approx(expected["score"], abs=SCORE_TOL)


def test_empty_batch(model_dir):
    op = get_operator("audio-classification")(model_dir)
    assert op({"audio": []}) == {"label": [], "score": [], "scores": [], "error": []}


def test_options_are_validated(model_dir):
    Op = get_operator("audio-classification")
    with pytest.raises(ValueError, match="max_batch_samples"):
        Op(model_dir, max_batch_samples=0)
    with pytest.raises(ValueError, match="unknown_option"):
        Op(model_dir, unknown_option=1)


def test_every_feature_extractor_of_the_task(tiny_model, clips):
    """Models whose extractor computes features (Whisper's log-mel here; AST's filterbanks in
    tests/checkpoints/test_audio_tier.py) run through the operator's spectrogram variant:
    the extractor's own output per clip, stacked unpadded, equal to the pipeline's answer."""
    from transformers import pipeline

    model_dir = tiny_model("audio-classification", "whisper")
    op = get_operator("audio-classification")(model_dir, top_k=2, max_batch_samples=4 * 30 * sounds.RATE)
    assert type(op).__name__ == "SpectrogramClassificationOperator"
    assert op.plan_batches(op.preprocess({"audio": clips[:6]})["features"]) == [[0, 1, 2, 3], [4, 5]]
    out = op({"audio": clips[:6]})
    classifier = pipeline("audio-classification", model=model_dir, device="cpu")
    assert out["error"] == [None] * 6
    for i, clip in enumerate(clips[:6]):
        expected = classifier(clip, top_k=2)
        assert [s["label"] for s in out["scores"][i]] == [e["label"] for e in expected], f"clip {i}"
        assert [s["score"] for s in out["scores"][i]] == pytest.approx([e["score"] for e in expected], abs=SCORE_TOL)
    assert len(set(out["label"])) >= 2, "labels should vary with the clip"
    # The waveform class, used directly, names what it got and where to look.
    from operators.tasks.audio_classification import AudioClassificationOperator

    direct = AudioClassificationOperator.__new__(AudioClassificationOperator)  # without a model: no variant picked
    direct.__init__(model_dir)
    with pytest.raises(ValueError, match="got WhisperFeatureExtractor .* picks the operator for that extractor"):
        direct.processor
