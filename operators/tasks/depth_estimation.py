"""depth-estimation: a depth map per image (GLPN, DPT and other AutoModelForDepthEstimation models).

Outputs, both at the original image size (height x width), as pipeline() gives them:

* `predicted_depth`: the model's float32 depth, bicubically resized by the processor's
  post_process_depth_estimation, as a list of rows (list of lists of floats), which
  round-trips through Arrow, Parquet and JSON unchanged.
* `depth`: a 16-bit grayscale PNG of the same map, min/max normalized:
  `uint16(round(65535 * (d - min(d)) / (max(d) - min(d))))` computed in float32, all zeros
  when the map is constant. pipeline()'s `depth` image is the 8-bit version of the same
  normalization, `uint8(floor(255 * (d - min) / (max - min)))`, so
  `floor(depth16 * 255 / 65535)` gives it back to within one level.
"""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import numpy as np

from operators.registry import register_operator
from operators.vision_inputs import ImageOperator, ImageOptions
from operators.results import ResponseShape, fields
import pyarrow as pa


def png_depth16(depth: np.ndarray) -> bytes:
    """float HxW depth -> 16-bit grayscale PNG bytes of its min/max normalization."""
    from PIL import Image

    depth = depth.astype(np.float32)
    low, high = depth.min(), depth.max()
    if high > low:
        scaled = np.round((depth - low) / (high - low) * np.float32(65535))
    else:  # pipeline() divides by zero here; a constant map has no relative depth
        scaled = np.zeros_like(depth)
    buf = io.BytesIO()
    Image.fromarray(scaled.astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


@register_operator("depth-estimation")
class DepthEstimationOperator(ImageOperator):
    output_columns = ("depth", "predicted_depth")
    output_types = {"depth": pa.binary(), "predicted_depth": pa.list_(pa.list_(pa.float64()))}
    response = ResponseShape(fields("depth", "predicted_depth"))
    auto_model = "AutoModelForDepthEstimation"
    Options = ImageOptions

    def image_features(self, image) -> dict[str, Any]:
        # GLPN-style processors round sizes down to a multiple of size_divisor, so an image
        # smaller than that would become 0 pixels and fail (pipeline() raises). Upscale such
        # images to the divisor first with the processor's resample filter; larger images
        # are untouched, and the depth map still comes back at the original size.
        divisor = getattr(self.processor, "size_divisor", None)
        if divisor and (image.width < divisor or image.height < divisor):
            original = (int(image.height), int(image.width))
            size = (max(image.width, divisor), max(image.height, divisor))
            features = super().image_features(image.resize(size, resample=self.processor.resample))
            features["original_size"] = original
            return features
        return super().image_features(image)

    def forward_batch(self, features: list[dict[str, Any]]) -> list[np.ndarray]:
        return self.host_rows(self.model(**self.model_inputs(features)).predicted_depth)

    def postprocess_row(self, raw: np.ndarray, features: dict[str, Any]) -> dict[str, Any]:
        import torch

        outputs = SimpleNamespace(predicted_depth=torch.from_numpy(raw)[None])
        # target size (height, width), as pipeline() passes it (source size for ZoeDepth)
        depth = self.processor.post_process_depth_estimation(outputs, [tuple(features["original_size"])])[0]
        depth = depth["predicted_depth"].float().numpy()  # post-processed on the host
        return {"depth": png_depth16(depth), "predicted_depth": depth.tolist()}
