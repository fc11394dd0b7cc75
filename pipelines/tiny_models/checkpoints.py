"""Tiny models that rebuild the configuration of well-known hub checkpoints, offline.

Each builder writes the checkpoint's published settings (structural config flags, processor
and tokenizer settings, generation config) and shrinks only sizes that do not change
behaviour: hidden widths, layer counts, vocabularies where the tokenizer is local. Where the
published file has a legacy layout that transformers converts on load (DETR's timm backbone
flags, its `size`/`max_size` processor keys), the legacy file itself is written, so the tests
cover the conversion real users hit.

    from pipelines.tiny_models.checkpoints import build_checkpoint_model
    path = build_checkpoint_model("facebook/detr-resnet-50", "/tmp/models")
"""

from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np
import torch

from pipelines.tiny_models.calibration import recenter_linear

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


def _write_json(path: str, data: dict) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)


def _id2label(labels: list[str]) -> dict:
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

    from pipelines.tiny_models.vision import calibration_images

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
        **_id2label(COCO_LABELS),
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
            [model.model(**small(images=[im], return_tensors="pt")).last_hidden_state[0] for im in calibration_images(8)]
        )
    recenter_linear(model.class_labels_classifier, queries, scale=5.0)
    model.save_pretrained(out_dir, safe_serialization=True)
    _write_json(os.path.join(out_dir, "config.json"), published)
    _write_json(
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

    from pipelines.tiny_models.generation import _save
    from pipelines.tiny_models.tokenizers import byte_level_bpe_tokenizer

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
    return _save(model, tokenizer, out_dir)


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

    from pipelines.tiny_models.generation import _save
    from pipelines.tiny_models.tokenizers import _train_unigram

    torch.manual_seed(SEED + 2)
    tok = _train_unigram(["<pad>", "</s>", "<unk>"], 1000)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    tokenizer = T5TokenizerFast(
        tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=100, model_max_length=512
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
    return _save(model, tokenizer, out_dir)


def build_bart_large_cnn(out_dir: str) -> str:
    """facebook/bart-large-cnn: BART with <s>/<pad>/</s> = 0/1/2, decoder start 2, forced BOS 0
    and forced EOS 2, config prefix " ", and its summarization settings in both the generation
    config and task_specific_params: num_beams 4, length_penalty 2.0, max_length 142,
    min_length 56, no_repeat_ngram_size 3, early_stopping. Shrunk: d_model 32, 2 + 2 layers, a
    local 1000-token byte-level BPE."""
    from transformers import BartConfig, BartForConditionalGeneration

    from pipelines.tiny_models.generation import _save, _tiny_bart_fields
    from pipelines.tiny_models.tokenizers import bart_bpe_tokenizer

    torch.manual_seed(SEED + 3)
    tokenizer = bart_bpe_tokenizer(1000, 1024)
    summarization = {
        "early_stopping": True, "length_penalty": 2.0, "max_length": 142, "min_length": 56,
        "no_repeat_ngram_size": 3, "num_beams": 4,
    }
    fields = {
        **_tiny_bart_fields(tokenizer),  # sizes, token ids, init_std 1.0 for the weights
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
    return _save(model, tokenizer, out_dir)


# ---------------------------------------------------------------------------- registry

# hub id -> (task, builder)
CHECKPOINTS: dict[str, tuple[str, Callable[[str], str]]] = {
    "facebook/detr-resnet-50": ("object-detection", build_detr_resnet_50),
    "gpt2": ("text-generation", build_gpt2),
    "t5-small": ("translation", build_t5_small),
    "facebook/bart-large-cnn": ("summarization", build_bart_large_cnn),
}


def build_checkpoint_model(hub_id: str, root: str) -> str:
    """Build (once) the tiny model standing for `hub_id` under `root`; return its directory."""
    from pipelines.tiny_models import build_once

    if hub_id not in CHECKPOINTS:
        raise ValueError(f"no checkpoint configuration for {hub_id!r}; known: {', '.join(sorted(CHECKPOINTS))}")
    return build_once(os.path.join(root, "checkpoints", hub_id.replace("/", "--")), CHECKPOINTS[hub_id][1])
