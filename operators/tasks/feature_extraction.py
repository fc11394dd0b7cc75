"""feature-extraction: one sentence embedding per text, as SentenceTransformer.encode computes it.

transformers.pipeline("feature-extraction") returns per-token hidden states; labelling jobs
want one vector per row. A sentence-transformers checkpoint (modules.json) says how to get it:
its Transformer settings (max_seq_length, do_lower_case), its Pooling mode (cls, mean, max,
mean_sqrt_len_tokens, weightedmean, lasttoken, several concatenated, include_prompt), Dense
layers, Normalize and prompts; operators/sentence_modules.py reads and applies them. A module
type we do not implement fails the load, naming it. A plain transformers checkpoint (no
modules.json) gets the masked mean of the last hidden state.

Deliberate differences from encode(): rows are always right-padded (a causal model then sees
exactly its unpadded input; sentence-transformers pads on the tokenizer's side), pooling and
Dense run in float32, and passing both `prompt` and `prompt_name` is an error (encode warns
and uses `prompt`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from operators.errors import option_error
from operators.registry import register_operator
from operators.sentence_modules import (
    PromptNameError,
    SentenceHead,
    SentenceModules,
    load_sentence_tokenizer,
    prompt_token_count,
    read_sentence_modules,
)
from operators.text_inputs import EncoderTextOperator, TextOptions
from operators.results import ResponseShape, column
import pyarrow as pa


class FeatureExtractionOptions(TextOptions):
    normalize: bool | None = Field(
        None,
        description="L2-normalize embeddings. Default: as the sentence-transformers checkpoint says "
        "(a Normalize module), else False. False skips the checkpoint's Normalize; True normalizes "
        "the final vector, as encode(normalize_embeddings=True).",
    )
    prompt_name: str | None = Field(
        None,
        description="A prompt of the checkpoint's config_sentence_transformers.json (e.g. 'query'), "
        "prepended to every text, as encode(prompt_name=...). Default: the checkpoint's "
        "default_prompt_name, if any.",
    )
    prompt: str | None = Field(
        None,
        description="Text prepended to every text, as encode(prompt=...). Overrides the checkpoint's "
        "default prompt; '' turns it off.",
    )

    @model_validator(mode="after")
    def _one_prompt(self) -> "FeatureExtractionOptions":
        if self.prompt is not None and self.prompt_name is not None:
            raise ValueError("give prompt or prompt_name, not both")
        return self


@register_operator("feature-extraction")
class FeatureExtractionOperator(EncoderTextOperator):
    output_columns = ("embedding",)
    # float32 as computed: Arrow would infer list<double> from the Python floats, twice as wide
    output_types = {"embedding": pa.list_(pa.float32())}
    response = ResponseShape(column("embedding"))
    results_outgrow_inputs = True
    auto_model = "AutoModel"
    Options = FeatureExtractionOptions

    def __init__(self, model: str, **kwargs: Any):
        super().__init__(model, **kwargs)
        self._sentence_modules: SentenceModules | None = None
        self._sentence_head: SentenceHead | None = None
        self._prompt_lengths: dict[tuple[str, int | None], int] = {}  # shared by with_options copies

    # ------------------------------------------------------------------ configuration

    def sentence_modules(self) -> SentenceModules:
        """The checkpoint's sentence-transformers modules, read once (no weights)."""
        if self._sentence_modules is None:
            self._sentence_modules = read_sentence_modules(self.load_options)
        return self._sentence_modules

    @property
    def prompt_text(self) -> str:
        """The text prepended to each input ('' for none). A prompt_name the checkpoint lacks
        raises ValueError naming the option, the checkpoint's prompts and the model."""
        return self.sentence_modules().resolve_prompt(self.options.prompt, self.options.prompt_name, self.model_id)

    @property
    def normalize(self) -> bool:
        if self.options.normalize is not None:
            return self.options.normalize
        return self.sentence_modules().normalizes

    def check_config(self) -> None:
        """Module types we do not implement and a prompt_name the checkpoint lacks fail here,
        before any row and without weights (ValueError naming the model)."""
        super().check_config()
        _ = self.prompt_text

    def build_processor(self):
        modules = self.sentence_modules()
        if not modules.declared:
            return super().build_processor()
        return load_sentence_tokenizer(self.load_options, modules.transformer)

    @property
    def sentence_head(self) -> SentenceHead:
        if self._sentence_head is None:
            self._sentence_head = SentenceHead(self.sentence_modules(), self.load_options, self.device)
        return self._sentence_head

    def build_model(self):
        model = super().build_model()
        _ = self.sentence_head  # Dense weights load with the model, so load() fails fast on them
        return model

    def with_options(self, **options: Any) -> "FeatureExtractionOperator":
        try:
            clone = super().with_options(**options)
            if "prompt_name" in options and clone is not self:
                _ = clone.prompt_text
        except PromptNameError as e:
            # A ValidationError, as for any other bad option value: Serve answers it with a 422.
            raise option_error(self.Options, "prompt_name", options["prompt_name"], str(e)) from None
        return clone

    # ------------------------------------------------------------------ the three stages

    def preprocess_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        prompt = self.prompt_text
        if not prompt:
            return super().preprocess_rows(rows)
        # As encode(): the prompt is prepended to the text, and the pair is truncated together.
        features = super().preprocess_rows([{"text": prompt + r["text"]} for r in rows])
        count = self._prompt_length(prompt)
        for f in features:
            if isinstance(f, dict):  # not a row refused for its length (truncation off)
                f["prompt_length"] = count
        return features

    def _prompt_length(self, prompt: str) -> int:
        max_length = self.max_tokens() if self.options.truncation else None
        key = (prompt, max_length)
        if key not in self._prompt_lengths:
            self._prompt_lengths[key] = prompt_token_count(self.processor, prompt, max_length)
        return self._prompt_lengths[key]

    def forward_batch(self, features: list[dict[str, Any]]) -> list[np.ndarray]:
        inputs = self.model_inputs(features)
        hidden = self.model(**inputs).last_hidden_state
        prompt_lengths = [int(f.get("prompt_length", 0)) for f in features]
        embeddings = self.sentence_head(hidden, inputs["attention_mask"], prompt_lengths, self.options.normalize)
        return self.host_rows(embeddings)

    def postprocess_row(self, raw: np.ndarray, features: dict[str, Any]) -> dict[str, Any]:
        return {"embedding": raw.astype(np.float32).tolist()}
