"""audio-classification: one label per clip.

This class runs the waveform models (Wav2Vec2FeatureExtractor: wav2vec2, HuBERT, WavLM,
data2vec-audio, ...), whose inputs it pads and normalizes next to the model. Constructing it
with a checkpoint whose feature extractor computes something else (AST's filterbanks, Whisper's
log-mel) returns the registered variant that serves that extractor
(operators/tasks/spectrogram_classification.py), as `transformers.pipeline` takes every
feature extractor that AutoModelForAudioClassification models use.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from operators.audio_inputs import AudioOperator, AudioOptions
from operators.registry import register_operator, task_variants
from operators.scoring import class_scores, top_labels
from operators.results import LabelSource, ResponseShape, ranked
from operators.results import CLASSIFICATION_TYPES


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
    output_types = CLASSIFICATION_TYPES
    response = ResponseShape(ranked)
    label_source = LabelSource("label", "score")
    # The top 5 labels, as the HF Inference API, image-classification, and the default that
    # AudioClassificationPipeline.__init__ sets; the operator names only the best label unless
    # top_k is set. A deliberate difference: transformers 5's pipeline call, whose own
    # top_k=None overrides that default, returns every label.
    endpoint_defaults = {"top_k": 5}
    auto_model = "AutoModelForAudioClassification"
    Options = AudioClassificationOptions

    def __new__(
        cls, model: str | None = None, *args: Any, revision: str | None = None, trust_remote_code: bool = False,
        **kwargs: Any,
    ):
        """The variant that serves the checkpoint's feature extractor; this class for waveform extractors."""
        if cls is not AudioClassificationOperator or model is None:  # a variant, or copy/pickle
            return super().__new__(cls)
        from operators.loading import LoadOptions, load_processor

        # The extractor's class decides, as it decides what the pipeline feeds the model. It
        # loads without weights (a few ms); build_processor loads it again for the instance.
        extractor = load_processor(
            "feature_extractor", LoadOptions(model=str(model), revision=revision, trust_remote_code=trust_remote_code)
        )
        target = next((v for v in task_variants(cls.task) if v.serves(extractor)), cls)
        return super().__new__(target)

    def forward_batch(self, features: list[dict[str, Any]]) -> list[np.ndarray]:
        output, _ = self.run_encoder([f["waveform"] for f in features])
        return self.host_rows(output.logits)

    def postprocess_row(self, raw: np.ndarray, features: dict[str, Any]) -> dict[str, Any]:
        config = self.config
        function = self.options.function_to_apply
        if function == "default":
            # Unlike text-classification, this pipeline uses softmax for a single label too.
            function = {"regression": "none", "multi_label_classification": "sigmoid"}.get(
                getattr(config, "problem_type", None), "softmax"
            )
        return top_labels(class_scores(raw, config, function), config.id2label, self.options.top_k)
