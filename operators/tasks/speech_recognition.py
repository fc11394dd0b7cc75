"""automatic-speech-recognition: CTC transcription (Wav2Vec2ForCTC), with long-form chunking.

Chunking follows transformers' ASR pipeline for CTC models (pipelines/automatic_speech_recognition.py:
`chunk_iter`, `rescale_stride` and the stride slicing in `postprocess`): overlapping chunks of
`chunk_length_s`, each normalized on its own; the logits frames of the `stride_length_s`
overlaps are dropped, the rest concatenated and decoded once. Where the pipeline runs chunks
one at a time, we batch the chunks of many rows together.
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

import numpy as np
from pydantic import Field, model_validator

from operators.audio_inputs import AudioOperator, AudioOptions
from operators.batching import budget_batches
from operators.ctc_decoding import CtcDecoder
from operators.loading import load_processor
from operators.registry import register_operator

NonNegative = Annotated[float, Field(ge=0)]


class SpeechRecognitionOptions(AudioOptions):
    chunk_length_s: float | None = Field(
        None, gt=0, description="Transcribe long clips in overlapping chunks of this many seconds (CTC long-form)."
    )
    stride_length_s: NonNegative | tuple[NonNegative, NonNegative] | None = Field(
        None,
        description="Seconds of context on each side of a chunk whose frames are dropped when stitching; "
        "one number or (left, right). Default: chunk_length_s / 6, as the pipeline does.",
    )

    @model_validator(mode="after")
    def _check_chunking(self) -> "SpeechRecognitionOptions":
        if self.stride_length_s is not None and self.chunk_length_s is None:
            raise ValueError("stride_length_s needs chunk_length_s")
        if self.chunk_length_s is not None:
            left, right = self.strides_s()
            if self.chunk_length_s <= left + right:
                raise ValueError(
                    f"chunk_length_s must exceed the two strides together, got {self.chunk_length_s} "
                    f"with strides ({left}, {right})"
                )
        return self

    def strides_s(self) -> tuple[float, float]:
        stride = self.stride_length_s
        if stride is None:
            stride = (self.chunk_length_s or 0) / 6
        if isinstance(stride, (int, float)):
            return float(stride), float(stride)
        return float(stride[0]), float(stride[1])


class Chunk(NamedTuple):
    """One chunk of a clip: samples [start, end), and the overlap samples to drop on each side."""

    start: int
    end: int
    left: int
    right: int


def chunk_spans(num_samples: int, chunk_len: int, stride_left: int, stride_right: int) -> list[Chunk]:
    """The chunks transformers' `chunk_iter` yields for a clip of `num_samples`."""
    step = chunk_len - stride_left - stride_right
    if step <= 0:
        raise ValueError(f"chunk length {chunk_len} must exceed the strides {stride_left} + {stride_right}")
    chunks = []
    for start in range(0, num_samples, step):
        end = min(start + chunk_len, num_samples)
        is_last = start + chunk_len >= num_samples
        left = 0 if start == 0 else stride_left
        if end - start > left:
            chunks.append(Chunk(start, end, left, 0 if is_last else stride_right))
        if is_last:
            break
    return chunks


def kept_frames(chunk: Chunk, align_to: int) -> tuple[int, int]:
    """The [first, stop) logits frames of a chunk that survive stitching (`rescale_stride`)."""
    ratio = 1 / align_to
    input_n = chunk.end - chunk.start
    token_n = int(round(input_n * ratio))
    left = int(round(chunk.left / input_n * token_n))
    right = int(round(chunk.right / input_n * token_n))
    return left, token_n - right


@register_operator("automatic-speech-recognition")
class SpeechRecognitionOperator(AudioOperator):
    output_columns = ("text",)
    auto_model = "AutoModelForCTC"
    Options = SpeechRecognitionOptions
    # The ASR pipeline always asks the feature extractor for a mask and passes it on.
    always_attention_mask = True

    @property
    def tokenizer(self):
        """The CTC tokenizer, loaded without any weights (postprocess runs on CPU workers)."""
        if getattr(self, "_tokenizer", None) is None:
            self._tokenizer = load_processor("tokenizer", self.load_options)
        return self._tokenizer

    @property
    def ctc_decoder(self) -> CtcDecoder:
        if getattr(self, "_ctc_decoder", None) is None:
            self._ctc_decoder = CtcDecoder(self.tokenizer)
        return self._ctc_decoder

    def chunk_lengths(self) -> tuple[int, int, int]:
        """chunk, left and right stride in samples, rounded to whole logits frames as the pipeline does."""
        align_to = int(getattr(self.config, "inputs_to_logits_ratio", 1))
        rate = self.sampling_rate
        left_s, right_s = self.options.strides_s()
        return tuple(  # type: ignore[return-value]
            int(round(seconds * rate / align_to) * align_to)
            for seconds in (self.options.chunk_length_s, left_s, right_s)
        )

    def chunks(self, num_samples: int) -> list[Chunk]:
        if self.options.chunk_length_s is None:
            return [Chunk(0, num_samples, 0, 0)]
        return chunk_spans(num_samples, *self.chunk_lengths())

    def plan_batches(self, features: list[dict[str, Any]]) -> list[list[int]]:
        if self.options.chunk_length_s is None:
            return super().plan_batches(features)
        # Rows by the samples their chunks hold; forward_batch re-plans the chunks themselves.
        costs = [sum(c.end - c.start for c in self.chunks(self.row_length(f))) for f in features]
        return budget_batches(costs, self.sample_budget)

    def forward_batch(self, features: list[dict[str, Any]]) -> list[np.ndarray]:
        align_to = int(getattr(self.config, "inputs_to_logits_ratio", 1))
        chunking = self.options.chunk_length_s is not None
        pieces = [
            (row, chunk)
            for row, f in enumerate(features)
            for chunk in self.chunks(self.row_length(f))
        ]
        kept: list[np.ndarray | None] = [None] * len(pieces)
        for batch in self.plan_waveforms([c.end - c.start for _, c in pieces]):
            waves = []
            for p in batch:
                row, chunk = pieces[p]
                waves.append(features[row]["waveform"][chunk.start : chunk.end])
            output, frames = self.run_encoder(waves)
            tokens = output.logits.argmax(dim=-1).cpu().numpy()
            for k, p in enumerate(batch):
                # Frames past a row's own length come from padding; the pipeline, one chunk at
                # a time, never has them, and its stride slicing assumes they are absent.
                ids = tokens[k, : frames[k]] if frames[k] is not None else tokens[k]
                if chunking:
                    first, stop = kept_frames(pieces[p][1], align_to)
                    ids = ids[first:stop]
                kept[p] = ids
        per_row: list[list[np.ndarray]] = [[] for _ in features]
        for (row, _), ids in zip(pieces, kept):
            per_row[row].append(ids)
        return [np.concatenate(parts).astype(np.int64) for parts in per_row]

    def postprocess_row(self, raw: np.ndarray, features: dict[str, Any]) -> dict[str, Any]:
        # CTC decoding groups repeated ids and drops the blank; special tokens stay, as in the pipeline.
        return {"text": self.ctc_decoder.decode(raw)}
