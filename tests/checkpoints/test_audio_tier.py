"""The audio families users bring most, each rebuilt offline from its published configuration
(tiny_models/tier_audio.py) and held to transformers.pipeline on real speech
(tests/fixtures/speech) and varied test sounds:

* MIT/ast-finetuned-audioset-10-10-0.4593: audio-classification over ASTFeatureExtractor's
  filterbanks (issue 24, problem 4: main refused it);
* openai/whisper-large-v3: 128 mel bins, Cantonese, long-form with timestamps;
* facebook/wav2vec2-large-960h-lv60-self: layer-norm features with an attention mask, so clips
  of different lengths pad into one micro-batch.

Labels and transcripts must be equal; scores within SCORE_TOL.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from operators import get_operator
from tests.checkpoints.test_whisper import assert_parity
from tests.operators import sounds

SPEECH = Path(__file__).resolve().parents[1] / "fixtures" / "speech"
SHORT = ("fox", "stella", "bonjour", "weather")  # 1.3 - 4.1 s
LONG = "lecture"  # 32.7 s
GREEDY = {"num_beams": 1}
ASR = "automatic-speech-recognition"
# fp32 on the CPU: stacking rows of one shape changes summation order only (~1e-6 on softmax
# scores); 1e-4 still catches any difference in features, normalization or pooling.
SCORE_TOL = 1e-4

AST = "MIT/ast-finetuned-audioset-10-10-0.4593"
WHISPER_V3 = "openai/whisper-large-v3"
LV60 = "facebook/wav2vec2-large-960h-lv60-self"


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    import soundfile

    return {name: soundfile.read(SPEECH / f"{name}.flac", dtype="float32")[0] for name in (*SHORT, LONG)}


def count_batches(op, monkeypatch) -> list[int]:
    sizes: list[int] = []
    forward_batch = op.forward_batch
    monkeypatch.setattr(op, "forward_batch", lambda rows: sizes.append(len(rows)) or forward_batch(rows))
    return sizes


# ---------------------------------------------------------------------------- AST


@pytest.fixture(scope="module")
def ast_dir(checkpoint_model):
    return checkpoint_model(AST)


@pytest.fixture(scope="module")
def ast_pipeline(ast_dir):
    from transformers import pipeline

    return pipeline("audio-classification", model=ast_dir, device="cpu")


def test_ast_published_settings(ast_dir):
    from transformers import ASTFeatureExtractor

    op = get_operator("audio-classification")(ast_dir)
    assert type(op).__name__ == "SpectrogramClassificationOperator"
    extractor = op.processor
    assert isinstance(extractor, ASTFeatureExtractor)
    assert (extractor.num_mel_bins, extractor.max_length, extractor.sampling_rate) == (128, 1024, 16_000)
    assert (extractor.mean, extractor.std, extractor.do_normalize) == (-4.2677393, 4.5689974, True)
    assert extractor.return_attention_mask is False
    config = op.config
    assert (config.num_mel_bins, config.max_length, config.patch_size) == (128, 1024, 16)
    assert (config.frequency_stride, config.time_stride, config.num_labels) == (10, 10, 527)
    assert getattr(config, "problem_type", None) is None  # the pipeline applies softmax


def test_ast_batched_clips_match_the_pipeline(ast_dir, ast_pipeline, clips, monkeypatch):
    """Issue 24, problem 4: main refused AST ("AudioClassificationOperator runs waveform
    models ... got ASTFeatureExtractor"); the pipeline labels the clips."""
    waves = [clips[n] for n in SHORT] + sounds.varied_clips()[:6]
    # 3 rows of AST's 10.24 s window per micro-batch: several batches, each stacked unpadded.
    op = get_operator("audio-classification")(ast_dir, top_k=3, max_batch_samples=3 * 163_840)
    sizes = count_batches(op, monkeypatch)
    out = op({"audio": waves})
    assert out["error"] == [None] * len(waves)
    assert sizes == [3, 3, 3, 1]
    for i, wave in enumerate(waves):
        expected = ast_pipeline(wave, top_k=3)
        assert [s["label"] for s in out["scores"][i]] == [e["label"] for e in expected], f"clip {i}"
        assert [s["score"] for s in out["scores"][i]] == pytest.approx([e["score"] for e in expected], abs=SCORE_TOL)
        assert (out["label"][i], out["score"][i]) == (expected[0]["label"], out["scores"][i][0]["score"])
    assert len(set(out["label"])) >= 4, "labels should vary with the clip"


def test_ast_features_are_the_extractors_own(ast_dir, clips):
    """Preprocess calls the feature extractor itself: the features equal its output."""
    from transformers import AutoFeatureExtractor

    op = get_operator("audio-classification")(ast_dir)
    (features,) = op.preprocess({"audio": [clips["stella"]]})["features"]
    expected = AutoFeatureExtractor.from_pretrained(ast_dir)(clips["stella"], sampling_rate=16_000, return_tensors="np")
    assert list(features["inputs"]) == list(expected.keys()) == ["input_values"]
    assert np.array_equal(features["inputs"]["input_values"], expected["input_values"][0])
    assert features["inputs"]["input_values"].shape == (1024, 128)


def test_ast_bad_rows_fail_alone(ast_dir, ast_pipeline, clips):
    op = get_operator("audio-classification")(ast_dir)
    blip = np.full(100, 0.1, np.float32)  # under one 25 ms filterbank frame
    out = op({"audio": [None, sounds.corrupt_bytes(), blip, sounds.encode(clips["fox"], fmt="FLAC")]})
    assert out["error"][0] == "input: expected audio bytes, got None"
    assert out["error"][1].startswith("decode: cannot decode audio: ")
    assert out["error"][2] == (
        "preprocess: ASTFeatureExtractor cannot compute features for a clip of 100 samples at 16000 Hz: "
        "negative dimensions are not allowed"
    )
    with pytest.raises(ValueError, match="negative dimensions"):  # the pipeline fails on it too
        ast_pipeline(blip)
    assert out["error"][3] is None
    expected = ast_pipeline(clips["fox"], top_k=1)[0]
    assert out["label"][3] == expected["label"] and out["score"][3] == pytest.approx(expected["score"], abs=SCORE_TOL)


# ---------------------------------------------------------------------------- Whisper large-v3


@pytest.fixture(scope="module")
def whisper_dir(checkpoint_model):
    return checkpoint_model(WHISPER_V3)


@pytest.fixture(scope="module")
def whisper_pipeline(whisper_dir):
    from transformers import pipeline

    return pipeline(ASR, model=whisper_dir, device="cpu")


def test_whisper_large_v3_published_settings(whisper_dir):
    from transformers import AutoConfig, AutoFeatureExtractor, AutoTokenizer, GenerationConfig

    config = AutoConfig.from_pretrained(whisper_dir)
    generation = GenerationConfig.from_pretrained(whisper_dir)
    tokenizer = AutoTokenizer.from_pretrained(whisper_dir)
    extractor = AutoFeatureExtractor.from_pretrained(whisper_dir)
    ids = tokenizer.convert_tokens_to_ids
    assert config.num_mel_bins == extractor.feature_size == 128
    assert extractor.mel_filters.shape == (201, 128)
    assert len(generation.lang_to_id) == 100 and generation.lang_to_id["<|yue|>"] == ids("<|yue|>")
    assert ids("<|translate|>") == ids("<|yue|>") + 1
    assert generation.task_to_id == {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")}
    assert generation.no_timestamps_token_id == ids("<|notimestamps|>") == ids("<|nospeech|>") + 1
    v3_specials = ["<|startoftranscript|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>"]
    assert set(ids(v3_specials)) <= set(generation.suppress_tokens)
    assert generation.forced_decoder_ids is None
    assert generation.alignment_heads == [[7, 0], [10, 17], [12, 18], [13, 12], [16, 1], [17, 14], [19, 11], [21, 4], [24, 1], [25, 6]]
    assert (config.decoder_layers, config.decoder_attention_heads) == (32, 20)
    # large-v3 pads with the last BPE piece, not <|endoftext|>
    assert config.pad_token_id == generation.pad_token_id == ids("<|endoftext|>") - 1


def test_whisper_large_v3_short_clips_batched(whisper_dir, whisper_pipeline, clips, monkeypatch):
    op = get_operator(ASR)(whisper_dir, max_batch_samples=4 * 30 * 16_000, **GREEDY)
    assert type(op).__name__ == "WhisperRecognitionOperator"
    sizes = count_batches(op, monkeypatch)
    out = assert_parity(op, whisper_pipeline, [clips[n] for n in SHORT], GREEDY)
    assert sizes == [4]
    assert all(out["text"]) and len(set(out["text"])) == len(SHORT), "texts should vary with the clip"


def test_whisper_large_v3_cantonese(whisper_dir, whisper_pipeline, clips):
    # <|yue|> exists only in large-v3's vocabulary (the 100th language).
    options = {"language": "cantonese", "task": "translate", **GREEDY}
    op = get_operator(ASR)(whisper_dir, **options)
    out = assert_parity(op, whisper_pipeline, [clips["bonjour"], clips["fox"]], options)
    detected = get_operator(ASR)(whisper_dir, **GREEDY)({"audio": [clips["bonjour"], clips["fox"]]})["text"]
    assert out["text"] != detected, "forcing language and task should change the decoder prompt"


def test_whisper_large_v3_long_form_with_timestamps(whisper_dir, whisper_pipeline, clips):
    options = {"return_timestamps": True, **GREEDY}
    op = get_operator(ASR)(whisper_dir, max_batch_samples=8 * 30 * 16_000, **options)
    out = assert_parity(op, whisper_pipeline, [clips[LONG], clips["fox"]], options)
    assert all(len(chunks) >= 1 for chunks in out["chunks"])
    assert out["chunks"][0][-1]["timestamp"][1] > 30, "the lecture's segments run past the first window"


# ---------------------------------------------------------------------------- wav2vec2 lv60


@pytest.fixture(scope="module")
def lv60_dir(checkpoint_model):
    return checkpoint_model(LV60)


def test_wav2vec2_lv60_published_settings(lv60_dir):
    op = get_operator(ASR)(lv60_dir)
    assert type(op).__name__ == "SpeechRecognitionOperator"
    assert op.processor.return_attention_mask is True
    assert op.config.feat_extract_norm == "layer" and op.config.do_stable_layer_norm is True and op.config.conv_bias
    assert (op.config.num_conv_pos_embeddings, op.config.num_conv_pos_embedding_groups) == (128, 16)
    assert op.config.vocab_size == 32 and op.tokenizer.convert_ids_to_tokens(4) == "|"
    assert op.padding_is_exact, "layer norm and a mask: padded rows keep their answer"


def test_wav2vec2_lv60_padded_batch_matches_the_pipeline(lv60_dir, clips, monkeypatch):
    from transformers import pipeline

    asr = pipeline(ASR, model=lv60_dir, device="cpu")
    waves = [clips[n] for n in SHORT] + sounds.varied_clips()[:4]
    op = get_operator(ASR)(lv60_dir, max_batch_samples=8 * 12 * 16_000)  # the longest clip is 12 s
    sizes = count_batches(op, monkeypatch)
    out = op({"audio": waves})
    assert out["error"] == [None] * len(waves)
    assert sizes == [len(waves)], "clips of different lengths pad into one micro-batch"
    for i, wave in enumerate(waves):
        assert out["text"][i] == asr(wave)["text"], f"clip {i}"
    assert all(out["text"]) and len(set(out["text"])) == len(waves), "texts should vary with the clip"
    chunked = get_operator(ASR)(lv60_dir, chunk_length_s=8)({"audio": [clips[LONG]]})
    assert chunked["text"] == [asr(clips[LONG], chunk_length_s=8)["text"]]
