"""depth-estimation: parity with transformers.pipeline (GLPN), 16-bit depth PNG, tiny images."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from operators import get_operator
from tests.operators.images import exif_rotated_jpeg, one_pixel_png, open_for_pipeline, default_pipeline, varied_images

# fp32 on CPU, bit-identical pixels; batching changes summation order only (measured <= 1e-6
# on depths of ~5).
DEPTH_TOL = 1e-5


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model("depth-estimation")


def depth16(data: bytes) -> np.ndarray:
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == "I;16"
    return np.asarray(image)


def test_parity_with_pipeline(model_dir):
    reference = default_pipeline("depth-estimation", model_dir)
    images = varied_images() + [exif_rotated_jpeg()]
    op = get_operator("depth-estimation")(model_dir, max_batch_rows=4)
    prepared = op.preprocess({"image": images})
    assert len({f["pixels"].shape for f in prepared["features"]}) > 3, "GLPN keeps sizes: several shapes"
    out = op.postprocess(op.forward(prepared), prepared)
    assert out["error"] == [None] * len(images)
    for i, data in enumerate(images):
        expected = reference(open_for_pipeline(data))
        want = expected["predicted_depth"].numpy()
        got = np.asarray(out["predicted_depth"][i], dtype=np.float32)
        assert got.shape == want.shape  # original (height, width); EXIF rotation applied
        np.testing.assert_allclose(got, want, rtol=0, atol=DEPTH_TOL)
        levels = depth16(out["depth"][i])
        assert levels.shape == want.shape and levels.min() == 0 and levels.max() == 65535
        # pipeline's 8-bit image is floor(255 * normalized); ours is round(65535 * normalized)
        eight_bit = np.asarray(expected["depth"]).astype(np.float64)
        # so ours, scaled to 255, sits in [floor, floor + 1) up to rounding and float32 noise:
        # a pixel whose 255 * normalized lies on an integer lands one 16-bit level either side
        # as the batch or the thread count moves the depth by ~1e-6 (seen: -1 level, 0.0039).
        excess = levels.astype(np.float64) * 255 / 65535 - eight_bit
        one_level = 255 / 65535
        assert excess.min() > -one_level - 1e-3 and excess.max() < 1 + one_level + 1e-3


def test_predicted_depth_round_trips_json_and_arrow(model_dir):
    import pyarrow as pa

    out = get_operator("depth-estimation")(model_dir)({"image": varied_images()[:2]})
    column = out["predicted_depth"]
    assert json.loads(json.dumps(column)) == column
    table = pa.table({"predicted_depth": column, "depth": out["depth"]})
    assert table.column("predicted_depth").to_pylist() == column
    assert table.column("depth").type == pa.binary()


def test_images_smaller_than_size_divisor_are_upscaled(model_dir):
    # pipeline() fails on these (GLPN rounds 1 px down to 0); we upscale to the divisor first
    out = get_operator("depth-estimation")(model_dir)({"image": [one_pixel_png(), varied_images()[0]]})
    assert out["error"] == [None, None]
    assert np.asarray(out["predicted_depth"][0]).shape == (1, 1)
    assert depth16(out["depth"][0]).tolist() == [[0]]  # a constant map has no relative depth
