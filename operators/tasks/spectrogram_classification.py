"""audio-classification with models whose feature extractor computes the features itself:
AST (ASTFeatureExtractor: Kaldi-style log-mel filterbanks, 128 bins, padded or cut to 1024
frames, normalized by the AudioSet mean and std), WhisperForAudioClassification
(WhisperFeatureExtractor: log-mel over a 30 s window), and any other extractor that is not a
plain waveform one.

* preprocess (CPU): the checkpoint's own feature extractor on each clip alone, called as the
  audio-classification pipeline calls it (`feature_extractor(clip, sampling_rate=...)`, nothing
  else). No filterbank is re-derived here: which backend computes it (torchaudio's Kaldi fbank
  or transformers' numpy one) is the extractor's choice, as it is the pipeline's.
* forward (device): rows whose features have the same shapes stack into one micro-batch with
  no padding at all (AST's and Whisper's extractors give every clip the same shape), so a
  row's answer never depends on its neighbours; the model gets exactly the keys the extractor
  returned, as the pipeline passes them.
* postprocess (CPU): the task's scores and labels (AudioClassificationOperator).

`AudioClassificationOperator` picks this class for a checkpoint whose feature extractor is
not a `Wav2Vec2FeatureExtractor` (`serves`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from operators.errors import RowError, describe
from operators.loading import load_processor
from operators.registry import register_variant
from operators.tasks.audio_classification import AudioClassificationOperator

# AST's filterbank frames are 10 ms apart (the Kaldi frame shift its extractor uses, and the
# 160-sample hop of its numpy path at 16 kHz); its `max_length` counts such frames.
FBANK_FRAMES_PER_SECOND = 100


@register_variant("audio-classification")
class SpectrogramClassificationOperator(AudioClassificationOperator):
    """audio-classification over the features the checkpoint's extractor computes."""

    @classmethod
    def serves(cls, extractor: Any) -> bool:
        from transformers import Wav2Vec2FeatureExtractor

        return not isinstance(extractor, Wav2Vec2FeatureExtractor)

    def build_processor(self):
        return load_processor("feature_extractor", self.load_options)

    @property
    def min_samples(self) -> int:
        return 1  # the extractor pads what it needs; a clip it cannot read fails its row

    @property
    def window_samples(self) -> int:
        """The samples of audio that one row's features hold, whatever the clip's length:
        Whisper's 30 s window, AST's max_length frames; 0 where the extractor says neither
        (its features then follow the clip's length)."""
        extractor = self.processor
        if getattr(extractor, "n_samples", None):
            return int(extractor.n_samples)
        frames = getattr(extractor, "max_length", None)
        return int(frames * self.sampling_rate / FBANK_FRAMES_PER_SECOND) if frames else 0

    # ------------------------------------------------------------------ stage 1: preprocess

    def preprocess_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        features = []
        for row in rows:
            wave = row["audio"]
            try:
                encoded = self.processor(wave, sampling_rate=self.sampling_rate, return_tensors="np")
            # The extractor's own failure, raised in many forms (AST's filterbank on a clip
            # shorter than one 25 ms frame: "negative dimensions are not allowed"); the row
            # error names the clip's length, which the extractor's message does not.
            except Exception as e:
                raise RowError(
                    "preprocess",
                    f"{type(self.processor).__name__} cannot compute features for a clip of {wave.size} samples "
                    f"at {self.sampling_rate} Hz: {describe(e)}",
                ) from e
            inputs = {name: np.ascontiguousarray(value[0]) for name, value in encoded.items()}
            # The model's cost follows the features' shape: a fixed window costs the same for
            # any clip (the extractor pads or cuts to it).
            features.append({"inputs": inputs, "samples": self.window_samples or len(wave)})
        return features

    # ------------------------------------------------------------------ stage 2: forward

    def row_length(self, features: dict[str, Any]) -> int:
        return int(features["samples"])

    def plan_batches(self, features: list[dict[str, Any]]) -> list[list[int]]:
        """Rows of the same feature shapes together (nothing is padded), as many as the
        sample budget and max_batch_rows allow."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, f in enumerate(features):
            groups[tuple((name, value.shape) for name, value in sorted(f["inputs"].items()))].append(i)
        batches = []
        for members in groups.values():
            longest = max(self.row_length(features[i]) for i in members)
            size = max(1, min(self.options.max_batch_rows, self.sample_budget // max(longest, 1)))
            batches.extend(members[start : start + size] for start in range(0, len(members), size))
        return batches

    def forward_batch(self, features: list[dict[str, Any]]) -> list[np.ndarray]:
        inputs = {}
        for name in features[0]["inputs"]:
            batch = np.stack([f["inputs"][name] for f in features])
            inputs[name] = self.to_device(batch, float_dtype=np.issubdtype(batch.dtype, np.floating))
        return self.host_rows(self.model(**inputs).logits)
