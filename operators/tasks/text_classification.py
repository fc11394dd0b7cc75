"""text-classification: one label per text (BERT-style sequence classification)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from operators.registry import register_operator
from operators.scoring import class_scores, top_labels
from operators.text_inputs import EncoderTextOperator, TextOptions


class TextClassificationOptions(TextOptions):
    top_k: int | None = Field(
        None, ge=1, description="Also return `scores`, the top k labels with their scores."
    )
    function_to_apply: Literal["default", "softmax", "sigmoid", "none"] = Field(
        "default", description="Scores from logits; default follows the model config as pipeline() does."
    )


@register_operator("text-classification")
class TextClassificationOperator(EncoderTextOperator):
    output_columns = ("label", "score", "scores")
    auto_model = "AutoModelForSequenceClassification"
    Options = TextClassificationOptions

    def forward_batch(self, features: list[dict[str, Any]]) -> list[np.ndarray]:
        logits = self.model(**self.model_inputs(features)).logits
        return list(logits.float().cpu().numpy())

    def postprocess_row(self, raw: np.ndarray, features: dict[str, Any]) -> dict[str, Any]:
        config = self.model.config
        scores = class_scores(raw, config, self.options.function_to_apply)
        return top_labels(scores, config.id2label, self.options.top_k)
