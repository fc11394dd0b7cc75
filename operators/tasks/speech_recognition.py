"""automatic-speech-recognition: CTC transcription (Wav2Vec2ForCTC) and Whisper, with long-form chunking.

One task id serves every kind of model, as `transformers.pipeline` does: constructing the
operator reads the model's config and returns the registered variant that serves it
(`WhisperRecognitionOperator` in whisper_recognition.py for Whisper checkpoints,
`Seq2SeqRecognitionOperator` in seq2seq_recognition.py for other sequence-to-sequence speech
models), and this class for CTC models.

Chunking (CTC) follows transformers' ASR pipeline for CTC models (pipelines/automatic_speech_recognition.py:
`chunk_iter`, `rescale_stride` and the stride slicing in `postprocess`): overlapping chunks of
`chunk_length_s`, each normalized on its own; the logits frames of the `stride_length_s`
overlaps are dropped, the rest concatenated and decoded once. Where the pipeline runs chunks
one at a time, the base class batches the chunks of many rows together (`row_pieces`).
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

import numpy as np
from pydantic import Field, model_validator

from operators.audio_inputs import AudioOperator, AudioOptions
from operators.ctc_decoding import CtcDecoder
from operators.errors import option_error
from operators.loading import load_processor
from operators.registry import register_operator, task_variants
from operators.results import ResponseShape
import pyarrow as pa

from operators.results import struct

NonNegative = Annotated[float, Field(ge=0)]


# Options of sequence-to-sequence models (generate()); CTC models take none of them.
SEQ2SEQ_OPTIONS = ("language", "task", "return_timestamps", "num_beams", "max_new_tokens")


class SpeechRecognitionOptions(AudioOptions):
    chunk_length_s: float | None = Field(
        None, gt=0, description="Transcribe long clips in overlapping chunks of this many seconds, as the "
        "pipeline does: CTC stitches the chunks' frames, Whisper merges their tokens by the strides, other "
        "sequence-to-sequence models concatenate them."
    )
    stride_length_s: NonNegative | tuple[NonNegative, NonNegative] | None = Field(
        None,
        description="Seconds of context on each side of a chunk whose frames are dropped when stitching; "
        "one number or (left, right). Default: chunk_length_s / 6, as the pipeline does.",
    )

    language: str | None = Field(
        None,
        description="Whisper: the spoken language (a code such as 'fr', a name such as 'french', or a "
        "token such as '<|fr|>'). Default: detected per clip, as the checkpoint's generation config says.",
    )
    task: str | None = Field(
        None,
        description="Whisper: 'transcribe', or 'translate' into English, where the checkpoint's generation "
        "config knows the task. Default: the checkpoint's.",
    )
    return_timestamps: bool = Field(
        False,
        description="Whisper: also return `chunks`, [{timestamp: (start, end), text}] segments in seconds.",
    )
    num_beams: int | None = Field(
        None,
        ge=1,
        description="Sequence-to-sequence models (Whisper, ...): beam width. Default: the checkpoint's, "
        "else 5 as the pipeline does.",
    )
    max_new_tokens: int | None = Field(
        None,
        ge=1,
        description="Sequence-to-sequence models: most new tokens per window. Default: the checkpoint's "
        "generation config (Whisper's max_length 448), else 256 as the pipeline does.",
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


def transcript(row) -> dict:
    """The HTTP answer: the text, and "chunks" only with return_timestamps, as pipeline() adds it."""
    chunks = {"chunks": row["chunks"]} if row.get("chunks") is not None else {}
    return {"text": row["text"], **chunks}


@register_operator("automatic-speech-recognition")
class SpeechRecognitionOperator(AudioOperator):
    output_columns = ("text", "chunks")
    # chunks: Whisper's segments with return_timestamps, (start, end) in seconds (end None when cut)
    output_types = {"text": pa.string(), "chunks": pa.list_(struct(timestamp=pa.list_(pa.float64()), text=pa.string()))}
    response = ResponseShape(transcript)
    auto_model = "AutoModelForCTC"
    Options = SpeechRecognitionOptions
    # The ASR pipeline always asks the feature extractor for a mask and passes it on.
    always_attention_mask = True

    def __new__(
        cls, model: str | None = None, *args: Any, revision: str | None = None, trust_remote_code: bool = False,
        **kwargs: Any,
    ):
        """The variant for the model's kind (asr_model_kind: Whisper, other seq2seq), as the
        pipeline decides it from the model; this class for CTC models."""
        if cls is not SpeechRecognitionOperator or model is None:  # a variant, or copy/pickle
            return super().__new__(cls)
        from operators.loading import LoadOptions, load_config

        config = load_config(LoadOptions(model=str(model), revision=revision, trust_remote_code=trust_remote_code))
        kind = asr_model_kind(config)
        target = next((v for v in task_variants(cls.task) if v.serves(kind)), cls)
        operator = super().__new__(target)
        operator._config = config  # read once: AudioOperator.config would read it again
        return operator

    def check_config(self) -> None:
        super().check_config()
        self.check_model_options(self.options)

    def check_model_options(self, options: SpeechRecognitionOptions) -> None:
        """Options that depend on the checkpoint; a mismatch is a configuration error."""
        for name in SEQ2SEQ_OPTIONS:
            value = getattr(options, name)
            if value not in (None, False):
                raise option_error(
                    type(options), name, value,
                    f"{name} applies to sequence-to-sequence models such as Whisper; {self.model_id!r} is a CTC model "
                    "(the pipeline's CTC char/word timestamps are not implemented)",
                )

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

    def row_pieces(self, features: dict[str, Any]) -> list[dict[str, Any]]:
        wave = features["waveform"]
        return [{"waveform": wave[c.start : c.end], "chunk": c} for c in self.chunks(len(wave))]

    def forward_batch(self, pieces: list[dict[str, Any]]) -> list[np.ndarray]:
        align_to = int(getattr(self.config, "inputs_to_logits_ratio", 1))
        chunking = self.options.chunk_length_s is not None
        output, frames = self.run_encoder([p["waveform"] for p in pieces])
        tokens = self.host_rows(output.logits.argmax(dim=-1))
        kept = []
        for k, piece in enumerate(pieces):
            # Frames past a piece's own length come from padding; the pipeline, one chunk at
            # a time, never has them, and its stride slicing assumes they are absent.
            ids = tokens[k][: frames[k]] if frames[k] is not None else tokens[k]
            if chunking:
                first, stop = kept_frames(piece["chunk"], align_to)
                ids = ids[first:stop]
            kept.append(ids)
        return kept

    def merge_pieces(self, outputs: list[np.ndarray], features: dict[str, Any]) -> np.ndarray:
        return np.concatenate(outputs).astype(np.int64)

    def postprocess_row(self, raw: np.ndarray, features: dict[str, Any]) -> dict[str, Any]:
        # CTC decoding groups repeated ids and drops the blank; special tokens stay, as in the pipeline.
        return {"text": self.ctc_decoder.decode(raw)}


def asr_model_kind(config) -> str:
    """The pipeline's model kind for a config: "seq2seq_whisper", "seq2seq" or "ctc"
    (AutomaticSpeechRecognitionPipeline.__init__ decides it from the loaded model's class)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES

    if config.model_type == "whisper":
        return "seq2seq_whisper"
    if config.model_type in MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES:
        return "seq2seq"
    return "ctc"
