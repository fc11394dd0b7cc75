"""object-detection: labelled boxes per image (DETR and other AutoModelForObjectDetection models)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
from pydantic import Field

from operators.registry import register_operator
from operators.vision_inputs import ImageOperator, ImageOptions
from operators.results import LabelSource, ResponseShape, column
import pyarrow as pa

from operators.results import IMAGE_SIZE_TYPES, struct

BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


class ObjectDetectionOptions(ImageOptions):
    threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="Keep objects whose score is above this; 0.5 as in pipeline()."
    )


@register_operator("object-detection")
class ObjectDetectionOperator(ImageOperator):
    """`objects`: [{score, label, box: {xmin, ymin, xmax, ymax}}] in original image pixels,
    whole pixels truncated toward zero as pipeline() gives them. `image_width`/`image_height`:
    the size those pixels count in (the decoded image, after its EXIF orientation), so that
    exports (COCO, Label Studio) know it without reading the images again."""

    output_columns = ("objects", "image_width", "image_height")
    output_types = {
        "objects": pa.list_(struct(score=pa.float64(), label=pa.string(), box=struct(
            xmin=pa.int64(), ymin=pa.int64(), xmax=pa.int64(), ymax=pa.int64()))),
        **IMAGE_SIZE_TYPES,
    }
    response = ResponseShape(column("objects"))
    label_source = LabelSource("objects", "score", ("label",), "objects")
    auto_model = "AutoModelForObjectDetection"
    Options = ObjectDetectionOptions

    def forward_batch(self, features: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
        out = self.model(**self.model_inputs(features))
        return [
            {"logits": logits, "pred_boxes": boxes}
            for logits, boxes in zip(self.host_rows(out.logits), self.host_rows(out.pred_boxes))
        ]

    def postprocess_row(self, raw: dict[str, np.ndarray], features: dict[str, Any]) -> dict[str, Any]:
        import torch

        # The processor's own post-processing, on a batch of one, as pipeline() calls it.
        outputs = SimpleNamespace(
            logits=torch.from_numpy(raw["logits"])[None], pred_boxes=torch.from_numpy(raw["pred_boxes"])[None]
        )
        target_size = torch.tensor([features["original_size"]], dtype=torch.int32)
        found = self.processor.post_process_object_detection(
            outputs, threshold=self.options.threshold, target_sizes=target_size
        )[0]
        id2label = self.model_config.id2label
        objects = [
            {"score": float(score), "label": id2label[int(label)], "box": dict(zip(BOX_KEYS, box.int().tolist()))}
            for score, label, box in zip(found["scores"], found["labels"], found["boxes"])
        ]
        height, width = features["original_size"]
        return {"objects": objects, "image_width": int(width), "image_height": int(height)}
