"""object-detection: parity with transformers.pipeline (DETR), threshold, boxes in image pixels."""

from __future__ import annotations

import pytest

from operators import get_operator
from tests.operators.images import exif_rotated_jpeg, one_pixel_png, open_for_pipeline, default_pipeline, varied_images

SCORE_TOL = 1e-5  # fp32 on CPU, bit-identical pixels; batching changes summation order only
# Boxes are whole pixels truncated toward zero (as pipeline's box.int()); a coordinate that
# sits within float noise of an integer may truncate one pixel apart. Measured: 0 px differ
# (scores: <= 3e-6) over 11 images at threshold 0.
BOX_TOL = 1
THRESHOLD = 0.3  # the tiny model's scores are 0.3-0.97; pipeline's default 0.5 would drop some images


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model("object-detection")


@pytest.fixture(scope="module")
def reference(model_dir):
    return default_pipeline("object-detection", model_dir)


def assert_same_objects(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g["label"] == w["label"]
        assert g["score"] == pytest.approx(w["score"], abs=SCORE_TOL)
        assert set(g["box"]) == {"xmin", "ymin", "xmax", "ymax"}
        for key in g["box"]:
            assert abs(g["box"][key] - w["box"][key]) <= BOX_TOL, (key, g["box"], w["box"])


def test_parity_with_pipeline(model_dir, reference):
    images = varied_images() + [one_pixel_png(), exif_rotated_jpeg()]
    # The default max_padding 0: equal sizes only, bit for bit the image-alone input. This tiny
    # model's 64-96 px images are all edge (a 2 x 3 feature map), so padding would move its
    # scores by up to 0.45; tests/checkpoints/test_padded_buckets.py holds the opt-in padded
    # path at DETR's real sizes.
    op = get_operator("object-detection")(model_dir, threshold=THRESHOLD, max_batch_rows=4)
    prepared = op.preprocess({"image": images})
    shapes = {f["pixels"].shape for f in prepared["features"]}
    assert len(shapes) > 3, "DETR keeps the aspect ratio: the batch must hold several tensor shapes"
    out = op.postprocess(op.forward(prepared), prepared)
    assert out["error"] == [None] * len(images)
    labels = set()
    for i, data in enumerate(images):
        expected = reference(open_for_pipeline(data), threshold=THRESHOLD)
        assert_same_objects(out["objects"][i], expected)
        labels.update(o["label"] for o in out["objects"][i])
    assert sum(len(o) for o in out["objects"]) > len(images), "the tiny model should find objects"
    assert len(labels) > 1


def test_boxes_are_in_original_image_pixels(model_dir):
    from PIL import Image
    import io

    op = get_operator("object-detection")(model_dir, threshold=0.0)
    images = varied_images()
    out = op({"image": images})
    for data, objects in zip(images, out["objects"]):
        width, height = Image.open(io.BytesIO(data)).size
        assert objects, "threshold 0 keeps every query"
        for o in objects:
            box = o["box"]
            assert 0 <= box["xmin"] <= box["xmax"] <= width
            assert 0 <= box["ymin"] <= box["ymax"] <= height


def test_threshold_filters_like_pipeline(model_dir, reference):
    image = varied_images()[0]
    op = get_operator("object-detection")(model_dir)
    for threshold in (0.0, 0.5, 0.99):
        got = op.with_options(threshold=threshold)({"image": [image]})["objects"][0]
        assert_same_objects(got, reference(open_for_pipeline(image), threshold=threshold))
        assert all(o["score"] > threshold for o in got)


def test_mixed_sizes_are_padded_as_the_processor_pads_a_batch(model_dir):
    """Images of similar aspect ratio share a micro-batch: pixels normalized, then padded
    bottom/right with 0 and masked, equal to DetrImageProcessor's own batched call on the
    region it pads to; our canvas extends that to a multiple of 32 with more of the same."""
    import torch

    from operators.decoding.image import decode_image

    op = get_operator("object-detection")(model_dir, max_padding=0.25)  # padded buckets are opt-in
    images = [varied_images()[i] for i in (0, 2, 7)]  # 64 x 85, 55 x 96, 60 x 96 after resizing
    features = op.preprocess({"image": images})["features"]
    assert len({f["pixels"].shape for f in features}) == 3
    assert op.pads_with_mask and op.plan_batches(features) == [[1, 2, 0]]  # by aspect ratio
    # a square joins a 4:3 image only above a 25% padding bound
    images = [varied_images()[i] for i in (0, 6)]  # 64 x 85 and 64 x 64
    features = op.preprocess({"image": images})["features"]
    assert sorted(op.plan_batches(features)) == [[0], [1]]
    op = op.with_options(max_padding=0.4)
    assert op.plan_batches(features) == [[0, 1]]
    inputs = op.model_inputs(features)
    assert tuple(inputs["pixel_values"].shape) == (2, 3, 64, 96)  # 85 wide rounds up to 96
    expected = op.processor(images=[decode_image(d) for d in images], return_tensors="pt")
    height, width = expected["pixel_values"].shape[-2:]
    assert torch.equal(inputs["pixel_values"][..., :height, :width], expected["pixel_values"])
    assert torch.equal(inputs["pixel_mask"][..., :height, :width], expected["pixel_mask"])
    assert not inputs["pixel_values"][..., height:, :].any() and not inputs["pixel_values"][..., width:].any()
    assert not inputs["pixel_mask"][..., height:, :].any() and not inputs["pixel_mask"][..., width:].any()
    # max_padding=0, the default, goes back to one exact shape per micro-batch
    assert sorted(op.with_options(max_padding=0).plan_batches(features)) == [[0], [1]]
    assert sorted(get_operator("object-detection")(model_dir).plan_batches(features)) == [[0], [1]]
