"""The deliberate difference from pipeline()'s default image backend (operators/loading.py).

With torchvision installed, transformers.pipeline() resizes with the torchvision backend;
taskray's operators load the PIL backend. The parity tests compare against a PIL-backend
pipeline (tests/operators/images.py: pil_pipeline); this one holds taskray to the pipeline a
user gets by default.
"""

from __future__ import annotations

import pytest

from operators import get_operator
from tests.operators.images import exif_rotated_jpeg, open_for_pipeline, varied_images

# Resizing 33-96 px pictures to the tiny models' 32 px input, the two backends' pixels differ
# by a few levels. Measured over these 10 images: scores differ by <= 0.0115 (ViT) and
# <= 0.0058 (ConvNeXT), top labels equal. Full-size models resize less drastically.
SCORE_TOL = 0.02


@pytest.mark.parametrize("variant", [None, "convnext"], ids=["vit", "convnext"])
def test_torchvision_backend_pipeline_gives_same_labels(tiny_model, variant):
    from transformers import pipeline

    model_dir = tiny_model("image-classification", variant)
    reference = pipeline("image-classification", model=model_dir, device="cpu")
    op = get_operator("image-classification")(model_dir, top_k=6)
    assert type(reference.image_processor).__name__ + "Pil" == type(op.processor).__name__, (
        "the reference should use the torchvision backend and the operator the PIL one"
    )
    images = varied_images() + [exif_rotated_jpeg()]
    out = op({"image": images})
    for i, data in enumerate(images):
        expected = reference(open_for_pipeline(data), top_k=6)
        assert out["label"][i] == expected[0]["label"]
        got = {s["label"]: s["score"] for s in out["scores"][i]}
        for e in expected:
            assert got[e["label"]] == pytest.approx(e["score"], abs=SCORE_TOL)
