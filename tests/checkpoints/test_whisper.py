"""automatic-speech-recognition with Whisper: parity with transformers' v5 pipeline on a tiny
model rebuilt offline with openai/whisper-tiny's checkpoint configuration
(tiny_models/whisper.py), over real speech (espeak-ng clips in tests/fixtures/speech).

Stands for: openai/whisper-tiny, -base, -small, -medium, -large* (multilingual checkpoints with
the same generation config layout). Transcripts must be equal, not close.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from operators import get_operator

TASK = "automatic-speech-recognition"
SPEECH = Path(__file__).resolve().parents[1] / "fixtures" / "speech"
SHORT = ("fox", "stella", "bonjour", "weather")  # 1.3 - 4.1 s
LONG = "lecture"  # 32.7 s: longer than one 30 s window
GREEDY = {"num_beams": 1}


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model(TASK, "whisper")


@pytest.fixture(scope="module")
def asr(model_dir):
    from transformers import pipeline

    return pipeline(TASK, model=model_dir, device="cpu")


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    import soundfile

    return {name: soundfile.read(SPEECH / f"{name}.flac", dtype="float32")[0] for name in (*SHORT, LONG)}


def reference(asr, clip, options: dict) -> dict:
    """The pipeline's answer for our options: generation ones go to generate_kwargs."""
    call = {k: v for k, v in options.items() if k in ("return_timestamps", "chunk_length_s", "stride_length_s")}
    generate = {k: v for k, v in options.items() if k not in call}
    out = asr(clip, **call, generate_kwargs=generate)
    return {"text": out["text"], "chunks": out.get("chunks")}


def assert_parity(op, asr, waves: list[np.ndarray], options: dict) -> dict:
    out = op({"audio": waves})
    assert out["error"] == [None] * len(waves)
    for i, wave in enumerate(waves):
        assert {"text": out["text"][i], "chunks": out["chunks"][i]} == reference(asr, wave, options), f"row {i}"
    return out


def test_checkpoint_configuration_is_whisper_tinys(model_dir):
    from transformers import AutoConfig, AutoFeatureExtractor, AutoTokenizer, GenerationConfig

    config = AutoConfig.from_pretrained(model_dir)
    generation = GenerationConfig.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    ids = tokenizer.convert_tokens_to_ids
    assert (config.model_type, config.num_mel_bins, config.max_source_positions, config.max_target_positions) == (
        "whisper", 80, 1500, 448,
    )
    assert config.decoder_start_token_id == ids("<|startoftranscript|>") == generation.decoder_start_token_id
    assert config.eos_token_id == config.pad_token_id == ids("<|endoftext|>")
    assert generation.is_multilingual and len(generation.lang_to_id) == 99
    assert generation.lang_to_id["<|en|>"] == ids("<|en|>") and generation.lang_to_id["<|su|>"] == ids("<|su|>")
    assert generation.task_to_id == {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")}
    assert generation.forced_decoder_ids == [[1, None], [2, ids("<|transcribe|>")]]
    assert generation.no_timestamps_token_id == ids("<|notimestamps|>")
    assert generation.prev_sot_token_id == ids("<|startofprev|>")
    assert generation.begin_suppress_tokens == [tokenizer.encode(" ", add_special_tokens=False)[0], ids("<|endoftext|>")]
    specials = ["<|startoftranscript|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>"]
    assert set(ids(specials)) <= set(generation.suppress_tokens)
    assert tokenizer.encode('"', add_special_tokens=False)[0] in generation.suppress_tokens
    assert (generation.max_length, generation.max_initial_timestamp_index) == (448, 50)
    assert generation.alignment_heads == [[2, 2], [3, 0], [3, 2], [3, 3], [3, 4], [3, 5]]
    # The special tokens in the published order, then the 1501 timestamps.
    assert ids("<|notimestamps|>") == ids("<|endoftext|>") + 1 + 1 + 99 + 5
    assert ids("<|0.00|>") == ids("<|notimestamps|>") + 1 and ids("<|30.00|>") == ids("<|0.00|>") + 1500
    assert len(tokenizer) == config.vocab_size == ids("<|30.00|>") + 1
    assert (extractor.feature_size, extractor.sampling_rate, extractor.hop_length, extractor.n_fft) == (80, 16000, 160, 400)
    assert (extractor.chunk_length, extractor.return_attention_mask) == (30, False)


def test_short_clips_batched_match_the_pipeline(model_dir, asr, clips, monkeypatch):
    # Greedy; 4 windows of 30 s per micro-batch, so clips of different lengths batch together.
    op = get_operator(TASK)(model_dir, max_batch_samples=4 * 30 * 16_000, **GREEDY)
    assert type(op).__name__ == "WhisperRecognitionOperator"
    sizes = []
    forward_batch = op.forward_batch
    monkeypatch.setattr(op, "forward_batch", lambda w: sizes.append(len(w)) or forward_batch(w))
    waves = [clips[n] for n in (*SHORT, "fox")]
    out = assert_parity(op, asr, waves, GREEDY)
    assert sizes == [4, 1]
    assert out["text"][0] == out["text"][4], "a clip's text must not depend on its micro-batch"
    assert all(out["text"]) and len(set(out["text"])) == len(SHORT), "texts should vary with the clip"
    assert out["chunks"] == [None] * len(waves)


def test_default_generation_is_the_pipelines_beam_search(model_dir, asr, clips):
    op = get_operator(TASK)(model_dir, max_batch_samples=2 * 30 * 16_000)
    # The checkpoint sets max_length, so the pipeline's max_new_tokens=256 is not added;
    # it sets no num_beams, so the pipeline's 5 is.
    assert op.generate_kwargs() == {"num_beams": 5}
    assert_parity(op, asr, [clips["stella"], clips["weather"]], {})


def test_language_and_task(model_dir, asr, clips):
    waves = [clips["bonjour"], clips["fox"]]
    options = {"language": "fr", "task": "translate", **GREEDY}
    op = get_operator(TASK)(model_dir, **options)
    out = assert_parity(op, asr, waves, options)
    detected = get_operator(TASK)(model_dir, **GREEDY)({"audio": waves})["text"]
    assert out["text"] != detected, "forcing language and task should change the decoder prompt"
    for spelling in ("french", "<|fr|>", "FR"):
        assert get_operator(TASK)(model_dir, **{**options, "language": spelling})({"audio": waves})["text"] == out["text"]


def test_unknown_language_or_task_is_a_configuration_error(model_dir, clips, tmp_path, tiny_model):
    from pydantic import ValidationError

    Op = get_operator(TASK)
    batch = {"audio": [clips["stella"]]}

    def config_error(model: str, **options):
        """The error of the operator's first call: the whole call fails, no row is run."""
        with pytest.raises(ValueError) as error:
            Op(model, **options)(batch)
        return str(error.value)

    assert f"language 'klingon' is not a language of '{model_dir}'" in config_error(model_dir, language="klingon")
    assert f"task 'summarize' is not a task of '{model_dir}'" in config_error(model_dir, task="summarize")
    # Serve checks per-request parameters through with_options: a ValidationError (a 422 there).
    op = Op(model_dir, **GREEDY).load()
    with pytest.raises(ValidationError, match="language 'xx' is not a language"):
        op.with_options(language="xx")

    def edited(name: str, **changes) -> str:
        copy = tmp_path / name
        shutil.copytree(model_dir, copy)
        path = copy / "generation_config.json"
        config = json.loads(path.read_text())
        config.update(changes)
        path.write_text(json.dumps(config))
        return str(copy)

    published = json.loads(Path(model_dir, "generation_config.json").read_text())
    lang_to_id, task_to_id = published["lang_to_id"], published["task_to_id"]
    without_french = edited("no-fr", lang_to_id={k: v for k, v in lang_to_id.items() if k != "<|fr|>"})
    assert "language 'fr' is not a language of" in config_error(without_french, language="fr")
    assert Op(without_french, language="de", **GREEDY)(batch)["error"] == [None]
    without_translate = edited("no-translate", task_to_id={"transcribe": task_to_id["transcribe"]})
    assert "knows ['transcribe']" in config_error(without_translate, task="translate")
    english_only = edited("en-only", is_multilingual=False)
    assert "English-only Whisper model; it takes no language or task" in config_error(english_only, task="transcribe")
    ctc = tiny_model(TASK)
    with pytest.raises(ValueError, match=f"language applies to sequence-to-sequence models such as Whisper; '{ctc}' is a CTC model"):
        Op(ctc, language="en")({"audio": [clips["stella"]]})


@pytest.mark.parametrize(
    "options",
    [{"return_timestamps": True, **GREEDY}, {"chunk_length_s": 30, **GREEDY}, {"chunk_length_s": 8, "stride_length_s": 2, "return_timestamps": True, **GREEDY}],
    ids=["sequential-long-form", "chunked-30s", "chunked-8s-timestamps"],
)
def test_long_form_and_timestamps(model_dir, asr, clips, options):
    # Without chunk_length_s a clip over 30 s goes to generate()'s own long-form decoding, which
    # needs timestamps; with it, the pipeline's chunks merge by their strides in _decode_asr.
    op = get_operator(TASK)(model_dir, max_batch_samples=8 * 30 * 16_000, **options)
    out = assert_parity(op, asr, [clips[LONG], clips["fox"], clips["weather"]], options)
    if options.get("return_timestamps"):
        assert all(len(chunks) >= 1 for chunks in out["chunks"])
        assert all(isinstance(c["timestamp"], tuple) and len(c["timestamp"]) == 2 for c in out["chunks"][0])
    else:
        assert out["chunks"] == [None] * 3


def test_windows_of_many_rows_share_micro_batches(model_dir, clips, monkeypatch):
    op = get_operator(TASK)(model_dir, chunk_length_s=8, stride_length_s=2, max_batch_samples=16 * 30 * 16_000, **GREEDY)
    waves = [clips[LONG], clips["weather"]]
    alone = [op({"audio": [w]})["text"][0] for w in waves]
    sizes = []
    forward_batch = op.forward_batch
    monkeypatch.setattr(op, "forward_batch", lambda w: sizes.append(len(w)) or forward_batch(w))
    assert op({"audio": waves})["text"] == alone
    windows = sum(len(op.chunks(len(w))) for w in waves)
    assert sizes == [windows] and windows > len(op.chunks(len(waves[0])))


def test_long_clip_without_timestamps_fails_its_row_as_the_pipeline_raises(model_dir, asr, clips):
    out = get_operator(TASK)(model_dir, **GREEDY)({"audio": [clips[LONG], clips["fox"]]})
    assert out["error"][0] == (
        "input: audio is 32.7 s, longer than Whisper's 30 s window: set chunk_length_s, or "
        "return_timestamps for Whisper's own long-form decoding"
    )
    with pytest.raises(ValueError, match="more than 3000 mel input features"):
        asr(clips[LONG], generate_kwargs=GREEDY)
    assert out["error"][1] is None and out["text"][1] == reference(asr, clips["fox"], GREEDY)["text"]


def test_encoded_files_and_bad_rows(model_dir, clips):
    op = get_operator(TASK)(model_dir, **GREEDY)
    flac = (SPEECH / "stella.flac").read_bytes()
    out = op({"audio": [flac, None, b"not audio", clips["stella"]]})
    assert out["error"][0] is None and out["error"][3] is None
    assert out["text"][0] == out["text"][3]
    assert out["error"][1] == "input: expected audio bytes, got None"
    assert out["error"][2].startswith("decode: ")
    assert out["text"][1:3] == [None, None]


def test_windows_are_stored_compactly_and_rebuilt_exactly(model_dir, clips):
    from transformers import WhisperFeatureExtractor

    from operators.tasks.whisper_recognition import _expand, _mask

    op = get_operator(TASK)(model_dir)
    extractor = WhisperFeatureExtractor.from_pretrained(model_dir)
    wave = clips["stella"]
    (window,) = op.preprocess({"audio": [wave]})["features"][0]["windows"]
    expected = extractor(wave, sampling_rate=16_000, return_attention_mask=True, return_tensors="np")
    assert np.array_equal(_expand(window), expected["input_features"][0])
    assert np.array_equal(_mask(window), expected["attention_mask"][0])
    # 1.3 s of audio keeps ~130 of the 3000 frames.
    assert window["mel"].shape[1] < 200
