"""image-segmentation: parity with transformers.pipeline (Mask2Former) for each subtask."""

from __future__ import annotations

import io

import numpy as np
import pytest

from operators import get_operator
from operators.decoding.image import decode_image
from tests.operators.images import exif_rotated_jpeg, one_pixel_png, open_for_pipeline, default_pipeline, varied_images

SCORE_TOL = 1e-5  # fp32 on CPU, bit-identical pixels; batching changes summation order only
# Masks are thresholded logits; a pixel whose logit sits within float noise of the threshold
# may flip between a batch of 4 and pipeline()'s batch of 1. Measured: 0 pixels differ.
MASK_PIXEL_TOL = 0.01
THRESHOLD = 0.3  # the tiny model's instance scores are 0.3-0.5; pipeline's default 0.9 keeps none


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model("image-segmentation")


@pytest.fixture(scope="module")
def reference(model_dir):
    return default_pipeline("image-segmentation", model_dir)


def mask_array(data: bytes) -> np.ndarray:
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == "L"
    return np.asarray(image)


def assert_same_segments(got: list[dict], want: list[dict], size: tuple[int, int]) -> None:
    """size: (width, height) of the original image, as PIL gives it."""
    assert [g["label"] for g in got] == [w["label"] for w in want]
    for g, w in zip(got, want):
        if w["score"] is None:
            assert g["score"] is None
        else:
            assert g["score"] == pytest.approx(w["score"], abs=SCORE_TOL)
        mask = mask_array(g["mask"])
        assert mask.shape == (size[1], size[0])  # (height, width) of the original image
        assert set(np.unique(mask)) <= {0, 255}
        assert np.mean(mask != np.asarray(w["mask"])) <= MASK_PIXEL_TOL


def test_panoptic_parity_with_pipeline(model_dir, reference):
    images = varied_images() + [exif_rotated_jpeg()]
    op = get_operator("image-segmentation")(model_dir, threshold=THRESHOLD, max_batch_rows=4)
    out = op({"image": images})
    assert out["error"] == [None] * len(images)
    labels = set()
    for i, data in enumerate(images):
        expected = reference(open_for_pipeline(data), threshold=THRESHOLD)
        assert_same_segments(out["segments"][i], expected, decode_image(data).size)  # EXIF applied
        labels.update(s["label"] for s in out["segments"][i])
    assert sum(len(s) for s in out["segments"]) >= len(images) - 1
    assert len(labels) > 1


@pytest.mark.parametrize("subtask", ["instance", "semantic"])
def test_subtasks_match_pipeline(model_dir, reference, subtask):
    images = varied_images()[:4]
    op = get_operator("image-segmentation")(model_dir, subtask=subtask, threshold=THRESHOLD, mask_threshold=0.4)
    out = op({"image": images})
    for data, segments in zip(images, out["segments"]):
        image = open_for_pipeline(data)
        expected = reference(image, subtask=subtask, threshold=THRESHOLD, mask_threshold=0.4)
        assert_same_segments(segments, expected, image.size)
        assert segments, f"{subtask} should find segments"
        if subtask == "semantic":
            # semantic masks partition the image
            assert sum(mask_array(s["mask"]).astype(int) for s in segments).max() == 255


def test_one_pixel_image(model_dir, reference):
    # A uniform image makes near-constant features that LayerNorm turns into noise-sensitive
    # ones, so it is compared alone in its micro-batch (as pipeline() runs it).
    data = one_pixel_png()
    out = get_operator("image-segmentation")(model_dir, threshold=THRESHOLD)({"image": [data]})
    assert out["error"] == [None]
    assert_same_segments(out["segments"][0], reference(open_for_pipeline(data), threshold=THRESHOLD), (1, 1))


def test_mask2former_batches_equal_shapes_only(model_dir):
    """Mask2Former's forward takes a pixel_mask and never reads it, so padding would reach its
    backbone: mixed sizes never share a micro-batch, whatever max_padding allows."""
    op = get_operator("image-segmentation")(model_dir, max_padding=0.9)
    features = op.preprocess({"image": varied_images()})["features"]
    shapes = [f["pixels"].shape for f in features]
    assert "pixel_mask" in op.processor.model_input_names and not op.pads_with_mask
    batches = op.plan_batches(features)
    assert all(len({shapes[i] for i in batch}) == 1 for batch in batches)
    assert sorted(len(b) for b in batches) == [1, 2, 6]  # 64 x 64, 96 x 64, 64 x 96


@pytest.fixture(scope="module")
def detr_segmentation_dir(tmp_path_factory):
    """A tiny DetrForSegmentation (a model that reads the pixel mask and returns mask logits)."""
    import torch
    from transformers import DetrConfig, DetrForSegmentation, ResNetConfig
    from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil

    torch.manual_seed(0)
    backbone = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1], layer_type="basic",
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = DetrConfig(
        backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False, d_model=32,
        encoder_layers=1, decoder_layers=1, encoder_attention_heads=8, decoder_attention_heads=8,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=10, num_labels=6,
    )
    out = str(tmp_path_factory.mktemp("detr-segmentation"))
    DetrForSegmentation(config).eval().save_pretrained(out)
    DetrImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}, format="coco_panoptic").save_pretrained(out)
    return out


def test_padded_mask_logits_are_cut_to_each_image(detr_segmentation_dir):
    """In a padded micro-batch, mask logits cover the whole canvas; each row keeps the region
    over its own pixels, the size it has alone, before post-processing stretches it over the
    original image."""
    op = get_operator("image-segmentation")(detr_segmentation_dir, threshold=0.0, max_padding=0.25)
    images = varied_images()
    prepared = op.preprocess({"image": images})
    assert op.pads_with_mask and any(len(b) > 1 for b in op.plan_batches(prepared["features"]))
    padded = op.forward(prepared)
    alone = op.with_options(max_padding=0, max_batch_rows=1).forward(prepared)
    for features, got, want in zip(prepared["features"], padded["raw"], alone["raw"]):
        assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in want.items()}
        assert got["pred_masks"].shape[-2:] == tuple(-(-n // 4) for n in features["pixels"].shape[1:])
    out = op.postprocess(padded, prepared)
    assert out["error"] == [None] * len(images)
    for data, segments in zip(images, out["segments"]):
        size = decode_image(data).size
        assert all(mask_array(s["mask"]).shape == (size[1], size[0]) for s in segments)
