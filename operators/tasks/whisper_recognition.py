"""automatic-speech-recognition with Whisper, as transformers' v5 ASR pipeline runs it.

Stages:

* preprocess (CPU): decode to a 16 kHz waveform, then WhisperFeatureExtractor's log-mel
  features, exactly as the pipeline calls it: one 30 s window padded with silence for a short
  clip; the whole clip unpadded for a longer one (Whisper's own sequential long-form decoding
  in generate()); one window per chunk with `chunk_length_s` (the pipeline's `chunk_iter`).
  A window's frames past the audio are one constant (the floor of the log-mel normalization),
  so they are stored as that value, not as an 80 x 3000 float array.
* forward (device): rebuild the windows, batch them (windows are all 3000 frames, so they
  batch with no padding at all; whole long clips batch only with clips of the same length),
  and run `generate()` with the checkpoint's generation config (forced/decoder prompt ids or
  language and task, suppress_tokens, begin_suppress_tokens, no_timestamps, max_length) and
  the pipeline's defaults for what the checkpoint leaves unset (num_beams=5, and
  max_new_tokens=256 unless max_length is set).
* postprocess (CPU): the tokenizer's `_decode_asr`, the pipeline's own function: text,
  timestamps, and the longest-common-sequence merge of overlapping chunks by their strides.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from operators.errors import RowError, option_error
from operators.generation import trim_after_eos
from operators.loading import load_processor
from operators.registry import register_variant
from operators.tasks.seq2seq_recognition import Seq2SeqRecognitionOperator
from operators.tasks.speech_recognition import SpeechRecognitionOptions


@register_variant("automatic-speech-recognition")
class WhisperRecognitionOperator(Seq2SeqRecognitionOperator):
    """Whisper checkpoints under `automatic-speech-recognition`; see the module docstring."""

    model_kind = "seq2seq_whisper"

    # ------------------------------------------------------------------ loading and options

    def build_processor(self):
        from transformers import WhisperFeatureExtractor

        extractor = load_processor("feature_extractor", self.load_options)
        if not isinstance(extractor, WhisperFeatureExtractor):
            raise ValueError(
                f"Whisper model {self.model_id!r} needs a WhisperFeatureExtractor, got {type(extractor).__name__}"
            )
        return extractor

    def check_model_options(self, options: SpeechRecognitionOptions) -> None:
        """language and task against the checkpoint, as generate() would check them per call
        (WhisperGenerationMixin._set_language_and_task and _retrieve_init_tokens)."""
        from transformers.models.whisper.tokenization_whisper import TASK_IDS

        config = self.generation_config
        if options.language is None and options.task is None:
            return
        if getattr(config, "is_multilingual", True) is False:
            name = "language" if options.language is not None else "task"
            raise option_error(
                type(options), name, getattr(options, name),
                f"{self.model_id!r} is an English-only Whisper model; it takes no language or task",
            )
        if options.language is not None:
            self.language_token(options)
        if options.task is not None:
            known = dict(getattr(config, "task_to_id", None) or {})
            if options.task not in TASK_IDS or options.task not in known:
                raise option_error(
                    type(options), "task", options.task,
                    f"task {options.task!r} is not a task of {self.model_id!r} (its generation config "
                    f"knows {sorted(known) or 'no tasks'})",
                )

    def language_token(self, options: SpeechRecognitionOptions) -> str:
        """The checkpoint's token for the language option, resolved as generate() resolves it."""
        from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

        known = dict(getattr(self.generation_config, "lang_to_id", None) or {})
        language = options.language.lower()
        if language in known:
            token = language
        elif language in TO_LANGUAGE_CODE:
            token = f"<|{TO_LANGUAGE_CODE[language]}|>"
        elif language in TO_LANGUAGE_CODE.values():
            token = f"<|{language}|>"
        else:
            token = None
        if token is None or token not in known:
            codes = ", ".join(t.strip("<|>") for t in list(known)[:12])
            raise option_error(
                type(options), "language", options.language,
                f"language {options.language!r} is not a language of {self.model_id!r} "
                f"(its generation config knows {len(known)}: {codes}{', ...' if len(known) > 12 else ''})",
            )
        return token

    # ------------------------------------------------------------------ stage 1: preprocess

    def window(self, wave: np.ndarray, stride: tuple[int, int, int] | None) -> dict[str, Any]:
        # A whole clip over 30 s goes to generate() unpadded, which decodes it window by window
        # (the pipeline's long-form path); anything else is padded to one 30 s window.
        long_form = stride is None and len(wave) > self.processor.n_samples
        if long_form and not self.return_timestamps:
            # generate() refuses this (the pipeline raises); say so before any device work.
            raise RowError(
                "input",
                f"audio is {len(wave) / self.sampling_rate:.1f} s, longer than Whisper's "
                f"{self.processor.chunk_length} s window: set chunk_length_s, or return_timestamps for "
                "Whisper's own long-form decoding",
            )
        encoded = self.processor(
            wave,
            sampling_rate=self.sampling_rate,
            return_attention_mask=True,
            return_tensors="np",
            **({"truncation": False, "padding": "longest"} if long_form else {}),
        )
        window = _compact(encoded["input_features"][0].astype(np.float32), encoded["attention_mask"][0])
        # The audio budget counts what the encoder sees: 30 s per window, however short the clip.
        return {**window, "samples": window["frames"] * int(self.processor.hop_length), "stride": stride}

    # ------------------------------------------------------------------ stage 2: forward

    def task_generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.options.language is not None:
            kwargs["language"] = self.options.language
        if self.options.task is not None:
            kwargs["task"] = self.options.task
        if self.return_timestamps:
            kwargs["return_timestamps"] = True
        return kwargs

    @property
    def return_timestamps(self) -> bool:
        # The pipeline turns timestamps on when the checkpoint's generation config asks for them.
        return bool(self.options.return_timestamps or getattr(self.generation_config, "return_timestamps", False))

    def model_inputs(self, windows: list[dict[str, Any]]) -> dict[str, Any]:
        features = np.stack([_expand(w) for w in windows])
        mask = np.stack([_mask(w) for w in windows])
        return {"input_features": self.to_device(features, float_dtype=True), "attention_mask": self.to_device(mask)}

    def unpadded(self, sequence: np.ndarray) -> np.ndarray:
        # Whisper's generate() returns the tokens after its decoder prompt.
        return trim_after_eos(sequence, self.eos_token_ids)

    # ------------------------------------------------------------------ stage 3: postprocess

    def postprocess_row(self, raw: list[dict[str, Any]], features: dict[str, Any]) -> dict[str, Any]:
        rate = self.sampling_rate
        outputs = []
        for window in raw:
            output: dict[str, Any] = {"tokens": window["tokens"][None, :]}
            if window["stride"] is not None:
                output["stride"] = tuple(n / rate for n in window["stride"])  # seconds, as the pipeline
            outputs.append(output)
        time_precision = self.processor.chunk_length / self.config.max_source_positions
        text, optional = self.tokenizer._decode_asr(
            outputs, return_timestamps=self.return_timestamps, return_language=None, time_precision=time_precision
        )
        chunks = optional.get("chunks")
        if chunks is not None:
            chunks = [{"timestamp": tuple(c["timestamp"]), "text": c["text"]} for c in chunks]
        return {"text": text, "chunks": chunks}


def _compact(mel: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """A window's log-mel frames without its silent tail: the extractor pads the waveform with
    zeros, and every frame that sees only zeros holds the same floor value in every mel bin."""
    frames = mel.shape[1]
    fill = mel[0, -1]
    tail = np.all(mel == fill, axis=0)
    keep = frames
    while keep > 0 and tail[keep - 1]:
        keep -= 1
    valid = int(mask.sum())
    if not np.all(mask[:valid]) or np.any(mask[valid:]):
        raise RowError("preprocess", "the feature extractor's attention mask is not a prefix of ones")
    return {
        "mel": np.ascontiguousarray(mel[:, :keep]),
        "fill": float(fill),
        "frames": frames,
        "valid": valid,
    }


def _expand(window: dict[str, Any]) -> np.ndarray:
    mel = window["mel"]
    out = np.full((mel.shape[0], window["frames"]), window["fill"], dtype=np.float32)
    out[:, : mel.shape[1]] = mel
    return out


def _mask(window: dict[str, Any]) -> np.ndarray:
    mask = np.zeros(window["frames"], dtype=np.int64)
    mask[: window["valid"]] = 1
    return mask

