"""Opt-in padded buckets (max_padding > 0) at a real checkpoint's sizes: facebook/detr-resnet-50's configuration and
processor (shortest edge 800, longest 1333; the resnet50 backbone is the real one), images of
three different sizes in one padded micro-batch, held to transformers.pipeline run one image at
a time (the unpadded answer) on every one of the 100 queries.

DETR reads the pixel mask: its sine position embedding is normalized by the mask's extent, its
attention skips padded positions, and its boxes are relative to the unpadded image. What
padding can still move is the backbone's features at the padded edge: on real photos it does
(tests/checkpoints/test_real_photos.py), which is why padded buckets are opt-in.
"""

from __future__ import annotations

import pytest

from operators import get_operator
from tests.operators.images import encode, open_for_pipeline, default_pipeline, pixels

TASK = "object-detection"
# Measured over the 300 queries of these images: scores differ by at most 9.8e-6 from the
# image-alone answer and boxes by 0 px (padding the 267 px strip to 320 rows took 17% of the
# canvas). Without rounding the canvas up to a multiple of 32, the 284 px strip's mask marked one
# feature row too many and its scores moved by 0.76.
SCORE_TOL = 1e-4
BOX_TOL = 1  # whole pixels truncated toward zero: a coordinate at an integer may truncate apart


@pytest.fixture(scope="module")
def model_dir(checkpoint_model):
    return checkpoint_model("facebook/detr-resnet-50")


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    """Wide strips the processor turns into 267, 305 and 284 x 1333 px."""
    return [encode(pixels(160, 32, 1), "JPEG"), encode(pixels(140, 32, 2), "PNG"), encode(pixels(150, 32, 5), "JPEG")]


def test_padded_bucket_matches_the_unpadded_answer(model_dir, images):
    detector = default_pipeline(TASK, model_dir)
    reference = [detector(open_for_pipeline(data), threshold=0.0) for data in images]
    op = get_operator(TASK)(model_dir, threshold=0.0, max_padding=0.25)  # padded buckets are opt-in
    prepared = op.preprocess({"image": images})
    assert [f["pixels"].shape for f in prepared["features"]] == [(3, 267, 1333), (3, 305, 1333), (3, 284, 1333)]
    assert op.plan_batches(prepared["features"]) == [[0, 2, 1]], "one padded micro-batch"
    assert tuple(op.model_inputs(prepared["features"])["pixel_values"].shape) == (3, 3, 320, 1344)
    out = op.postprocess(op.forward(prepared), prepared)
    assert out["error"] == [None] * len(images)
    for got, want in zip(out["objects"], reference):
        assert len(got) == len(want) == 100
        assert [g["label"] for g in got] == [w["label"] for w in want]
        for g, w in zip(got, want):
            assert g["score"] == pytest.approx(w["score"], abs=SCORE_TOL)
            assert all(abs(g["box"][k] - w["box"][k]) <= BOX_TOL for k in g["box"]), (g["box"], w["box"])
    assert len({o["label"] for objects in out["objects"] for o in objects}) > 5
