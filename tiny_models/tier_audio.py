"""Tiny models rebuilding the published configurations of the audio families users bring most
(audio-classification and automatic-speech-recognition), offline. See checkpoints.py for the rules a builder follows."""

from __future__ import annotations

import json
import os
from typing import Callable

import torch

from tiny_models.calibration import recenter_linear

SEED = 50


def write_json(path: str, data: dict) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)


# ---------------------------------------------------------------------------- audio-classification

# MIT/ast-finetuned-audioset-10-10-0.4593's preprocessor_config.json.
AST_AUDIOSET_EXTRACTOR = {
    "do_normalize": True,
    "feature_extractor_type": "ASTFeatureExtractor",
    "feature_size": 1,
    "max_length": 1024,
    "mean": -4.2677393,
    "num_mel_bins": 128,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": False,
    "sampling_rate": 16000,
    "std": 4.5689974,
}
AUDIOSET_CLASSES = 527


def build_ast_audioset(out_dir: str) -> str:
    """MIT/ast-finetuned-audioset-10-10-0.4593: 16 x 16 patches over 128 mel bins x 1024 frames
    with frequency and time strides 10 (12 x 101 patches plus the CLS and distillation tokens),
    qkv bias, gelu, layer_norm_eps 1e-12, AudioSet's 527 classes with no problem_type (the
    pipeline applies softmax), and the published ASTFeatureExtractor settings (128 bins,
    max_length 1024, AudioSet mean/std normalization, no attention mask). Shrunk: hidden 32,
    2 layers, 2 heads; the class names are placeholders (527 of them)."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    from tiny_models.audio import calibration_waveforms

    torch.manual_seed(SEED)
    labels = [f"audioset class {i}" for i in range(AUDIOSET_CLASSES)]
    config = ASTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.02,
        layer_norm_eps=1e-12, patch_size=16, qkv_bias=True, frequency_stride=10, time_stride=10,
        max_length=1024, num_mel_bins=128, architectures=["ASTForAudioClassification"],
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
    )
    model = ASTForAudioClassification(config).eval()
    extractor = ASTFeatureExtractor(**{k: v for k, v in AST_AUDIOSET_EXTRACTOR.items() if k != "feature_extractor_type"})
    with torch.no_grad():
        features = extractor(calibration_waveforms(12), sampling_rate=16_000, return_tensors="pt")
        pooled = model.classifier.layernorm(model.audio_spectrogram_transformer(**features).pooler_output)
    recenter_linear(model.classifier.dense, pooled)
    model.save_pretrained(out_dir, safe_serialization=True)
    write_json(os.path.join(out_dir, "preprocessor_config.json"), AST_AUDIOSET_EXTRACTOR)
    return out_dir


# ---------------------------------------------------------------------------- speech recognition


def build_whisper_large_v3(out_dir: str) -> str:
    """openai/whisper-large-v3: 128 mel bins (feature extractor and model), 100 languages
    (Cantonese added), <|nospeech|>, its suppress list, pad token and alignment heads, and no
    forced_decoder_ids. See whisper.py's WHISPER_LARGE_V3 for what is kept and shrunk."""
    from tiny_models.whisper import WHISPER_LARGE_V3, build_whisper

    return build_whisper(out_dir, WHISPER_LARGE_V3)


# facebook/wav2vec2-large-960h-lv60-self's config.json, less the sizes (hidden 1024, 24 layers,
# 16 heads, ffn 4096, 512 conv channels), which the builder shrinks.
WAV2VEC2_LV60_CONFIG = {
    "activation_dropout": 0.1,
    "apply_spec_augment": True,
    "architectures": ["Wav2Vec2ForCTC"],
    "attention_dropout": 0.1,
    "bos_token_id": 1,
    "conv_bias": True,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "ctc_loss_reduction": "sum",
    "ctc_zero_infinity": False,
    "do_stable_layer_norm": True,
    "eos_token_id": 2,
    "feat_extract_activation": "gelu",
    "feat_extract_dropout": 0.0,
    "feat_extract_norm": "layer",
    "feat_proj_dropout": 0.1,
    "final_dropout": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout": 0.1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-05,
    "layerdrop": 0.1,
    "mask_feature_length": 10,
    "mask_feature_prob": 0.0,
    "mask_time_length": 10,
    "mask_time_prob": 0.05,
    "model_type": "wav2vec2",
    "num_conv_pos_embedding_groups": 16,
    "num_conv_pos_embeddings": 128,
    "num_feat_extract_layers": 7,
    "pad_token_id": 0,
    "vocab_size": 32,
}
# Its preprocessor_config.json: unlike wav2vec2-base, it returns an attention mask.
WAV2VEC2_LV60_EXTRACTOR = {
    "do_normalize": True,
    "feature_extractor_type": "Wav2Vec2FeatureExtractor",
    "feature_size": 1,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": True,
    "sampling_rate": 16000,
}


def build_wav2vec2_large_lv60_self(out_dir: str) -> str:
    """facebook/wav2vec2-large-960h-lv60-self: layer norm in every conv layer of the feature
    encoder (feat_extract_norm "layer", conv_bias), the stable layer-norm transformer
    (do_stable_layer_norm: norm before attention), a 128-wide positional conv in 16 groups,
    LibriSpeech's 32-symbol CTC vocabulary, and a feature extractor that returns an attention
    mask, so padded clips batch together. Shrunk: conv channels 16, hidden 32, 2 layers, 2 heads."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC, Wav2Vec2Processor

    from tiny_models.audio import calibration_waveforms
    from tiny_models.checkpoints import wav2vec2_960h_tokenizer

    torch.manual_seed(SEED + 1)
    tokenizer = wav2vec2_960h_tokenizer(out_dir)
    config = Wav2Vec2Config(
        **{k: v for k, v in WAV2VEC2_LV60_CONFIG.items() if k != "model_type"},
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=[16] * 7,
    )
    model = Wav2Vec2ForCTC(config).eval()
    settings = {k: v for k, v in WAV2VEC2_LV60_EXTRACTOR.items() if k != "feature_extractor_type"}
    extractor = Wav2Vec2FeatureExtractor(**settings)
    with torch.no_grad():
        encoded = extractor(
            calibration_waveforms(12), sampling_rate=16_000, padding=True, return_attention_mask=True,
            return_tensors="pt",
        )
        hidden = model.wav2vec2(**encoded).last_hidden_state
        mask = model._get_feature_vector_attention_mask(hidden.shape[1], encoded["attention_mask"])
        # centred and spread, every letter wins some frames; the blank favoured, as in a
        # trained CTC head, so that texts read as short words; <s>, </s>, <unk> kept out
        recenter_linear(model.lm_head, hidden[mask.bool()])
        model.lm_head.bias[0] += 4.0
        model.lm_head.bias[1:4] -= 20.0
    model.save_pretrained(out_dir, safe_serialization=True)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out_dir)
    write_json(os.path.join(out_dir, "preprocessor_config.json"), WAV2VEC2_LV60_EXTRACTOR)
    return out_dir


# hub id -> (task, builder(out_dir) -> out_dir)
CHECKPOINTS: dict[str, tuple[str, Callable[[str], str]]] = {
    "MIT/ast-finetuned-audioset-10-10-0.4593": ("audio-classification", build_ast_audioset),
    "openai/whisper-large-v3": ("automatic-speech-recognition", build_whisper_large_v3),
    "facebook/wav2vec2-large-960h-lv60-self": ("automatic-speech-recognition", build_wav2vec2_large_lv60_self),
}
