"""text-classification: one label per text (BERT-style sequence classification).

Scores are TextClassificationPipeline.postprocess's own: it picks sigmoid for
problem_type multi_label_classification or one label, none for regression, softmax otherwise.

Deliberate difference: inputs are truncated to the token limit (operators/text_inputs.py) by
default. pipeline() truncates only when asked, and even then only to the tokenizer's
model_max_length, which is unset (1e30) for checkpoints saved without tokenizer_config.json
(cardiffnlp's twitter-roberta): there a long text makes the pipeline raise an index error,
and taskray answers as the pipeline does on the text truncated to the model's positions.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from operators.registry import register_operator
from operators.text_inputs import EncoderTextOperator, TextOptions, pipeline_steps
from operators.results import LabelSource, ResponseShape, ranked
from operators.results import CLASSIFICATION_TYPES


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
    output_types = CLASSIFICATION_TYPES
    response = ResponseShape(ranked, unwrap_in_list=True, wrap_single=True)
    label_source = LabelSource("label", "score")
    auto_model = "AutoModelForSequenceClassification"
    Options = TextClassificationOptions

    def forward_batch(self, features: list[dict[str, Any]]) -> list[np.ndarray]:
        return self.host_rows(self.model(**self.model_inputs(features)).logits)

    def postprocess_row(self, raw: np.ndarray, features: dict[str, Any]) -> dict[str, Any]:
        import torch
        from transformers.pipelines.text_classification import ClassificationFunction, TextClassificationPipeline

        steps = pipeline_steps(TextClassificationPipeline, self.processor, self.model_config)
        function = self.options.function_to_apply
        ranked = steps.postprocess(
            {"logits": torch.from_numpy(raw)[None]},
            function_to_apply=None if function == "default" else ClassificationFunction[function.upper()],
            top_k=None,
            _legacy=False,  # every label, best first (a stable sort: ties keep the label order)
        )
        top_k = self.options.top_k
        return {**ranked[0], "scores": ranked[:top_k] if top_k is not None else None}
