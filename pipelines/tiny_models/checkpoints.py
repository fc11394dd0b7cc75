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


# ---------------------------------------------------------------------------- registry

# hub id -> (task, builder)
CHECKPOINTS: dict[str, tuple[str, Callable[[str], str]]] = {
    "facebook/detr-resnet-50": ("object-detection", build_detr_resnet_50),
}


def build_checkpoint_model(hub_id: str, root: str) -> str:
    """Build (once) the tiny model standing for `hub_id` under `root`; return its directory."""
    from pipelines.tiny_models import build_once

    if hub_id not in CHECKPOINTS:
        raise ValueError(f"no checkpoint configuration for {hub_id!r}; known: {', '.join(sorted(CHECKPOINTS))}")
    return build_once(os.path.join(root, "checkpoints", hub_id.replace("/", "--")), CHECKPOINTS[hub_id][1])
