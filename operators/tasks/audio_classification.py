"""audio-classification: one label per clip (Wav2Vec2-style sequence classification)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from operators.audio_inputs import AudioOperator, AudioOptions
from operators.registry import register_operator
from operators.scoring import class_scores, top_labels


class AudioClassificationOptions(AudioOptions):
    top_k: int | None = Field(
        None, ge=1, description="Also return `scores`, the top k labels with their scores (the pipeline's default is 5)."
    )
    function_to_apply: Literal["default", "softmax", "sigmoid", "none"] = Field(
        "default",
        description="Scores from logits; default follows the model config as the audio-classification "
        "pipeline does (none for regression, sigmoid for multi-label, else softmax).",
    )


@register_operator("audio-classification")
class AudioClassificationOperator(AudioOperator):
    output_columns = ("label", "score", "scores")
    auto_model = "AutoModelForAudioClassification"
    Options = AudioClassificationOptions

    def forward_batch(self, features: list[dict[str, Any]]) -> list[np.ndarray]:
        output, _ = self.run_encoder([f["waveform"] for f in features])
        return list(output.logits.float().cpu().numpy())

    def postprocess_row(self, raw: np.ndarray, features: dict[str, Any]) -> dict[str, Any]:
        config = self.config
        function = self.options.function_to_apply
        if function == "default":
            # Unlike text-classification, this pipeline uses softmax for a single label too.
            function = {"regression": "none", "multi_label_classification": "sigmoid"}.get(
                getattr(config, "problem_type", None), "softmax"
            )
        return top_labels(class_scores(raw, config, function), config.id2label, self.options.top_k)
