"""automatic-speech-recognition (CTC): parity with transformers.pipeline, whole-clip and chunked
long-form, chunk arithmetic against the pipeline's own chunk_iter, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from operators import get_operator
from operators.tasks.speech_recognition import Chunk, chunk_spans
from tests.operators import sounds

TASK = "automatic-speech-recognition"


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model(TASK)


@pytest.fixture(scope="module")
def asr(model_dir):
    from transformers import pipeline

    return pipeline(TASK, model=model_dir, device="cpu")


@pytest.fixture(scope="module")
def clips():
    return sounds.varied_clips()


@pytest.fixture(scope="module")
def long_clips(clips):
    """Clips longer than the chunk: 7 s of the 12 s one, and 4.6 s stitched from short ones."""
    return [clips[2][: 7 * sounds.RATE], np.concatenate([clips[4], clips[1], clips[6]])]


def test_parity_with_pipeline_whole_clips(model_dir, asr, clips):
    # Texts must be equal, not close: the argmax per frame is what both decode.
    op = get_operator(TASK)(model_dir, max_batch_rows=4, max_batch_samples=16_000 * 16)
    out = op({"audio": clips})
    assert out["error"] == [None] * len(clips)
    for i, clip in enumerate(clips):
        assert out["text"][i] == asr(clip)["text"], f"clip {i}"
    assert all(out["text"]), "calibrated tiny CTC head should emit letters"
    assert len(set(out["text"])) == len(clips), "texts should vary with the clip"


@pytest.mark.parametrize(
    "chunking",
    [
        {"chunk_length_s": 2.0, "stride_length_s": 0.5},
        {"chunk_length_s": 1.6, "stride_length_s": (0.2, 0.4)},
        {"chunk_length_s": 3.0},  # default stride: chunk / 6
    ],
    ids=["symmetric", "asymmetric", "default-stride"],
)
def test_parity_with_pipeline_chunked(model_dir, asr, clips, long_clips, chunking):
    rows = [*long_clips, clips[0], clips[5]]  # short clips are one chunk each
    op = get_operator(TASK)(model_dir, max_batch_rows=8, **chunking)
    out = op({"audio": rows})
    assert out["error"] == [None] * len(rows)
    for i, clip in enumerate(rows):
        assert out["text"][i] == asr(clip, **chunking)["text"], f"row {i}"
    whole = get_operator(TASK)(model_dir)({"audio": long_clips})["text"]
    assert out["text"][:2] != whole, "chunking should change long texts (chunks normalize on their own)"


def test_chunks_of_many_rows_share_micro_batches(model_dir, long_clips, monkeypatch):
    op = get_operator(TASK)(model_dir, chunk_length_s=2.0, stride_length_s=0.5, max_batch_rows=16)
    sizes = []
    run_encoder = op.run_encoder
    monkeypatch.setattr(op, "run_encoder", lambda waves: sizes.append(len(waves)) or run_encoder(waves))
    expected = [op({"audio": [clip]})["text"][0] for clip in long_clips]
    sizes.clear()
    assert op({"audio": long_clips})["text"] == expected
    chunks = sum(len(op.chunks(len(c))) for c in long_clips)
    assert sum(sizes) == chunks and max(sizes) > len(op.chunks(len(long_clips[0]))), sizes


@pytest.mark.parametrize("num_samples", [1, 5_000, 32_000, 32_001, 70_000, 191_999, 192_000])
def test_chunk_spans_match_the_pipelines_chunk_iter(model_dir, num_samples):
    from transformers import AutoFeatureExtractor
    from transformers.pipelines.automatic_speech_recognition import chunk_iter

    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    chunk_len, left, right = 32_000, 6_400, 3_200
    wave = np.arange(num_samples, dtype=np.float32)
    expected = [item["stride"] for item in chunk_iter(wave, extractor, chunk_len, left, right)]
    spans = chunk_spans(num_samples, chunk_len, left, right)
    assert [(c.end - c.start, c.left, c.right) for c in spans] == expected
    assert spans[0].start == 0 and spans[-1].end == num_samples


def test_chunk_lengths_round_to_logit_frames(model_dir):
    op = get_operator(TASK)(model_dir, chunk_length_s=1.01, stride_length_s=(0.1, 0.25))
    # Whole 320-sample frames, rounded half to even as the pipeline's round() does: 50.5 -> 50, 12.5 -> 12.
    assert op.chunk_lengths() == (16_000, 1_600, 3_840)
    assert op.chunks(10_000) == [Chunk(0, 10_000, 0, 0)]


def test_bad_rows_become_errors_and_neighbours_keep_parity(model_dir, asr, clips):
    op = get_operator(TASK)(model_dir, chunk_length_s=2.0)
    silence = sounds.silent(0.8)
    out = op({"audio": [clips[3], None, b"", sounds.corrupt_bytes(), np.full(800, np.nan), silence, clips[7]]})
    assert out["error"][0] is None and out["error"][5] is None and out["error"][6] is None
    assert out["error"][1] == "input: expected audio bytes, got None"
    assert out["error"][2] == "input: empty audio (0 bytes)"
    assert out["error"][3].startswith("decode: cannot decode audio: ")
    assert out["error"][4] == "decode: waveform contains NaN or infinite samples"
    assert out["text"][1:5] == [None] * 4
    assert out["text"][0] == asr(clips[3], chunk_length_s=2.0)["text"]
    assert out["text"][6] == asr(clips[7], chunk_length_s=2.0)["text"]
    # Silence is well formed: a str, whatever the pipeline makes of it.
    assert isinstance(out["text"][5], str) and out["text"][5] == asr(silence, chunk_length_s=2.0)["text"]


def test_resampled_and_stereo_inputs(model_dir):
    import soxr

    op = get_operator(TASK)(model_dir)
    at_8k = sounds.clip(9, 1.2, rate=8_000)
    wave = sounds.clip(2, 1.0)
    out = op(
        {
            "audio": [
                sounds.encode(at_8k, 8_000, "WAV"),
                soxr.resample(at_8k, 8_000, sounds.RATE, quality="HQ"),
                sounds.encode(sounds.stereo(wave, wave), fmt="FLAC", subtype="PCM_24"),
                {"array": np.stack([wave, wave]), "sampling_rate": sounds.RATE},
                wave,
            ]
        }
    )
    assert out["error"] == [None] * 5
    assert out["text"][0] == out["text"][1]
    assert out["text"][3] == out["text"][4]
    assert out["text"][2]  # 24-bit FLAC: nearly the same samples, some text


def test_options_are_validated(model_dir):
    Op = get_operator(TASK)
    with pytest.raises(ValueError, match="stride_length_s needs chunk_length_s"):
        Op(model_dir, stride_length_s=1.0)
    with pytest.raises(ValueError, match="must exceed the two strides"):
        Op(model_dir, chunk_length_s=2.0, stride_length_s=1.0)
    with pytest.raises(ValueError, match="chunk_length_s"):
        Op(model_dir, chunk_length_s=0)


def test_empty_batch(model_dir):
    assert get_operator(TASK)(model_dir)({"audio": []}) == {"text": [], "chunks": [], "error": []}


# ---------------------------------------------------------------- sequence-to-sequence, not Whisper


@pytest.fixture(scope="module")
def seq2seq_dir(tiny_model):
    return tiny_model(TASK, "moonshine")


@pytest.fixture(scope="module")
def seq2seq_asr(seq2seq_dir):
    from transformers import pipeline

    asr = pipeline(TASK, model=seq2seq_dir, device="cpu")
    assert asr.type == "seq2seq"
    return asr


@pytest.mark.parametrize(
    "options",
    [{"num_beams": 1}, {"num_beams": 1, "chunk_length_s": 2.0, "stride_length_s": 0.5}, {}],
    ids=["greedy", "chunked", "pipeline-default-beams"],
)
def test_seq2seq_model_matches_the_pipeline(seq2seq_dir, seq2seq_asr, clips, long_clips, options):
    # Moonshine stands for the models the pipeline runs as "seq2seq": generate() on each window,
    # the chunks' tokens concatenated (the v5 pipeline keeps strides only for Whisper and CTC).
    rows = [long_clips[1], clips[1], clips[5], clips[8]]  # clips 5 and 8 share a length: one micro-batch
    op = get_operator(TASK)(seq2seq_dir, **options)
    assert type(op).__name__ == "Seq2SeqRecognitionOperator"
    out = op({"audio": rows})
    assert out["error"] == [None] * len(rows)
    call = {k: v for k, v in options.items() if k in ("chunk_length_s", "stride_length_s")}
    generate = {k: v for k, v in options.items() if k not in call}
    for i, clip in enumerate(rows):
        assert out["text"][i] == seq2seq_asr(clip, **call, generate_kwargs=generate)["text"], f"row {i}"
    assert len(set(out["text"])) > 2, "texts should vary with the clip"


def test_seq2seq_model_refuses_whisper_options(seq2seq_dir, clips):
    with pytest.raises(ValueError, match="return_timestamps applies to Whisper models; .* is a moonshine model"):
        get_operator(TASK)(seq2seq_dir, return_timestamps=True)({"audio": [clips[1]]})
