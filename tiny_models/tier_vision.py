"""Tiny models rebuilding the published configurations of the vision families users bring most
(image-classification, object-detection, image-segmentation and depth-estimation), offline. See
checkpoints.py for the rules a builder follows.

Each builder keeps the checkpoint's structural flags (layer types, patch and window sizes,
backbone kinds, label sets) and writes its preprocessor_config.json as published, legacy keys
included (`size: 224`, `feature_extractor_type`, `reduce_labels`), so transformers' own
conversion runs as it does for users. Widths and layer counts shrink; label names are
placeholders where the published list is long and only its length matters. Random heads pick
the same label everywhere, so class heads are re-centred on the features of a few calibration
pictures (calibration.py), which makes labels and detections vary with the input.
"""

from __future__ import annotations

import os
from typing import Callable

import torch

from tiny_models.calibration import recenter_linear
from tiny_models.checkpoints import COCO_LABELS, SEED, id2label, write_json

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
IMAGENET_LABELS = [f"imagenet class {i}" for i in range(1000)]
# COCO's 80 detection categories, 0-indexed (RT-DETR's id2label)
COCO80_LABELS = [name for name in COCO_LABELS if name != "N/A"]
ADE20K_LABELS = [f"ade20k class {i}" for i in range(150)]
COCO_PANOPTIC_LABELS = [f"coco panoptic class {i}" for i in range(133)]


def _calibration_images(n: int = 6) -> list:
    from tiny_models.vision import calibration_images

    return calibration_images(n)


def _head_inputs(model, head: torch.nn.Linear, processor, images) -> torch.Tensor:
    """What `head` reads, gathered over `images` run one at a time through `model`."""
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach().reshape(-1, args[0].shape[-1])))
    try:
        with torch.no_grad():
            for image in images:
                model(**processor(images=[image], return_tensors="pt"))
    finally:
        hook.remove()
    return torch.cat(seen)


def _calibrate(model, head: torch.nn.Linear, processor, scale: float = 3.0, images=None) -> None:
    recenter_linear(head, _head_inputs(model, head, processor, images or _calibration_images()), scale=scale)


def save(model, out_dir: str, preprocessor: dict) -> str:
    model.save_pretrained(out_dir, safe_serialization=True)
    write_json(os.path.join(out_dir, "preprocessor_config.json"), preprocessor)
    return out_dir


def _processor(out_dir: str, preprocessor: dict, backend: str = "pil"):
    """The processor transformers makes of the published file (for calibration only)."""
    from transformers import AutoImageProcessor

    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "preprocessor_config.json"), preprocessor)
    return AutoImageProcessor.from_pretrained(out_dir, backend=backend)


# Both ConvNeXT's and microsoft/resnet-50's published processor: resize the shortest edge to
# 224 / 0.875 = 256, centre-crop 224, bicubic.
CONVNEXT_224_PREPROCESSOR = {
    "crop_pct": 0.875,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "ConvNextFeatureExtractor",
    "image_mean": IMAGENET_MEAN,
    "image_std": IMAGENET_STD,
    "resample": 3,
    "size": 224,
}


# ---------------------------------------------------------------------------- classification


def build_convnext_tiny_224(out_dir: str) -> str:
    """facebook/convnext-tiny-224: 4 stages, patch 4, layer scale 1e-6, gelu, 1000 ImageNet
    classes; ConvNextFeatureExtractor at 224 with crop_pct 0.875, bicubic. Shrunk: widths
    8-32, one block per stage."""
    from transformers import ConvNextConfig, ConvNextForImageClassification

    torch.manual_seed(SEED + 10)
    config = ConvNextConfig(
        num_channels=3, patch_size=4, num_stages=4, hidden_sizes=[8, 16, 32, 32], depths=[1, 1, 1, 1],
        hidden_act="gelu", layer_norm_eps=1e-12, layer_scale_init_value=1e-6, drop_path_rate=0.0,
        image_size=224, **id2label(IMAGENET_LABELS),
    )
    model = ConvNextForImageClassification(config).eval()
    # layer scale 1e-6 leaves the blocks silent at random init; the head reads the stem then
    _calibrate(model, model.classifier, _processor(out_dir, CONVNEXT_224_PREPROCESSOR))
    return save(model, out_dir, CONVNEXT_224_PREPROCESSOR)


def build_resnet_50(out_dir: str) -> str:
    """microsoft/resnet-50: bottleneck blocks, depths 3/4/6/3, stem 64, no downsampling in the
    first stage, 1000 ImageNet classes; the ConvNeXT processor at 224 (crop_pct 0.875).
    Shrunk: widths 16-64, one block per stage."""
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(SEED + 11)
    config = ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[16, 32, 64, 64], depths=[1, 1, 1, 1],
        layer_type="bottleneck", hidden_act="relu", downsample_in_first_stage=False, **id2label(IMAGENET_LABELS),
    )
    model = ResNetForImageClassification(config).eval()
    _calibrate(model, model.classifier[-1], _processor(out_dir, CONVNEXT_224_PREPROCESSOR))
    return save(model, out_dir, CONVNEXT_224_PREPROCESSOR)


def build_swin_tiny_patch4_window7_224(out_dir: str) -> str:
    """microsoft/swin-tiny-patch4-window7-224: patch 4, window 7, 4 stages, 224 px, 1000
    ImageNet classes; ViTFeatureExtractor at 224, bicubic, ImageNet mean/std. Shrunk: embed
    dim 16, one block per stage."""
    from transformers import SwinConfig, SwinForImageClassification

    torch.manual_seed(SEED + 12)
    config = SwinConfig(
        image_size=224, patch_size=4, num_channels=3, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
        window_size=7, mlp_ratio=4.0, qkv_bias=True, hidden_act="gelu", drop_path_rate=0.0,
        layer_norm_eps=1e-5, **id2label(IMAGENET_LABELS),
    )
    model = SwinForImageClassification(config).eval()
    preprocessor = {
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "ViTFeatureExtractor",
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
        "resample": 3,
        "size": 224,
    }
    _calibrate(model, model.classifier, _processor(out_dir, preprocessor))
    return save(model, out_dir, preprocessor)


# ---------------------------------------------------------------------------- detection


def build_detr_resnet_50_no_timm(out_dir: str) -> str:
    """facebook/detr-resnet-50 at revision no_timm: transformers' own ResNet-50 backbone
    (bottleneck, depths 3/4/6/3, stem 64, last stage out), 100 queries, COCO's 91 labels,
    DetrImageProcessor at shortest edge 800 / longest 1333 with padding and a pixel mask.
    Shrunk: backbone widths 16-64 with one block per stage, the transformer to d_model 32."""
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

    torch.manual_seed(SEED + 13)
    backbone = ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[16, 32, 64, 64], depths=[1, 1, 1, 1],
        layer_type="bottleneck", hidden_act="relu", downsample_in_first_stage=False,
        downsample_in_bottleneck=False, out_features=["stage4"],
    )
    # init_std 0.3 and queries x30, as in checkpoints.build_detr_resnet_50: at 0.02 every query
    # attends uniformly and all give one box; config.json keeps the published 0.02
    config = DetrConfig(
        backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False, backbone=None,
        num_queries=100, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, position_embedding_type="sine",
        dilation=False, auxiliary_loss=False, init_std=0.3, **id2label(COCO_LABELS),
    )
    model = DetrForObjectDetection(config).eval()
    with torch.no_grad():
        model.model.query_position_embeddings.weight.mul_(30.0)
    preprocessor = {
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "DetrFeatureExtractor",
        "format": "coco_detection",
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
        "max_size": 1333,
        "size": 800,
    }
    # calibrated at small sizes (the processor's resize is what changes, not the model)
    small = _processor(out_dir, {**preprocessor, "size": 64, "max_size": 96})
    _calibrate(model, model.class_labels_classifier, small, scale=5.0)
    model.config.init_std = 0.02
    return save(model, out_dir, preprocessor)


def build_yolos_small(out_dir: str) -> str:
    """hustvl/yolos-small: a DeiT-style ViT over 16 px patches with 100 detection tokens,
    mid-layer position embeddings for a 512 x 864 canvas (interpolated to each image's size),
    COCO's 91 labels; YolosFeatureExtractor (legacy keys) at shortest edge 512 / longest 1333.
    Shrunk: hidden 32, 2 layers."""
    from transformers import YolosConfig, YolosForObjectDetection

    torch.manual_seed(SEED + 14)
    config = YolosConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, hidden_act="gelu",
        layer_norm_eps=1e-12, image_size=[512, 864], patch_size=16, num_channels=3, qkv_bias=True,
        num_detection_tokens=100, use_mid_position_embeddings=True, auxiliary_loss=False,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **id2label(COCO_LABELS),
    )
    model = YolosForObjectDetection(config).eval()
    preprocessor = {
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "YolosFeatureExtractor",
        "format": "coco_detection",
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
        "max_size": 1333,
        "size": 512,
    }
    small = _processor(out_dir, {**preprocessor, "size": 96, "max_size": 160})
    _calibrate(model, model.class_labels_classifier.layers[-1], small, scale=5.0)
    return save(model, out_dir, preprocessor)


def build_rtdetr_r50vd(out_dir: str) -> str:
    """PekingU/rtdetr_r50vd: transformers' own RT-DETR ResNet-vd backbone (no timm), a hybrid
    encoder over strides 8/16/32, 300 queries with box refinement, focal-loss (sigmoid)
    scores over COCO's 80 labels; RTDetrImageProcessor resizing to 640 x 640, rescale only, no
    normalization. Shrunk: backbone widths 16-64, d_model 32, one decoder layer."""
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrResNetConfig

    torch.manual_seed(SEED + 15)
    backbone = RTDetrResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[16, 32, 64, 64], depths=[1, 1, 1, 1],
        layer_type="bottleneck", hidden_act="relu", downsample_in_first_stage=False,
        downsample_in_bottleneck=False, out_features=["stage2", "stage3", "stage4"],
    )
    config = RTDetrConfig(
        backbone_config=backbone, encoder_hidden_dim=32, encoder_in_channels=[32, 64, 64], feat_strides=[8, 16, 32],
        encoder_layers=1, encoder_ffn_dim=64, encoder_attention_heads=2, d_model=32, num_queries=300,
        decoder_in_channels=[32, 32, 32], decoder_ffn_dim=64, num_feature_levels=3, decoder_n_points=4,
        decoder_layers=1, decoder_attention_heads=2, num_denoising=100, with_box_refine=True,
        use_focal_loss=True, **id2label(COCO80_LABELS),
    )
    model = RTDetrForObjectDetection(config).eval()
    preprocessor = {
        "do_normalize": False,
        "do_pad": False,
        "do_rescale": True,
        "do_resize": True,
        "format": "coco_detection",
        "image_mean": IMAGENET_MEAN,
        "image_processor_type": "RTDetrImageProcessor",
        "image_std": IMAGENET_STD,
        "resample": 2,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": 640, "width": 640},
    }
    processor = _processor(out_dir, {**preprocessor, "size": {"height": 128, "width": 128}})
    # sigmoid scores: centred on the last decoder layer's class head with a bias of -2, a few
    # query/label pairs pass the 0.5 threshold per image, as a trained model's do
    head = model.model.decoder.class_embed[-1]
    _calibrate(model, head, processor, scale=2.0)
    with torch.no_grad():
        head.bias.sub_(2.0)
    return save(model, out_dir, preprocessor)


# ---------------------------------------------------------------------------- segmentation


def build_segformer_b0_ade_512(out_dir: str) -> str:
    """nvidia/segformer-b0-finetuned-ade-512-512: Mix-Transformer b0 (4 stages, patch 7/3/3/3,
    strides 4/2/2/2, reduction 8/4/2/1), an all-MLP decode head, ADE20K's 150 labels;
    SegformerFeatureExtractor at 512 x 512, reduce_labels. Shrunk: widths 8-32, one block per
    stage, decoder width 16."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(SEED + 16)
    config = SegformerConfig(
        num_channels=3, num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1],
        hidden_sizes=[8, 16, 32, 32], patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2],
        num_attention_heads=[1, 1, 2, 2], mlp_ratios=[4, 4, 4, 4], hidden_act="gelu", decoder_hidden_size=16,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.1,
        drop_path_rate=0.1, layer_norm_eps=1e-6, semantic_loss_ignore_index=255, **id2label(ADE20K_LABELS),
    )
    model = SegformerForSemanticSegmentation(config).eval()
    preprocessor = {
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "SegformerFeatureExtractor",
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
        "reduce_labels": True,
        "resample": 2,
        "size": 512,
    }
    # the classifier is a 1x1 conv: re-centre it as a Linear over its input channels
    conv = model.decode_head.classifier
    processor = _processor(out_dir, {**preprocessor, "size": 128})
    seen: list[torch.Tensor] = []
    hook = conv.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()))
    with torch.no_grad():
        for image in _calibration_images():
            model(**processor(images=[image], return_tensors="pt"))
    hook.remove()
    features = torch.cat([s.permute(0, 2, 3, 1).reshape(-1, s.shape[1]) for s in seen])
    linear = torch.nn.Linear(conv.in_channels, conv.out_channels)
    with torch.no_grad():
        linear.weight.copy_(conv.weight[:, :, 0, 0])
        linear.bias.copy_(conv.bias)
        recenter_linear(linear, features, scale=3.0)
        conv.weight.copy_(linear.weight[:, :, None, None])
        conv.bias.copy_(linear.bias)
    return save(model, out_dir, preprocessor)


def build_mask2former_swin_tiny_coco_panoptic(out_dir: str) -> str:
    """facebook/mask2former-swin-tiny-coco-panoptic: a Swin backbone (patch 4, window 7, four
    stages out), 100 queries, COCO panoptic's 133 labels; Mask2FormerImageProcessor at
    384 x 384, size_divisor 32, ignore_index 255, as the published file (image_mean in its
    float32 digits). Shrunk: Swin embed dim 16, one block per stage; hidden 32, 2 decoder
    layers."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

    torch.manual_seed(SEED + 17)
    backbone = SwinConfig(
        image_size=224, patch_size=4, num_channels=3, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
        window_size=7, drop_path_rate=0.3, out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=64,
        encoder_layers=1, decoder_layers=2, num_attention_heads=2, dim_feedforward=64, num_queries=100,
        common_stride=4, feature_strides=[4, 8, 16, 32], **id2label(COCO_PANOPTIC_LABELS),
    )
    model = Mask2FormerForUniversalSegmentation(config).eval()
    preprocessor = {
        "_max_size": 1333,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "ignore_index": 255,
        "image_mean": [0.48500001430511475, 0.4560000002384186, 0.4059999883174896],
        "image_processor_type": "Mask2FormerImageProcessor",
        "image_std": [0.2290000021457672, 0.2239999920129776, 0.22499999403953552],
        "num_labels": 133,
        "reduce_labels": False,
        "resample": 2,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": 384, "width": 384},
        "size_divisor": 32,
    }
    processor = _processor(out_dir, {**preprocessor, "size": {"height": 96, "width": 96}})
    # the head's inputs are the decoder's query states; the hook keeps the last layer's (it runs last)
    seen: list[torch.Tensor] = []
    hook = model.class_predictor.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    queries = []
    with torch.no_grad():
        for image in _calibration_images():
            model(**processor(images=[image], return_tensors="pt"))
            queries.append(seen[-1][0])
    hook.remove()
    recenter_linear(model.class_predictor, torch.cat(queries), scale=5.0)
    return save(model, out_dir, preprocessor)


# ---------------------------------------------------------------------------- depth


def build_dpt_large(out_dir: str) -> str:
    """Intel/dpt-large: a ViT backbone (16 px patches, 384 px, readout "project") with four
    reassembled stages and a fusion decoder; DPTFeatureExtractor at 384 x 384 without keeping
    the aspect ratio, mean/std 0.5. Shrunk: hidden 32, 4 layers (one per stage), neck 8-32,
    fusion 16."""
    from transformers import DPTConfig, DPTForDepthEstimation

    torch.manual_seed(SEED + 18)
    config = DPTConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, hidden_act="gelu",
        layer_norm_eps=1e-12, image_size=384, patch_size=16, num_channels=3, qkv_bias=True, is_hybrid=False,
        backbone_out_indices=[0, 1, 2, 3], readout_type="project", reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, head_in_index=-1,
        use_batch_norm_in_fusion_residual=False, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    model = DPTForDepthEstimation(config).eval()
    preprocessor = {
        "do_normalize": True,
        "do_resize": True,
        "ensure_multiple_of": 1,
        "feature_extractor_type": "DPTFeatureExtractor",
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "keep_aspect_ratio": False,
        "resample": 2,
        "size": 384,
    }
    return save(model, out_dir, preprocessor)


def build_depth_anything_v2_small(out_dir: str) -> str:
    """depth-anything/Depth-Anything-V2-Small-hf: a DINOv2 backbone (14 px patches, 518 px,
    four stages out), a DPT neck and a relative-depth head; DPTImageProcessor at 518 x 518
    keeping the aspect ratio, sizes a multiple of 14, bicubic, ImageNet mean/std. Shrunk:
    DINOv2 hidden 32 with 4 layers, neck 8-32, fusion 16, head 8."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(SEED + 19)
    backbone = Dinov2Config(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=4, image_size=518, patch_size=14,
        layerscale_value=1.0, drop_path_rate=0.0, out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
        apply_layernorm=True,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone, patch_size=14, reassemble_hidden_size=32, reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, head_in_index=-1, head_hidden_size=8,
        depth_estimation_type="relative", max_depth=1,
    )
    model = DepthAnythingForDepthEstimation(config).eval()
    preprocessor = {
        "do_normalize": True,
        "do_pad": False,
        "do_rescale": True,
        "do_resize": True,
        "ensure_multiple_of": 14,
        "image_mean": IMAGENET_MEAN,
        "image_processor_type": "DPTImageProcessor",
        "image_std": IMAGENET_STD,
        "keep_aspect_ratio": True,
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": 518, "width": 518},
        "size_divisor": None,
    }
    return save(model, out_dir, preprocessor)


# hub id -> (task, builder(out_dir) -> out_dir)
CHECKPOINTS: dict[str, tuple[str, Callable[[str], str]]] = {
    "facebook/convnext-tiny-224": ("image-classification", build_convnext_tiny_224),
    "microsoft/resnet-50": ("image-classification", build_resnet_50),
    "microsoft/swin-tiny-patch4-window7-224": ("image-classification", build_swin_tiny_patch4_window7_224),
    # the revision that loads transformers' own ResNet (no timm); the seed table has the timm one
    "facebook/detr-resnet-50@no_timm": ("object-detection", build_detr_resnet_50_no_timm),
    "hustvl/yolos-small": ("object-detection", build_yolos_small),
    "PekingU/rtdetr_r50vd": ("object-detection", build_rtdetr_r50vd),
    "nvidia/segformer-b0-finetuned-ade-512-512": ("image-segmentation", build_segformer_b0_ade_512),
    "facebook/mask2former-swin-tiny-coco-panoptic": ("image-segmentation", build_mask2former_swin_tiny_coco_panoptic),
    "Intel/dpt-large": ("depth-estimation", build_dpt_large),
    "depth-anything/Depth-Anything-V2-Small-hf": ("depth-estimation", build_depth_anything_v2_small),
}
