"""image-segmentation: labelled masks per image (Mask2Former and other universal/semantic segmenters)."""

from __future__ import annotations

import inspect
import io
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
from pydantic import Field

from operators.registry import register_operator
from operators.vision_inputs import ImageOperator, ImageOptions
from operators.results import LabelSource, ResponseShape, column
import pyarrow as pa

from operators.results import IMAGE_SIZE_TYPES, struct

# Model outputs that processors' post_process_*_segmentation read; others (hidden states,
# auxiliary logits) stay on the device.
SEGMENTATION_OUTPUTS = ("class_queries_logits", "masks_queries_logits", "logits", "pred_masks", "pred_boxes")


class ImageSegmentationOptions(ImageOptions):
    subtask: Literal["semantic", "instance", "panoptic"] | None = Field(
        None,
        description="Kind of segmentation. None picks as pipeline() does: panoptic, else instance, "
        "else semantic, whichever the processor supports first.",
    )
    threshold: float = Field(
        0.9, ge=0.0, le=1.0, description="Panoptic/instance: keep masks whose class score is at least this (pipeline default 0.9)."
    )
    mask_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="Panoptic/instance: probability above which a pixel belongs to a mask."
    )
    overlap_mask_area_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="Panoptic/instance: drop a mask when less than this share of it survives overlaps."
    )


def png_mask(mask: np.ndarray) -> bytes:
    """A boolean HxW mask as PNG bytes of a mode "L" image, 255 inside and 0 outside,
    pixel for pixel the mask image pipeline() returns."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


@register_operator("image-segmentation")
class ImageSegmentationOperator(ImageOperator):
    """`segments`: [{score, label, mask}] where mask is PNG bytes (mode "L", 0/255) at the
    original image size; score is None for semantic segmentation, as in pipeline().
    `image_width`/`image_height`: that size (the decoded image, after its EXIF orientation),
    recorded so that exports know it even for a row with no segment."""

    output_columns = ("segments", "image_width", "image_height")
    output_types = {
        "segments": pa.list_(struct(score=pa.float64(), label=pa.string(), mask=pa.binary())),
        **IMAGE_SIZE_TYPES,
    }
    response = ResponseShape(column("segments"))
    label_source = LabelSource("segments", "score", ("label",), "segments")
    auto_model = "AutoModelForImageSegmentation"
    Options = ImageSegmentationOptions

    def check_config(self) -> None:
        from operators.vision_inputs import check_timm_importable

        # build_model picks one of these by the config's model type, so the base's one-class
        # architecture check is replaced, not extended; the timm check still applies.
        self.check_architecture(("AutoModelForUniversalSegmentation", "AutoModelForSemanticSegmentation"))
        check_timm_importable(self.model_config, self.model_id)

    def build_model(self):
        # Mask2Former/MaskFormer/OneFormer are only in the universal-segmentation mapping
        # (pipeline() reaches them through config.architectures); SegFormer-style models are
        # semantic-only.
        from transformers.models.auto.modeling_auto import MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES

        from operators.loading import load_model

        universal = self.model_config.model_type in MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES
        auto_class = "AutoModelForUniversalSegmentation" if universal else "AutoModelForSemanticSegmentation"
        return load_model(auto_class, self.load_options, self.device, self.dtype, **self.model_kwargs())

    def forward_batch(self, features: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
        inputs = self.model_inputs(features)
        canvas = tuple(inputs["pixel_values"].shape[-2:])
        out = self.model(**inputs)
        columns = {k: self.host_rows(out[k]) for k in SEGMENTATION_OUTPUTS if out.get(k) is not None}
        # Mask logits (batch, queries or classes, h, w) cover the padded canvas; post-processing
        # stretches them over the whole image, so each row keeps only its own region, the
        # size it would have alone. Boxes and class logits are not spatial maps.
        return [
            {k: np.ascontiguousarray(self.valid_region(rows[i], f, canvas)) if rows[i].ndim == 3 else rows[i]
             for k, rows in columns.items()}
            for i, f in enumerate(features)
        ]

    def postprocess_row(self, raw: dict[str, np.ndarray], features: dict[str, Any]) -> dict[str, Any]:
        import torch

        outputs = SimpleNamespace(**{k: torch.from_numpy(v)[None] for k, v in raw.items()})
        target_sizes = [tuple(features["original_size"])]
        id2label = self.model_config.id2label
        subtask, processor, opts = self.options.subtask, self.processor, self.options
        fn = None
        if subtask in ("panoptic", None) and hasattr(processor, "post_process_panoptic_segmentation"):
            fn = processor.post_process_panoptic_segmentation
        elif subtask in ("instance", None) and hasattr(processor, "post_process_instance_segmentation"):
            fn = processor.post_process_instance_segmentation
        if fn is not None:
            kwargs = dict(
                threshold=opts.threshold,
                mask_threshold=opts.mask_threshold,
                overlap_mask_area_threshold=opts.overlap_mask_area_threshold,
                target_sizes=target_sizes,
            )
            if "label_ids_to_fuse" in inspect.signature(fn).parameters:
                kwargs["label_ids_to_fuse"] = set()  # pipeline's default, without a warning per row
            result = fn(outputs, **kwargs)[0]
            segmentation = result["segmentation"].numpy()
            segments = [
                {"score": float(s["score"]), "label": id2label[s["label_id"]], "mask": png_mask(segmentation == s["id"])}
                for s in result["segments_info"]
            ]
        elif subtask in ("semantic", None) and hasattr(processor, "post_process_semantic_segmentation"):
            segmentation = processor.post_process_semantic_segmentation(outputs, target_sizes=target_sizes)[0].numpy()
            segments = [
                {"score": None, "label": id2label[int(label)], "mask": png_mask(segmentation == label)}
                for label in np.unique(segmentation)
            ]
        else:
            raise ValueError(f"subtask {subtask!r} is not supported by {type(processor).__name__}")
        height, width = target_sizes[0]
        return {"segments": segments, "image_width": int(width), "image_height": int(height)}
