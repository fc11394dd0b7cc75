"""The shared image path: decoding, bad input per row, uint8 features, shape batches, and
bit-exact on-device normalization against each processor."""

from __future__ import annotations

import numpy as np
import pytest

from operators import get_operator
from operators.decoding.image import decode_image
from operators.direct_resize import DirectResize
from tests.operators.images import (
    encode,
    exif_rotated_jpeg,
    one_pixel_png,
    open_for_pipeline,
    default_pipeline,
    pixels,
    png_bomb_header,
    truncated_jpeg,
    varied_images,
)

VISION_TASKS = ["image-classification", "object-detection", "image-segmentation", "depth-estimation"]


@pytest.fixture(scope="module")
def vit_dir(tiny_model):
    return tiny_model("image-classification")


def bad_inputs() -> dict[str, tuple[object, str]]:
    """name -> (cell, expected error prefix)"""
    return {
        "corrupt": (b"\x89PNG\r\n\x1a\nthis is not a png", "decode: "),
        "zero_length": (b"", "input: empty image (0 bytes)"),
        "none": (None, "input: expected image bytes, got None"),
        "number": (42, "input: expected image bytes, got int"),
        "truncated_jpeg": (truncated_jpeg(), "decode: image file is truncated"),
        "bomb_header": (png_bomb_header(100_000, 100_000), "decode: decompression bomb refused"),
        # under Pillow's own bomb limit, over ours (64 Mpx)
        "oversized": (png_bomb_header(9_000, 9_000), "decode: image too large: 9000x9000 = 81000000 pixels"),
        "path_missing": ({"bytes": None, "path": "/nonexistent/x.png"}, "decode: cannot read '/nonexistent/x.png'"),
    }


def test_bad_rows_become_errors_and_neighbours_keep_parity(vit_dir):
    good = varied_images()[:2]
    bad = bad_inputs()
    op = get_operator("image-classification")(vit_dir)
    out = op({"image": [good[0], *[cell for cell, _ in bad.values()], good[1]]})
    n = len(bad) + 2
    assert all(len(column) == n for column in out.values())
    for (name, (_, prefix)), error in zip(bad.items(), out["error"][1:-1]):
        assert error is not None and error.startswith(prefix), (name, error)
    assert out["label"][1:-1] == [None] * len(bad) and out["scores"][1:-1] == [None] * len(bad)
    assert out["error"][0] is None and out["error"][-1] is None
    reference = default_pipeline("image-classification", vit_dir)
    for got_label, got_score, data in ((out["label"][0], out["score"][0], good[0]), (out["label"][-1], out["score"][-1], good[1])):
        expected = reference(open_for_pipeline(data))[0]
        assert got_label == expected["label"]
        assert got_score == pytest.approx(expected["score"], abs=1e-5)


def test_max_image_pixels_option(vit_dir):
    image = encode(pixels(64, 48, 1), "PNG")
    op = get_operator("image-classification")(vit_dir, max_image_pixels=64 * 48 - 1)
    out = op({"image": [image, one_pixel_png()]})
    assert out["error"][0] == "decode: image too large: 64x48 = 3072 pixels exceeds the limit of 3071"
    assert out["error"][1] is None


@pytest.mark.parametrize("task", VISION_TASKS)
def test_every_vision_task_isolates_bad_rows(tiny_model, task):
    op = get_operator(task)(tiny_model(task), max_image_pixels=10_000)
    cells = [varied_images()[0], None, b"", truncated_jpeg(), png_bomb_header(200, 200)]
    out = op({"image": cells})
    assert out["error"][0] is None
    assert [e.split(":")[0] for e in out["error"][1:]] == ["input", "input", "decode", "decode"]
    alone = op({"image": cells[:1]})
    for column in op.output_columns:
        assert out[column][1:] == [None] * 4
        # same micro-batch (the good row alone) either way, so the result is identical
        assert out[column][0] is not None and out[column][0] == alone[column][0]


def test_hf_datasets_struct_and_buffers(vit_dir, tmp_path):
    data = varied_images()[1]
    path = tmp_path / "image.png"
    path.write_bytes(data)
    op = get_operator("image-classification")(vit_dir)
    cells = [data, {"bytes": data, "path": "ignored.png"}, {"bytes": None, "path": str(path)}, bytearray(data), memoryview(data)]
    out = op({"image": cells})
    assert out["error"] == [None] * len(cells)
    assert len(set(out["label"])) == 1 and len({round(s, 6) for s in out["score"]}) == 1


def test_exif_orientation_and_modes():
    import io

    from PIL import Image, ImageOps

    rotated = decode_image(exif_rotated_jpeg())
    assert rotated.size == (40, 80) and rotated.mode == "RGB"
    # what transformers' load_image makes of it (a transposed copy), pixel for pixel
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(exif_rotated_jpeg()))).convert("RGB")
    assert np.array_equal(np.asarray(rotated), np.asarray(expected))
    assert ImageOps.exif_transpose(rotated).size == (40, 80), "the orientation tag must be spent"
    for data in varied_images():  # RGBA and grayscale PNG/JPEG all come out RGB
        assert decode_image(data).mode == "RGB"
    assert decode_image(one_pixel_png()).size == (1, 1)


@pytest.mark.parametrize(
    "task,variant",
    [("image-classification", None), ("image-classification", "convnext"), ("object-detection", None),
     ("image-segmentation", None), ("depth-estimation", None)],
)
def test_features_are_uint8_and_device_pixels_match_the_processor_bit_for_bit(tiny_model, task, variant):
    import torch

    op = get_operator(task)(tiny_model(task, variant))
    images = varied_images()[:3] + [exif_rotated_jpeg()]
    prepared = op.preprocess({"image": images})
    assert op._model is None, "the CPU stage must not load weights"
    for data, features in zip(images, prepared["features"]):
        assert features["pixels"].dtype == np.uint8 and features["pixels"].ndim == 3
        image = decode_image(data)
        assert features["original_size"] == (image.height, image.width)
        expected = op.processor(images=[image], return_tensors="pt")["pixel_values"]
        got = op.model_inputs([features])["pixel_values"]
        assert got.dtype == torch.float32 and torch.equal(got, expected)


def test_plan_batches_groups_by_shape_and_bounds_pixels(vit_dir):
    op = get_operator("image-classification")(vit_dir, max_batch_rows=3, max_batch_pixels=2 * 40 * 40)
    shapes = [(3, 32, 32), (3, 40, 40), (3, 32, 32), (3, 32, 32), (3, 32, 32), (3, 40, 40), (3, 40, 40)]
    features = [{"pixels": np.zeros(s, np.uint8)} for s in shapes]
    batches = op.plan_batches(features)
    assert sorted(i for b in batches for i in b) == list(range(len(shapes)))
    for batch in batches:
        assert len({shapes[i] for i in batch}) == 1
        assert len(batch) <= 3
        assert len(batch) * shapes[batch[0]][1] * shapes[batch[0]][2] <= 2 * 40 * 40
    assert sorted(len(b) for b in batches) == [1, 1, 2, 3]


def test_model_inputs_accept_column_store_features(vit_dir):
    """Features that went through Arrow: pixels as nested lists, a missing pixel_mask as None,
    a padded row's mask kept."""
    import torch

    op = get_operator("image-classification")(vit_dir)
    features = op.preprocess({"image": varied_images()[:2]})["features"]
    direct = op.model_inputs(features)
    mask = np.ones((32, 32), np.uint8)
    mask[:, 20:] = 0
    stored = [
        {"pixels": features[0]["pixels"].tolist(), "original_size": [48, 64], "pixel_mask": None},
        {"pixels": features[1]["pixels"], "original_size": [64, 48], "pixel_mask": mask},
    ]
    assert sorted(op.plan_batches(stored)) == [[0], [1]]  # a padded row never joins unpadded ones
    assert op.plan_batches([stored[0], features[1]]) == [[0, 1]]
    inputs = op.model_inputs(stored)
    # the processors pad after normalizing, so where a row's own mask is 0 its values are 0
    expected = direct["pixel_values"].clone()
    expected[1, :, :, 20:] = 0
    assert torch.equal(inputs["pixel_values"], expected)
    assert inputs["pixel_mask"].dtype == torch.int64
    assert inputs["pixel_mask"][0].all() and inputs["pixel_mask"][1].sum() == 32 * 20


@pytest.mark.parametrize(
    "task,variant,shortcut",
    [("image-classification", None, True), ("image-classification", "convnext", False),
     ("object-detection", None, False), ("image-segmentation", None, False), ("depth-estimation", None, False)],
)
def test_direct_resize_only_where_it_is_the_whole_processor_call(tiny_model, task, variant, shortcut):
    """ViT's processor is one fixed-size resize (either backend); ConvNeXT crops, DETR and Mask2Former keep
    the aspect ratio, GLPN rounds to a divisor: those keep the processor."""
    op = get_operator(task)(tiny_model(task, variant))
    direct = DirectResize.matching(op.processor)
    assert (direct is not None) is shortcut
    for data in varied_images() + [exif_rotated_jpeg()]:
        image = decode_image(data)
        features = op.image_features(image)
        assert np.array_equal(features["pixels"], op.processor_features(image)["pixels"])
    assert (op._direct is not False) is shortcut


def test_a_processor_that_overrides_a_step_keeps_the_processor(vit_dir):
    op = get_operator("image-classification")(vit_dir)
    processor = op.processor
    patched = type("PatchedResize", (type(processor),), {"resize": lambda self, image, **kw: image})
    processor.__class__ = patched
    assert DirectResize.matching(processor) is None


def test_a_shortcut_that_disagrees_on_the_first_image_is_dropped(vit_dir, monkeypatch, caplog):
    from torchvision.transforms.v2 import InterpolationMode

    # NEAREST where the processor has BILINEAR
    wrong = DirectResize(size=(32, 32), resample=InterpolationMode.NEAREST.value, backend="torchvision")
    monkeypatch.setattr(DirectResize, "matching", classmethod(lambda cls, processor: wrong))
    op = get_operator("image-classification")(vit_dir)
    images = [decode_image(data) for data in varied_images()]
    assert not np.array_equal(wrong(images[0]), op.processor_features(images[0])["pixels"])
    with caplog.at_level("WARNING"):
        features = [op.image_features(image) for image in images]
    assert "a plain torchvision resize gave other pixels" in caplog.text
    assert op._direct is False
    for image, got in zip(images, features):
        assert np.array_equal(got["pixels"], op.processor_features(image)["pixels"])


def test_a_processor_whose_normalization_does_not_fit_the_table_normalizes_on_the_cpu(vit_dir, monkeypatch, caplog):
    """Where the table's values differ from the processor's complete call on the first image,
    every row carries the processor's own float pixels, and the answers stay the pipeline's."""
    import torch

    import operators.vision_inputs as vision_inputs

    table = vision_inputs.pixel_table
    monkeypatch.setattr(vision_inputs, "pixel_table", lambda processor, channels=3: table(processor, channels) + 1e-3)
    op = get_operator("image-classification")(vit_dir)
    images = varied_images()[:4]
    with caplog.at_level("WARNING"):
        prepared = op.preprocess({"image": images})
    assert "normalized other values" in caplog.text and op._deferred is False
    for data, features in zip(images, prepared["features"]):
        assert features.get("pixels") is None and features["pixel_values"].dtype == np.float32
        expected = op.processor(images=[decode_image(data)], return_tensors="pt")["pixel_values"]
        assert torch.equal(op.model_inputs([features])["pixel_values"], expected)
    out = op.postprocess(op.forward(prepared), prepared)
    reference = default_pipeline("image-classification", vit_dir)
    for label, score, data in zip(out["label"], out["score"], images):
        expected = reference(open_for_pipeline(data))[0]
        assert label == expected["label"] and score == pytest.approx(expected["score"], abs=1e-5)
