"""image-classification: parity with transformers.pipeline for ViT and ConvNeXT, top_k."""

from __future__ import annotations

import pytest

from operators import get_operator
from tests.operators.images import exif_rotated_jpeg, one_pixel_png, open_for_pipeline, default_pipeline, varied_images

# fp32 on CPU; pixels are bit-identical to the processor's, so only the batched matmuls differ
# from pipeline()'s batch of one (summation order): measured <= 1e-6.
SCORE_TOL = 1e-5


@pytest.fixture(scope="module", params=[None, "convnext"], ids=["vit", "convnext"])
def model_dir(request, tiny_model):
    return tiny_model("image-classification", request.param)


@pytest.fixture(scope="module")
def reference(model_dir):
    return default_pipeline("image-classification", model_dir)


def test_parity_with_pipeline(model_dir, reference):
    images = varied_images() + [one_pixel_png(), exif_rotated_jpeg()]
    op = get_operator("image-classification")(model_dir, max_batch_rows=4)
    out = op({"image": images})
    assert out["error"] == [None] * len(images)
    for i, data in enumerate(images):
        expected = reference(open_for_pipeline(data))
        assert out["label"][i] == expected[0]["label"]
        assert out["score"][i] == pytest.approx(expected[0]["score"], abs=SCORE_TOL)
        assert [s["label"] for s in out["scores"][i]] == [e["label"] for e in expected]
        assert [s["score"] for s in out["scores"][i]] == pytest.approx([e["score"] for e in expected], abs=SCORE_TOL)
    assert len(set(out["label"])) > 2, "calibrated tiny model should give labels that vary with the image"


def test_top_k_matches_pipeline_and_is_capped(model_dir, reference):
    images = varied_images()[:3]
    op = get_operator("image-classification")(model_dir, top_k=2)
    out = op({"image": images})
    for i, data in enumerate(images):
        expected = reference(open_for_pipeline(data), top_k=2)
        assert [s["label"] for s in out["scores"][i]] == [e["label"] for e in expected]
    wide = op.with_options(top_k=100)({"image": images[:1]})
    num_labels = len(op.labels())
    assert len(wide["scores"][0]) == num_labels
    assert sum(s["score"] for s in wide["scores"][0]) == pytest.approx(1.0, abs=1e-5)


def test_empty_batch(model_dir):
    op = get_operator("image-classification")(model_dir)
    assert op({"image": []}) == {"label": [], "score": [], "scores": [], "error": []}
