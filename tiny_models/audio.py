"""Tiny Wav2Vec2 models for the audio tasks (hidden 32, 2 layers), with a local CTC vocabulary.

Config choice: feat_extract_norm="layer" with do_stable_layer_norm=True and a feature extractor
that returns an attention mask, as wav2vec2-large-lv60 style checkpoints are. With per-frame
LayerNorm in the conv encoder and a mask, the valid frames of a zero-padded row equal those of
the row run alone, so batched inference can match `transformers.pipeline` (which runs one clip
at a time). A "group" norm model (wav2vec2-base) normalizes each channel over the whole padded
length instead, so padding changes its outputs; the operators batch such models by exact length.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from tiny_models.calibration import recenter_linear

SEED = 0
SAMPLING_RATE = 16_000
KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off"]
# The layout of facebook/wav2vec2-base-960h's vocab: specials, word delimiter, upper-case letters.
CTC_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONISRHDLUMCWFGYPBVK'XJQZ"]


def wav2vec2_config(**overrides):
    from transformers import Wav2Vec2Config

    config = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        # The real conv strides (320 samples per frame) with 16 channels instead of 512.
        conv_dim=(16,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=16,
        layerdrop=0.0,
    )
    config.update(overrides)
    return Wav2Vec2Config(**config)


def feature_extractor(return_attention_mask: bool = True):
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLING_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=return_attention_mask,
    )


def calibration_waveforms(count: int = 24) -> list[np.ndarray]:
    """Varied 0.5-3 s clips at 16 kHz: tones, chirps, noise bursts and mixtures."""
    rng = np.random.default_rng(1234)
    waves = []
    for i in range(count):
        n = int(SAMPLING_RATE * (0.5 + 2.5 * rng.random()))
        t = np.arange(n) / SAMPLING_RATE
        kind = i % 4
        if kind == 0:
            wave = np.sin(2 * np.pi * rng.uniform(80, 4000) * t)
        elif kind == 1:
            f0, f1 = rng.uniform(50, 500), rng.uniform(1000, 7000)
            wave = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1])))
        elif kind == 2:
            wave = rng.normal(0, 1, n) * (np.sin(2 * np.pi * rng.uniform(1, 8) * t) > 0)
        else:
            wave = np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.5 * rng.normal(0, 1, n)
        waves.append((rng.uniform(0.05, 0.9) * wave).astype(np.float32))
    return waves


def _encode(extractor, waves):
    return extractor(waves, sampling_rate=SAMPLING_RATE, padding=True, return_tensors="pt", return_attention_mask=True)


# wav2vec2-base style: group norm in the conv encoder and no attention mask, so padding a
# row changes its outputs. The operators must batch such a model by exact length.
BASE_STYLE = dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False)


def build_audio_classification(out_dir: str, variant: str | None = None) -> str:
    """variant None: large-lv60 style (layer norm, attention mask); "base": wav2vec2-base style;
    "whisper": WhisperForAudioClassification (WhisperFeatureExtractor's log-mel, not a waveform)."""
    from transformers import Wav2Vec2ForSequenceClassification

    if variant == "whisper":
        return _build_whisper_classification(out_dir)
    if variant not in (None, "base"):
        raise ValueError(f"audio-classification variants are None, 'base' and 'whisper', got {variant!r}")
    torch.manual_seed(SEED + 10)
    config = wav2vec2_config(
        num_labels=len(KEYWORDS),
        id2label=dict(enumerate(KEYWORDS)),
        label2id={label: i for i, label in enumerate(KEYWORDS)},
        **(BASE_STYLE if variant == "base" else {}),
    )
    model = Wav2Vec2ForSequenceClassification(config).eval()
    extractor = feature_extractor(return_attention_mask=variant is None)
    with torch.no_grad():
        enc = _encode(extractor, calibration_waveforms())
        hidden = model.projector(model.wav2vec2(**enc).last_hidden_state)
        mask = model._get_feature_vector_attention_mask(hidden.shape[1], enc["attention_mask"])
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    recenter_linear(model.classifier, pooled)
    model.save_pretrained(out_dir, safe_serialization=True)
    extractor.save_pretrained(out_dir)
    return out_dir


def _build_whisper_classification(out_dir: str) -> str:
    """A Whisper encoder with a classification head (mean-pooled projection), over the
    published WhisperFeatureExtractor (80 mel bins, 30 s windows)."""
    from transformers import WhisperConfig, WhisperForAudioClassification

    from tiny_models.whisper import feature_extractor as whisper_extractor

    torch.manual_seed(SEED + 13)
    config = WhisperConfig(
        num_mel_bins=80, d_model=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32, max_source_positions=1500,
        classifier_proj_size=8, num_labels=len(KEYWORDS), id2label=dict(enumerate(KEYWORDS)),
        label2id={label: i for i, label in enumerate(KEYWORDS)},
    )
    model = WhisperForAudioClassification(config).eval()
    extractor = whisper_extractor()
    with torch.no_grad():
        features = extractor(calibration_waveforms(8), sampling_rate=SAMPLING_RATE, return_tensors="pt")
        pooled = model.projector(model.encoder(features["input_features"]).last_hidden_state).mean(dim=1)
    recenter_linear(model.classifier, pooled)
    model.save_pretrained(out_dir, safe_serialization=True)
    extractor.save_pretrained(out_dir)
    return out_dir


def ctc_tokenizer(work_dir: str):
    from transformers import Wav2Vec2CTCTokenizer

    vocab_file = os.path.join(work_dir, "vocab.json")
    with open(vocab_file, "w") as f:
        json.dump({token: i for i, token in enumerate(CTC_VOCAB)}, f)
    return Wav2Vec2CTCTokenizer(
        vocab_file, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>", word_delimiter_token="|"
    )


def build_speech_recognition(out_dir: str, variant: str | None = None) -> str:
    """variant None: Wav2Vec2 CTC; "whisper": openai/whisper-tiny's configuration (whisper.py);
    "moonshine": a sequence-to-sequence model that is not Whisper (the pipeline's "seq2seq")."""
    if variant == "whisper":
        from tiny_models.whisper import build_whisper

        return build_whisper(out_dir)
    if variant == "moonshine":
        return _build_moonshine(out_dir)
    if variant is not None:
        raise ValueError(f"automatic-speech-recognition variants are None, 'whisper' and 'moonshine', got {variant!r}")
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    torch.manual_seed(SEED + 11)
    tokenizer = ctc_tokenizer(out_dir)
    config = wav2vec2_config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Wav2Vec2ForCTC(config).eval()
    extractor = feature_extractor()
    with torch.no_grad():
        enc = _encode(extractor, calibration_waveforms())
        hidden = model.wav2vec2(**enc).last_hidden_state
        mask = model._get_feature_vector_attention_mask(hidden.shape[1], enc["attention_mask"])
        frames = hidden[mask.bool()]
        # Centred and spread, every letter wins some frames, so texts vary with the input.
        recenter_linear(model.lm_head, frames)
        # Favour the CTC blank, as trained models do, so texts read as short words rather
        # than one letter per 20 ms frame; and keep <s>, </s>, <unk> out of the texts.
        model.lm_head.bias[tokenizer.pad_token_id] += 4.0
        for token in ("<s>", "</s>", "<unk>"):
            model.lm_head.bias[tokenizer.convert_tokens_to_ids(token)] -= 20.0
    model.save_pretrained(out_dir, safe_serialization=True)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out_dir)
    return out_dir


def _build_moonshine(out_dir: str) -> str:
    """Moonshine (raw waveform in, tokens out) with a local byte-level BPE. As for the other
    tiny generation models (generation.py): a large initializer range, the unreadable tokens
    suppressed, and a short max_length so that tests stay fast."""
    from transformers import MoonshineConfig, MoonshineForConditionalGeneration, Wav2Vec2FeatureExtractor

    from tiny_models.generation import unreadable_tokens
    from tiny_models.tokenizers import byte_level_bpe_tokenizer

    torch.manual_seed(SEED + 12)
    tokenizer = byte_level_bpe_tokenizer(1000, 512)
    tokenizer.add_special_tokens({"pad_token": "<pad>", "bos_token": "<s>"})
    config = MoonshineConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        encoder_num_hidden_layers=2,
        decoder_num_hidden_layers=2,
        encoder_num_attention_heads=2,
        decoder_num_attention_heads=2,
        encoder_num_key_value_heads=2,
        decoder_num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
        initializer_range=0.5,
    )
    model = MoonshineForConditionalGeneration(config).eval()
    model.generation_config.update(suppress_tokens=unreadable_tokens(tokenizer), min_new_tokens=4, max_length=24)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    # Moonshine checkpoints take the raw waveform, unnormalized, with a mask.
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLING_RATE, padding_value=0.0, do_normalize=False, return_attention_mask=True
    ).save_pretrained(out_dir)
    return out_dir
