"""image-classification: one label per image (ViT, ConvNeXT, any AutoModelForImageClassification)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from operators.registry import register_operator
from operators.scoring import class_scores, top_labels
from operators.vision_inputs import ImageOperator, ImageOptions
from operators.results import LabelSource, ResponseShape, ranked
from operators.results import CLASSIFICATION_TYPES


class ImageClassificationOptions(ImageOptions):
    top_k: int = Field(
        5,
        ge=1,
        description="Length of `scores`, the best labels with their scores; capped at the number "
        "of labels. 5 as in pipeline().",
    )
    function_to_apply: Literal["default", "softmax", "sigmoid", "none"] = Field(
        "default", description="Scores from logits; default follows the model config as pipeline() does."
    )


@register_operator("image-classification")
class ImageClassificationOperator(ImageOperator):
    output_columns = ("label", "score", "scores")
    output_types = CLASSIFICATION_TYPES
    response = ResponseShape(ranked)
    label_source = LabelSource("label", "score")
    auto_model = "AutoModelForImageClassification"
    Options = ImageClassificationOptions

    def forward_batch(self, features: list[dict[str, Any]]) -> list[np.ndarray]:
        return self.host_rows(self.model(**self.model_inputs(features)).logits)

    def postprocess_row(self, raw: np.ndarray, features: dict[str, Any]) -> dict[str, Any]:
        config = self.model_config
        scores = class_scores(raw, config, self.options.function_to_apply)
        return top_labels(scores, config.id2label, min(self.options.top_k, config.num_labels))
