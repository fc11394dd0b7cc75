"""Tiny models that rebuild the configuration of well-known hub checkpoints, offline.

Each builder writes the checkpoint's published settings (structural config flags, processor
and tokenizer settings, generation config) and shrinks only sizes that do not change
behaviour: hidden widths, layer counts, vocabularies where the tokenizer is local. Where the
published file has a legacy layout that transformers converts on load (DETR's timm backbone
flags, its `size`/`max_size` processor keys), the legacy file itself is written, so the tests
cover the conversion real users hit.

    from tiny_models.checkpoints import build_checkpoint_model
    path = build_checkpoint_model("facebook/detr-resnet-50", "/tmp/models")
"""

from __future__ import annotations

import json
import os
from typing import Callable

import torch

from tiny_models.calibration import recenter_linear

SEED = 20

# facebook/detr-resnet-50's id2label: COCO's 91 category ids, "N/A" for the ids COCO skips.
COCO_LABELS = [
    "N/A", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A",
    "N/A", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "N/A",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "N/A", "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
]


def write_json(path: str, data: dict) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)


def id2label(labels: list[str]) -> dict:
    """id2label/label2id as the hub files hold them (string keys; a repeated name keeps its last id)."""
    return {
        "id2label": {str(i): label for i, label in enumerate(labels)},
        "label2id": {label: i for i, label in enumerate(labels)},
    }


# ---------------------------------------------------------------------------- vision


def build_detr_resnet_50(out_dir: str) -> str:
    """facebook/detr-resnet-50: timm resnet50 backbone (not pretrained, nothing downloaded),
    100 queries, COCO's 91 labels, DetrImageProcessor at shortest edge 800 / longest 1333 with
    padding. Shrunk: the transformer (d_model 32, one encoder and one decoder layer).

    config.json and preprocessor_config.json keep the published legacy keys
    (use_timm_backbone, backbone, use_pretrained_backbone; size 800 with max_size 1333),
    which transformers 5 converts on load."""
    from transformers import DetrConfig, DetrForObjectDetection
    from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil

    from tiny_models.vision import calibration_images

    published = {
        "architectures": ["DetrForObjectDetection"],
        "model_type": "detr",
        "backbone": "resnet50",
        "use_timm_backbone": True,
        "use_pretrained_backbone": True,
        "backbone_config": None,
        "dilation": False,
        "num_channels": 3,
        "num_queries": 100,
        "position_embedding_type": "sine",
        "auxiliary_loss": False,
        "activation_function": "relu",
        "dropout": 0.1,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "encoder_layerdrop": 0.0,
        "decoder_layerdrop": 0.0,
        "init_std": 0.02,
        "init_xavier_std": 1.0,
        "is_encoder_decoder": True,
        "max_position_embeddings": 1024,
        "scale_embedding": False,
        # shrunk from d_model 256, 6 + 6 layers, 8 heads, ffn 2048
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "num_hidden_layers": 1,
        **id2label(COCO_LABELS),
    }
    torch.manual_seed(SEED)
    # init_std only seeds the random weights (config.json keeps the published 0.02). At 0.02,
    # and with query embeddings of std 0.02, cross-attention is uniform: all 100 queries gave
    # one label and one box per image. 0.3 and queries scaled x30 gave 10-20 labels and
    # boxes that differ per query.
    config = DetrConfig.from_dict({**published, "init_std": 0.3})
    model = DetrForObjectDetection(config).eval()
    small = DetrImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96})
    with torch.no_grad():
        model.model.query_position_embeddings.weight.mul_(30.0)
        # The class head is calibrated on small inputs (cheap through resnet50).
        queries = torch.cat(
            [
                model.model(**small(images=[im], return_tensors="pt")).last_hidden_state[0]
                for im in calibration_images(8)
            ]
        )
    recenter_linear(model.class_labels_classifier, queries, scale=5.0)
    model.save_pretrained(out_dir, safe_serialization=True)
    write_json(os.path.join(out_dir, "config.json"), published)
    write_json(
        os.path.join(out_dir, "preprocessor_config.json"),
        {
            "do_normalize": True,
            "do_resize": True,
            "feature_extractor_type": "DetrFeatureExtractor",
            "format": "coco_detection",
            "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225],
            "max_size": 1333,
            "size": 800,
        },
    )
    return out_dir


def build_vit_base_patch16_224(out_dir: str) -> str:
    """google/vit-base-patch16-224: 224 px inputs in 16 px patches (197 positions), gelu,
    layer_norm_eps 1e-12, qkv_bias, 1000 ImageNet classes, and the published legacy
    preprocessor_config.json (ViTFeatureExtractor, size 224, bilinear, mean/std 0.5).
    Shrunk: hidden 32, 2 layers; the class names are placeholders (1000 of them)."""
    from transformers import ViTConfig, ViTForImageClassification
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    from tiny_models.vision import calibration_images

    torch.manual_seed(SEED + 4)
    labels = [f"imagenet class {i}" for i in range(1000)]
    config = ViTConfig(
        image_size=224, patch_size=16, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, hidden_act="gelu", layer_norm_eps=1e-12, qkv_bias=True,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **id2label(labels),
    )
    model = ViTForImageClassification(config).eval()
    processor = ViTImageProcessorPil(size={"height": 224, "width": 224}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    with torch.no_grad():
        pixels = torch.cat(
            [processor(images=[im], return_tensors="pt")["pixel_values"] for im in calibration_images(16)]
        )
        recenter_linear(model.classifier, model.vit(pixel_values=pixels).last_hidden_state[:, 0])
    model.save_pretrained(out_dir, safe_serialization=True)
    write_json(
        os.path.join(out_dir, "preprocessor_config.json"),
        {
            "do_normalize": True,
            "do_resize": True,
            "feature_extractor_type": "ViTFeatureExtractor",
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "resample": 2,
            "size": 224,
        },
    )
    return out_dir


def build_glpn_kitti(out_dir: str) -> str:
    """vinvino02/glpn-kitti: 4 Mix-Transformer stages (patch sizes 7/3/3/3, strides 4/2/2/2,
    reduction ratios 8/4/2/1, mlp ratio 4), max_depth 80 (KITTI's range in metres), and the
    published legacy preprocessor_config.json (GLPNFeatureExtractor: sizes rounded down to a
    multiple of 32, bilinear, rescale, no normalization). Shrunk: widths 8-32, one block per
    stage, decoder width 16."""
    from transformers import GLPNConfig, GLPNForDepthEstimation

    torch.manual_seed(SEED + 5)
    config = GLPNConfig(
        num_channels=3, num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1],
        hidden_sizes=[8, 16, 32, 32], patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2],
        num_attention_heads=[1, 1, 2, 2], mlp_ratios=[4, 4, 4, 4], hidden_act="gelu",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, drop_path_rate=0.1, layer_norm_eps=1e-6,
        decoder_hidden_size=16, max_depth=80, head_in_index=-1,
    )
    model = GLPNForDepthEstimation(config).eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    write_json(
        os.path.join(out_dir, "preprocessor_config.json"),
        {
            "do_rescale": True,
            "do_resize": True,
            "feature_extractor_type": "GLPNFeatureExtractor",
            "resample": 2,
            "size_divisor": 32,
        },
    )
    return out_dir


# ---------------------------------------------------------------------------- audio

# facebook/wav2vec2-base-960h's vocab.json: CTC blank <pad>, specials, word delimiter, and the
# upper-case letters by their frequency in LibriSpeech.
WAV2VEC2_960H_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"]


def wav2vec2_960h_tokenizer(out_dir: str):
    """The published LibriSpeech 32-symbol character CTC tokenizer of the wav2vec2 960h
    checkpoints, its vocab.json written into out_dir."""
    from transformers import Wav2Vec2CTCTokenizer

    vocab_file = os.path.join(out_dir, "vocab.json")
    write_json(vocab_file, {token: i for i, token in enumerate(WAV2VEC2_960H_VOCAB)})
    return Wav2Vec2CTCTokenizer(
        vocab_file, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        word_delimiter_token="|", do_lower_case=False,
    )


def build_wav2vec2_base_960h(out_dir: str) -> str:
    """facebook/wav2vec2-base-960h: group norm in the conv feature encoder
    (feat_extract_norm "group", do_stable_layer_norm false, conv_bias false), the real conv
    kernels and strides, a 128-wide positional conv in 16 groups, the published 32-symbol CTC
    vocabulary, and a feature extractor that returns NO attention mask (so zero padding
    changes the model's output). Shrunk: conv channels 16, hidden 32, 2 layers."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC, Wav2Vec2Processor

    from tiny_models.audio import calibration_waveforms

    torch.manual_seed(SEED + 6)
    tokenizer = wav2vec2_960h_tokenizer(out_dir)
    config = Wav2Vec2Config(
        vocab_size=len(WAV2VEC2_960H_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, hidden_act="gelu", feat_extract_activation="gelu",
        feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False,
        conv_dim=(16,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
        ctc_loss_reduction="sum", ctc_zero_infinity=False, layerdrop=0.1,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    model = Wav2Vec2ForCTC(config).eval()
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16_000, padding_value=0.0, padding_side="right",
        do_normalize=True, return_attention_mask=False,
    )
    with torch.no_grad():
        # one clip at a time: this model has no use for a padding mask
        frames = torch.cat(
            [
                model.wav2vec2(**extractor(w, sampling_rate=16_000, return_tensors="pt")).last_hidden_state[0]
                for w in calibration_waveforms(12)
            ]
        )
        # centred and spread, every letter wins some frames; the blank favoured, as in a
        # trained CTC head, so that texts read as short words; <s>, </s>, <unk> kept out
        recenter_linear(model.lm_head, frames)
        model.lm_head.bias[0] += 4.0
        model.lm_head.bias[1:4] -= 20.0
    model.save_pretrained(out_dir, safe_serialization=True)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out_dir)
    return out_dir


# ---------------------------------------------------------------------------- generation

# Random weights give near-flat logits at the published initializer ranges, so greedy and beam
# search repeat one token (or a seq2seq model emits EOS at once). The builders draw the weights
# at a wider range and write the published value into config.json; only the weights differ.


def build_gpt2(out_dir: str) -> str:
    """gpt2: GPT2LMHeadModel with n_positions 1024, gelu_new, '<|endoftext|>' as bos = eos = unk
    on the last id (50256 in the real vocab), NO pad token, task_specific_params
    {"text-generation": {"do_sample": true, "max_length": 50}} (read by no v5 pipeline), and a
    generation config of only bos/eos, so the pipeline's defaults (max_new_tokens 256,
    do_sample, temperature 0.7) apply. Shrunk: n_embd 32, 2 layers, a local 1000-token BPE."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from tiny_models.generation import save
    from tiny_models.tokenizers import byte_level_bpe_tokenizer

    torch.manual_seed(SEED + 1)
    tokenizer = byte_level_bpe_tokenizer(1000, 1024, eos_last=True)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=1024,
        n_ctx=1024,
        n_embd=32,
        n_layer=2,
        n_head=2,
        activation_function="gelu_new",
        resid_pdrop=0.1,
        embd_pdrop=0.1,
        attn_pdrop=0.1,
        layer_norm_epsilon=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        summary_type="cls_index",
        summary_use_proj=True,
        summary_activation=None,
        summary_proj_to_labels=True,
        summary_first_dropout=0.1,
        task_specific_params={"text-generation": {"do_sample": True, "max_length": 50}},
        initializer_range=0.4,
    )
    model = GPT2LMHeadModel(config).eval()
    model.config.initializer_range = 0.02
    return save(model, tokenizer, out_dir)


def build_t5_small(out_dir: str) -> str:
    """t5-small: relu feed-forward, 32 relative-attention buckets, tied embeddings, pad 0 / eos 1
    / decoder start 0, a tokenizer with 100 <extra_id_*> sentinels and a model vocabulary
    padded past the tokenizer (32128 for 32100 tokens), and its task_specific_params as
    published: summarization (prefix "summarize: ", num_beams 4, length_penalty 2.0, min_length
    30, max_length 200, no_repeat_ngram_size 3, early_stopping) and translation en->de/fr/ro
    (prefixes, num_beams 4, max_length 300, early_stopping). The generation config holds only
    the token ids. Shrunk: d_model 32, 2 + 2 layers, a local 1000-piece Unigram vocabulary."""
    from tokenizers import processors
    from transformers import T5Config, T5ForConditionalGeneration, T5TokenizerFast

    from tiny_models.generation import save
    from tiny_models.tokenizers import train_unigram

    torch.manual_seed(SEED + 2)
    tok = train_unigram(["<pad>", "</s>", "<unk>"], 1000)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    tokenizer = T5TokenizerFast(
        tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=100,
        model_max_length=512,
    )
    translation = {"early_stopping": True, "max_length": 300, "num_beams": 4}
    config = T5Config(
        vocab_size=-(-len(tokenizer) // 128) * 128,  # padded to a multiple of 128, as 32100 -> 32128
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        relative_attention_num_buckets=32,
        dropout_rate=0.1,
        layer_norm_epsilon=1e-6,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        n_positions=512,
        output_past=True,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        task_specific_params={
            "summarization": {
                "early_stopping": True, "length_penalty": 2.0, "max_length": 200, "min_length": 30,
                "no_repeat_ngram_size": 3, "num_beams": 4, "prefix": "summarize: ",
            },
            "translation_en_to_de": {**translation, "prefix": "translate English to German: "},
            "translation_en_to_fr": {**translation, "prefix": "translate English to French: "},
            "translation_en_to_ro": {**translation, "prefix": "translate English to Romanian: "},
        },
        initializer_factor=4.0,
    )
    model = T5ForConditionalGeneration(config).eval()
    model.config.initializer_factor = 1.0
    return save(model, tokenizer, out_dir)


def build_bart_large_cnn(out_dir: str) -> str:
    """facebook/bart-large-cnn: BART with <s>/<pad>/</s> = 0/1/2, decoder start 2, forced BOS 0
    and forced EOS 2, config prefix " ", and its summarization settings in both the generation
    config and task_specific_params: num_beams 4, length_penalty 2.0, max_length 142,
    min_length 56, no_repeat_ngram_size 3, early_stopping. Shrunk: d_model 32, 2 + 2 layers, a
    local 1000-token byte-level BPE."""
    from transformers import BartConfig, BartForConditionalGeneration

    from tiny_models.generation import save, tiny_bart_fields
    from tiny_models.tokenizers import bart_bpe_tokenizer

    torch.manual_seed(SEED + 3)
    tokenizer = bart_bpe_tokenizer(1000, 1024)
    summarization = {
        "early_stopping": True, "length_penalty": 2.0, "max_length": 142, "min_length": 56,
        "no_repeat_ngram_size": 3, "num_beams": 4,
    }
    fields = {
        **tiny_bart_fields(tokenizer),  # sizes, token ids, init_std 1.0 for the weights
        "max_position_embeddings": 1024,
        "activation_function": "gelu",
        "add_bias_logits": False,
        "add_final_layer_norm": False,
        "normalize_before": False,
        "scale_embedding": False,
        "dropout": 0.1,
        "forced_bos_token_id": 0,
        "forced_eos_token_id": 2,
        "prefix": " ",
        "num_labels": 3,
        "task_specific_params": {"summarization": summarization},
        **summarization,
    }
    model = BartForConditionalGeneration(BartConfig(**fields)).eval()
    model.config.init_std = 0.02
    model.generation_config.update(
        bos_token_id=0, decoder_start_token_id=2, eos_token_id=2, pad_token_id=1,
        forced_bos_token_id=0, forced_eos_token_id=2, **summarization,
    )
    return save(model, tokenizer, out_dir)


# ---------------------------------------------------------------------------- registry

# hub id -> (task, builder)
CHECKPOINTS: dict[str, tuple[str, Callable[[str], str]]] = {
    "facebook/detr-resnet-50": ("object-detection", build_detr_resnet_50),
    "google/vit-base-patch16-224": ("image-classification", build_vit_base_patch16_224),
    "vinvino02/glpn-kitti": ("depth-estimation", build_glpn_kitti),
    "facebook/wav2vec2-base-960h": ("automatic-speech-recognition", build_wav2vec2_base_960h),
    "gpt2": ("text-generation", build_gpt2),
    "t5-small": ("translation", build_t5_small),
    "facebook/bart-large-cnn": ("summarization", build_bart_large_cnn),
}


def build_checkpoint_model(hub_id: str, root: str) -> str:
    """Build (once) the tiny model standing for `hub_id` under `root`; return its directory."""
    from tiny_models import build_once

    table = all_checkpoints()
    if hub_id not in table:
        raise ValueError(f"no checkpoint configuration for {hub_id!r}; known: {', '.join(sorted(table))}")
    return build_once(os.path.join(root, "checkpoints", hub_id.replace("/", "--")), table[hub_id][1])


# The tier of families users bring most, one module per modality (each holds a CHECKPOINTS
# table of the same shape as the seed checkpoints' above).
TIER_MODULES = ("generation", "text", "vision", "audio")


def all_checkpoints() -> dict[str, tuple[str, Callable[[str], str]]]:
    """hub id -> (task, builder) for the seed checkpoints and every tier module."""
    from importlib import import_module

    table = dict(CHECKPOINTS)
    for name in TIER_MODULES:
        tier = import_module(f"tiny_models.tier_{name}").CHECKPOINTS
        duplicated = set(tier) & set(table)
        if duplicated:
            raise ValueError(f"checkpoint configurations defined twice: {sorted(duplicated)}")
        table.update(tier)
    return table
