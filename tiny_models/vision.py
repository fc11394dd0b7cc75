"""Tiny random vision models (ViT, ConvNeXT, DETR, Mask2Former, GLPN) with PIL-backend processors.

Every backbone is built from a config (no pretrained backbone download, no timm). Processors
work on small images (32-96 px) so that the tests stay fast. Heads that pick a class are
re-centred on features of varied synthetic pictures so that labels vary with the input.
"""

from __future__ import annotations

import numpy as np
import torch

from tiny_models.calibration import recenter_linear

SEED = 10
LABELS = ["cat", "dog", "car", "tree", "house", "sky"]


def _label_kwargs(labels: list[str]) -> dict:
    return {"id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}


def calibration_images(n: int = 24, seed: int = 123) -> list:
    """Varied synthetic RGB pictures (gradients, blocks, noise; several sizes) as PIL images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        width, height = int(rng.integers(32, 97)), int(rng.integers(32, 97))
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        freq = rng.uniform(0.5, 6, 3)
        phase = rng.uniform(0, np.pi, 3)
        base = np.stack(
            [127 + 120 * np.sin(freq[c] * (x if c % 2 else y) / 16 + phase[c]) for c in range(3)], axis=-1
        )
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        base[y0 : y0 + height // 3, x0 : x0 + width // 3] = rng.integers(0, 256, 3)
        base += rng.normal(0, 10 + 5 * (i % 3), base.shape)
        images.append(Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB"))
    return images


def _pixel_batches(processor, images) -> list[torch.Tensor]:
    """Processed pixel tensors one image at a time (sizes differ for aspect-keeping processors)."""
    return [processor(images=[im], return_tensors="pt")["pixel_values"] for im in images]


def save(model, processor, out_dir: str) -> str:
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return out_dir


def build_image_classification(out_dir: str, variant: str | None = None) -> str:
    """ViT (default) or ConvNeXT ("convnext") with a calibrated 6-label head on 32x32 inputs."""
    torch.manual_seed(SEED)
    if variant is None:
        from transformers import ViTConfig, ViTForImageClassification
        from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

        config = ViTConfig(
            image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, num_labels=len(LABELS), **_label_kwargs(LABELS),
        )
        model = ViTForImageClassification(config).eval()
        processor = ViTImageProcessorPil(size={"height": 32, "width": 32})
        pixels = torch.cat(_pixel_batches(processor, calibration_images()))
        with torch.no_grad():
            features = model.vit(pixel_values=pixels).last_hidden_state[:, 0]
    elif variant == "convnext":
        from transformers import ConvNextConfig, ConvNextForImageClassification
        from transformers.models.convnext.image_processing_pil_convnext import ConvNextImageProcessorPil

        config = ConvNextConfig(
            num_channels=3, patch_size=4, num_stages=2, hidden_sizes=[16, 32], depths=[1, 1],
            image_size=32, num_labels=len(LABELS), **_label_kwargs(LABELS),
        )
        model = ConvNextForImageClassification(config).eval()
        # shortest_edge < 384: resize to 32/crop_pct then centre-crop 32x32, as ConvNeXT does
        processor = ConvNextImageProcessorPil(size={"shortest_edge": 32}, crop_pct=0.875)
        pixels = torch.cat(_pixel_batches(processor, calibration_images()))
        with torch.no_grad():
            features = model.convnext(pixel_values=pixels).pooler_output
    else:
        raise ValueError(f"image-classification variant must be None or 'convnext', got {variant!r}")
    recenter_linear(model.classifier, features)
    return save(model, processor, out_dir)


def _tiny_resnet_backbone(out_features: list[str]):
    from transformers import ResNetConfig

    return ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1],
        layer_type="basic", out_features=out_features,
    )


def build_object_detection(out_dir: str) -> str:
    """DETR with a tiny transformers ResNet backbone (no timm, nothing pretrained), 10 queries."""
    from transformers import DetrConfig, DetrForObjectDetection
    from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil

    torch.manual_seed(SEED + 1)
    config = DetrConfig(
        backbone_config=_tiny_resnet_backbone(["stage4"]), use_timm_backbone=False, use_pretrained_backbone=False,
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=10, auxiliary_loss=False,
        num_labels=len(LABELS), **_label_kwargs(LABELS),
    )
    model = DetrForObjectDetection(config).eval()
    processor = DetrImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96})
    with torch.no_grad():
        queries = torch.cat(
            [model.model(pixel_values=p).last_hidden_state[0] for p in _pixel_batches(processor, calibration_images())]
        )
    # scale 5: confident enough that some objects pass a moderate threshold
    recenter_linear(model.class_labels_classifier, queries, scale=5.0)
    return save(model, processor, out_dir)


def build_image_segmentation(out_dir: str) -> str:
    """Mask2Former with a tiny Swin backbone (nothing pretrained), 8 queries, 64-96 px inputs."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig
    from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil

    torch.manual_seed(SEED + 2)
    backbone = SwinConfig(
        image_size=64, patch_size=4, num_channels=3, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
        window_size=4, drop_path_rate=0.0, out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32,
        encoder_feedforward_dim=64, encoder_layers=1, decoder_layers=2, num_attention_heads=2,
        # use_auxiliary_loss stays True: with it False, Mask2FormerForUniversalSegmentation.forward
        # iterates over intermediate decoder states it was not asked to return (transformers 5.24)
        dim_feedforward=64, num_queries=8,
        num_labels=len(LABELS), **_label_kwargs(LABELS),
    )
    model = Mask2FormerForUniversalSegmentation(config).eval()
    processor = Mask2FormerImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}, size_divisor=32)
    # the head's inputs are the decoder's query states; a hook sees the last layer's (it runs last)
    seen: list[torch.Tensor] = []
    hook = model.class_predictor.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    with torch.no_grad():
        queries = []
        for p in _pixel_batches(processor, calibration_images()):
            model(pixel_values=p)
            queries.append(seen[-1][0])
    hook.remove()
    queries = torch.cat(queries)
    recenter_linear(model.class_predictor, queries, scale=5.0)
    return save(model, processor, out_dir)


def build_depth_estimation(out_dir: str) -> str:
    """GLPN (4 tiny SegFormer-style stages) with a processor that rounds sizes down to x32."""
    from transformers import GLPNConfig, GLPNForDepthEstimation
    from transformers.models.glpn.image_processing_pil_glpn import GLPNImageProcessorPil

    torch.manual_seed(SEED + 3)
    config = GLPNConfig(
        num_channels=3, num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1],
        hidden_sizes=[8, 16, 32, 32], patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2],
        num_attention_heads=[1, 1, 2, 2], mlp_ratios=[2, 2, 2, 2], decoder_hidden_size=16, max_depth=10,
    )
    model = GLPNForDepthEstimation(config).eval()
    processor = GLPNImageProcessorPil(size_divisor=32)
    return save(model, processor, out_dir)
