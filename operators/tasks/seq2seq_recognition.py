"""automatic-speech-recognition with sequence-to-sequence speech models (Moonshine,
Speech2Text, ...; Whisper extends this in whisper_recognition.py), as the v5 ASR pipeline
runs the models it calls "seq2seq".

* preprocess (CPU): the feature extractor on the whole clip, or on each chunk of
  `chunk_length_s` (the pipeline's `chunk_iter`): one window per model input, unpadded.
* forward (device): `generate()` with the checkpoint's generation config and the pipeline's
  defaults for what it leaves unset (num_beams=5; max_new_tokens=256 unless max_length is
  set). Windows batch only with windows of the same length: the pipeline runs one at a time,
  and padding would change what some encoders see.
* postprocess (CPU): the windows' tokens concatenated and decoded with special tokens
  skipped. The v5 pipeline keeps a chunk's stride only for Whisper and CTC, so for these
  models it concatenates the chunks' tokens, overlap included; so do we.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from operators.generation import trim_after_eos
from operators.errors import option_error
from operators.registry import register_variant
from operators.tasks.speech_recognition import SpeechRecognitionOperator, SpeechRecognitionOptions

# The ASR pipeline's generation defaults (AutomaticSpeechRecognitionPipeline._default_generation_config),
# used for keys that neither the checkpoint's generation config nor the options set.
PIPELINE_GENERATION_DEFAULTS = {"max_new_tokens": 256, "num_beams": 5}
# Options generate() takes under the same name.
GENERATE_OPTIONS = ("num_beams", "max_new_tokens")


@register_variant("automatic-speech-recognition")
class Seq2SeqRecognitionOperator(SpeechRecognitionOperator):
    """Sequence-to-sequence speech models under `automatic-speech-recognition`."""

    auto_model = "AutoModelForSpeechSeq2Seq"
    model_kind = "seq2seq"  # asr_model_kind's name for the models this class serves

    @classmethod
    def serves(cls, kind: str) -> bool:
        return kind == cls.model_kind

    # ------------------------------------------------------------------ loading and options

    def build_processor(self):
        from operators.loading import load_processor

        return load_processor("feature_extractor", self.load_options)

    @property
    def generation_config(self):
        """The checkpoint's generation config, read without the weights (CPU stages, options)."""
        if self._model is not None:
            return self._model.generation_config
        if getattr(self, "_generation_config", None) is None:
            from transformers import GenerationConfig

            try:
                self._generation_config = GenerationConfig.from_pretrained(
                    self.model_id, **self.load_options.hub_kwargs()
                )
            except OSError:  # no generation_config.json: generate() derives one from the config
                self._generation_config = GenerationConfig.from_model_config(self.config)
        return self._generation_config

    def check_model_options(self, options: SpeechRecognitionOptions) -> None:
        for name in ("language", "task", "return_timestamps"):
            value = getattr(options, name)
            if value not in (None, False):
                # The pipeline raises for timestamps on these models, and generate() for the rest.
                raise option_error(
                    type(options), name, value,
                    f"{name} applies to Whisper models; {self.model_id!r} is a {self.config.model_type} model",
                )

    # ------------------------------------------------------------------ stage 1: preprocess

    def preprocess_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        features = []
        for row in rows:
            wave = row["audio"]
            if self.options.chunk_length_s is None:
                windows = [self.window(wave, None)]
            else:
                windows = [
                    self.window(wave[c.start : c.end], (c.end - c.start, c.left, c.right))
                    for c in self.chunks(len(wave))
                ]
            features.append({"windows": windows})
        return features

    def window(self, wave: np.ndarray, stride: tuple[int, int, int] | None) -> dict[str, Any]:
        """One model input: the extractor's output for `wave`, as the pipeline calls it."""
        encoded = self.processor(
            wave, sampling_rate=self.sampling_rate, return_attention_mask=True, return_tensors="np"
        )
        name = "input_features" if "input_features" in encoded else "input_values"
        inputs = {name: np.asarray(encoded[name][0])}
        if encoded.get("attention_mask") is not None:
            inputs["attention_mask"] = np.asarray(encoded["attention_mask"][0])
        return {"inputs": inputs, "samples": len(wave), "stride": stride}

    # ------------------------------------------------------------------ stage 2: forward

    @property
    def padding_is_exact(self) -> bool:
        return False  # windows batch only with windows of the same length (module docstring)

    def row_pieces(self, features: dict[str, Any]) -> list[dict[str, Any]]:
        return features["windows"]

    def row_length(self, window: dict[str, Any]) -> int:
        return int(window["samples"])  # for the audio budget; equal lengths batch together

    def generate_kwargs(self) -> dict[str, Any]:
        """generate() kwargs as the pipeline builds them (`_forward`, `_prepare_generate_kwargs`)."""
        kwargs = self.task_generate_kwargs()
        kwargs.update({k: getattr(self.options, k) for k in GENERATE_OPTIONS if getattr(self.options, k) is not None})
        set_params = {**self.generation_config.to_diff_dict(), **kwargs}
        for key, value in PIPELINE_GENERATION_DEFAULTS.items():
            # A default max_new_tokens would override a set max_length (Whisper's 448).
            if key not in set_params and not (key == "max_new_tokens" and "max_length" in set_params):
                kwargs[key] = value
        pad = self.tokenizer.pad_token_id
        if pad is not None and "pad_token_id" not in set_params:
            kwargs["pad_token_id"] = pad
        return kwargs

    def task_generate_kwargs(self) -> dict[str, Any]:
        """generate() kwargs of the model family's own options."""
        return {}

    def model_inputs(self, windows: list[dict[str, Any]]) -> dict[str, Any]:
        """The batched generate() inputs of windows of one shape. The pipeline passes the
        extractor's features under the model's main input name, and its attention mask."""
        inputs = {}
        for name in windows[0]["inputs"]:
            batch = np.stack([w["inputs"][name] for w in windows])
            key = self.model.main_input_name if name in ("input_features", "input_values") else name
            inputs[key] = self.to_device(batch, float_dtype=name != "attention_mask")
        return inputs

    def forward_batch(self, windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        sequences = self.model.generate(**self.model_inputs(windows), **self.generate_kwargs())
        if isinstance(sequences, dict):
            sequences = sequences["sequences"]
        return [
            {"tokens": self.unpadded(row).astype(np.int64), "stride": w["stride"]}
            for row, w in zip(self.host_rows(sequences), windows)
        ]

    def unpadded(self, sequence: np.ndarray) -> np.ndarray:
        """A generated row without the padding of a batch whose other rows ran longer (the
        pipeline, one window at a time, never has it): up to the first EOS after the decoder
        start token, which may itself be EOS."""
        return np.concatenate([sequence[:1], trim_after_eos(sequence[1:], self.eos_token_ids)])

    @property
    def eos_token_ids(self) -> set[int]:
        eos = self.generation_config.eos_token_id
        return set(eos) if isinstance(eos, (list, tuple)) else ({int(eos)} if eos is not None else set())

    def merge_pieces(self, outputs: list[dict[str, Any]], features: dict[str, Any]) -> list[dict[str, Any]]:
        return outputs  # postprocess_row merges a row's windows

    # ------------------------------------------------------------------ stage 3: postprocess

    def postprocess_row(self, raw: list[dict[str, Any]], features: dict[str, Any]) -> dict[str, Any]:
        tokens = np.concatenate([window["tokens"] for window in raw])
        return {"text": self.tokenizer.decode(tokens, skip_special_tokens=True)}
