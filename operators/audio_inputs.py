"""Shared pieces for operators whose input is audio run through a Wav2Vec2-style encoder.

Preprocess (CPU) decodes each row to a compact, unpadded float32 waveform at the feature
extractor's rate. Forward pads a micro-batch, normalizes each waveform over its unpadded part
(the feature extractor's own zero-mean unit-variance code, so results equal a one-clip-at-a-time
`transformers.pipeline`), and passes an attention mask where the pipeline would.

Micro-batches are planned on a sample budget with rows sorted by length, so long clips are not
padded together with short ones. Padding is only safe where the model ignores it: Wav2Vec2
models with feat_extract_norm="group" (wav2vec2-base) normalize each conv channel over the
whole padded length, and a model that gets no attention mask pools or attends over padding too.
Such models are batched by exact length instead, which keeps their results equal to unbatched
ones (and still batches the equal-length chunks of long-form speech recognition well).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

import numpy as np

from operators.base import Operator, OperatorOptions, server_option
from operators.batching import budget_batches
from operators.decoding.audio import DEFAULT_MAX_SECONDS, decode_audio
from operators.errors import RowError
from operators.loading import load_processor


class AudioOptions(OperatorOptions):
    max_seconds: float = server_option(
        DEFAULT_MAX_SECONDS, gt=0, description="Clips longer than this many seconds are refused per row after decoding."
    )
    max_batch_samples: int | None = server_option(
        None,
        ge=1,
        description="Padded size budget of one micro-batch in samples at the model's rate "
        "(rows x longest row). A longer clip still runs, alone. Default: 60 s of audio on the "
        "CPU, 480 s on a GPU.",
    )


# The default micro-batch budgets, in seconds of audio. On 2 CPU cores 60 s and 120 s ran
# alike. On an H200 a 60 s micro-batch held ~4 clips of the benchmark's 1-30 s and the tiny
# Wav2Vec2 ran launch-bound: 37 clips/s against transformers.pipeline's 138 at batch size 32,
# and forward-only's 373 with 480 s micro-batches (benchmarks/RESULTS.md). 480 s of 16 kHz audio
# is 7.7M samples; wav2vec2-large's widest activation, its first conv layer's 512 channels at
# 1/5 of the rate, is then 1.6 GB in bf16.
CPU_AUDIO_BUDGET_S = 60
GPU_AUDIO_BUDGET_S = 480


class AudioOperator(Operator):
    """Decode `audio` to mono waveforms on the CPU; pad, normalize and batch next to the model."""

    modality = "audio"
    input_roles = ("audio",)
    processor_kind = "feature_extractor"
    Options = AudioOptions
    # The v5 audio-classification pipeline passes a mask only when the feature extractor
    # returns one; the speech-recognition pipeline always asks for it. Subclasses say which.
    always_attention_mask: ClassVar[bool] = False

    # ------------------------------------------------------------------ loading

    def build_processor(self):
        from transformers import Wav2Vec2FeatureExtractor

        extractor = load_processor("feature_extractor", self.load_options)
        if not isinstance(extractor, Wav2Vec2FeatureExtractor):
            raise ValueError(
                f"{type(self).__name__} runs waveform models (Wav2Vec2FeatureExtractor: wav2vec2, "
                f"HuBERT, WavLM, data2vec-audio), got {type(extractor).__name__} for {self.model_id!r}; "
                f"get_operator({self.task!r}) picks the operator for that extractor"
            )
        return extractor

    @property
    def config(self):
        return self.model_config

    @property
    def sampling_rate(self) -> int:
        return int(self.processor.sampling_rate)

    @property
    def sample_budget(self) -> int:
        """The micro-batch budget in samples: the option, else the device's default."""
        if self.options.max_batch_samples:
            return self.options.max_batch_samples
        seconds = CPU_AUDIO_BUDGET_S if self.device.type == "cpu" else GPU_AUDIO_BUDGET_S
        return int(seconds * self.sampling_rate)

    @property
    def min_samples(self) -> int:
        """The shortest waveform that gives the conv feature encoder one output frame."""
        kernels = getattr(self.config, "conv_kernel", None) or ()
        strides = getattr(self.config, "conv_stride", None) or ()
        needed = 1
        for kernel, stride in reversed(list(zip(kernels, strides))):
            needed = (needed - 1) * stride + kernel
        return needed

    @property
    def passes_attention_mask(self) -> bool:
        return self.always_attention_mask or bool(getattr(self.processor, "return_attention_mask", False))

    @property
    def padding_is_exact(self) -> bool:
        """Whether the valid frames of a zero-padded row equal those of the row run alone."""
        return (
            self.passes_attention_mask
            and getattr(self.config, "feat_extract_norm", "layer") != "group"
            and hasattr(self.model, "_get_feat_extract_output_lengths")
        )

    # ------------------------------------------------------------------ hooks

    def check_row(self, row: dict[str, Any]) -> dict[str, Any]:
        wave = decode_audio(row["audio"], self.sampling_rate, self.options.max_seconds)
        if wave.size < self.min_samples:
            raise RowError(
                "input",
                f"audio too short: {wave.size} samples at {self.sampling_rate} Hz, "
                f"the model needs at least {self.min_samples}",
            )
        return {"audio": wave}

    def preprocess_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"waveform": row["audio"]} for row in rows]

    def row_length(self, features: dict[str, Any]) -> int:
        return len(features["waveform"])

    def plan_batches(self, features: list[dict[str, Any]]) -> list[list[int]]:
        return self.plan_waveforms([self.row_length(f) for f in features])

    # ------------------------------------------------------------------ helpers for forward

    def plan_waveforms(self, lengths: list[int]) -> list[list[int]]:
        """Micro-batches over waveforms of these lengths: longest first within a sample
        budget where padding is exact, else only equal lengths together."""
        budget, max_rows = self.sample_budget, self.options.max_batch_rows
        if self.padding_is_exact:
            return budget_batches(lengths, budget, max_rows)
        groups: dict[int, list[int]] = defaultdict(list)
        for i, n in enumerate(lengths):
            groups[n].append(i)
        batches = []
        for n in sorted(groups, reverse=True):
            size = max(1, min(max_rows, budget // max(n, 1)))
            members = groups[n]
            batches.extend(members[start : start + size] for start in range(0, len(members), size))
        return batches

    def run_encoder(self, waves: list[np.ndarray]) -> tuple[Any, list[int | None]]:
        """Pad, normalize and run the model on a micro-batch of waveforms.

        Returns the model output and each row's count of valid output frames (None where the
        model cannot say; its micro-batches then hold equal lengths, see padding_is_exact)."""
        import torch

        # The extractor normalizes each row over its unpadded part when asked for a mask;
        # whether the model then sees the mask follows the pipeline.
        encoded = self.processor(
            waves,
            sampling_rate=self.sampling_rate,
            padding=True,
            return_attention_mask=True,
            return_tensors="np",
        )
        name = self.processor.model_input_names[0]
        inputs = {name: self.to_device(encoded[name], float_dtype=True)}
        if self.passes_attention_mask:
            inputs["attention_mask"] = self.to_device(encoded["attention_mask"])
        output = self.model(**inputs)
        if not hasattr(self.model, "_get_feat_extract_output_lengths"):
            return output, [None] * len(waves)
        frames = self.model._get_feat_extract_output_lengths(torch.tensor([len(w) for w in waves]))
        return output, [int(f) for f in frames.tolist()]
