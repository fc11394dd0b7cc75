"""image-classification and depth-estimation with the published configurations of
google/vit-base-patch16-224 and vinvino02/glpn-kitti (tiny_models/checkpoints.py),
held to the plain transformers.pipeline() (the image processor backend it picks, as the operators do).

Stands for: google/vit-base-patch16-224 (and other ViT/DeiT checkpoints with a fixed square
bilinear resize: vit-large-patch16-224, deit-*-224); vinvino02/glpn-kitti and glpn-nyu (the
same processor; nyu's max_depth is 10).
"""

from __future__ import annotations

import numpy as np
import pytest

from operators import get_operator
from tests.operators.images import encode, exif_rotated_jpeg, open_for_pipeline, default_pipeline, pixels, varied_images

SCORE_TOL = 1e-5  # fp32, bit-identical pixels; batching changes summation order only (measured 1.6e-6)
DEPTH_TOL = 1e-4  # depths near 40 of max_depth 80 m; measured <= 1.2e-5 between batched and alone


def checkpoint_images() -> list[bytes]:
    """Small varied pictures (upscaled by ViT, kept near size by GLPN), a 400 x 300 photo-like
    one (downscaled by ViT, antialiased) and an EXIF-rotated JPEG."""
    return varied_images()[:5] + [encode(pixels(400, 300, 11), "JPEG", quality=90), exif_rotated_jpeg()]


@pytest.fixture(scope="module")
def vit(checkpoint_model):
    return checkpoint_model("google/vit-base-patch16-224")


@pytest.fixture(scope="module")
def glpn(checkpoint_model):
    return checkpoint_model("vinvino02/glpn-kitti")


def test_vit_base_parity_with_pipeline(vit):
    images = checkpoint_images()
    op = get_operator("image-classification")(vit, max_batch_rows=4)
    processor = op.processor
    assert processor.size == {"height": 224, "width": 224} and processor.resample == 2
    assert list(processor.image_mean) == [0.5] * 3 and list(processor.image_std) == [0.5] * 3
    out = op({"image": images})
    assert op._direct, "ViT's one fixed-size resize takes the direct shortcut, pixel-checked"
    assert out["error"] == [None] * len(images)
    reference = default_pipeline("image-classification", vit)
    for i, data in enumerate(images):
        expected = reference(open_for_pipeline(data))  # top 5 of 1000
        assert [s["label"] for s in out["scores"][i]] == [e["label"] for e in expected]
        assert [s["score"] for s in out["scores"][i]] == pytest.approx([e["score"] for e in expected], abs=SCORE_TOL)
    assert len(set(out["label"])) > 3


def test_glpn_kitti_parity_with_pipeline(glpn):
    images = checkpoint_images()
    op = get_operator("depth-estimation")(glpn, max_batch_rows=4)
    assert op.processor.size_divisor == 32 and op.model_config.max_depth == 80
    prepared = op.preprocess({"image": images})
    for f in prepared["features"]:
        assert f["pixels"].shape[1] % 32 == 0 and f["pixels"].shape[2] % 32 == 0
    out = op.postprocess(op.forward(prepared), prepared)
    assert out["error"] == [None] * len(images)
    reference = default_pipeline("depth-estimation", glpn)
    for i, data in enumerate(images):
        want = reference(open_for_pipeline(data))["predicted_depth"].numpy()
        got = np.asarray(out["predicted_depth"][i], dtype=np.float32)
        assert got.shape == want.shape  # the original (height, width)
        np.testing.assert_allclose(got, want, rtol=0, atol=DEPTH_TOL)
        assert 0 < got.max() <= 80
