"""text-generation: continue a prompt with a decoder-only model (GPT-2 style).

As transformers' text-generation pipeline: `generated_text` is the prompt followed by the
continuation (`return_full_text=False` gives the continuation only), the model's generation
config applies with the pipeline's defaults (max_new_tokens=256, do_sample=True,
temperature=0.7) for what it leaves unset. Prompts are batched with left padding; a total
`max_length` (option or generation config) is turned into each prompt's own budget, as the
pipeline's single-prompt call counts it; see operators.generation for that, seeds and the
order of settings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from operators.errors import RowError, option_error
from operators.generation import GenerationOperator, GenerationOptions
from operators.registry import register_operator
from operators.results import ResponseShape, one_record
import pyarrow as pa


class TextGenerationOptions(GenerationOptions):
    return_full_text: bool = Field(
        True, description="Prefix the continuation with the prompt, as the pipeline does by default."
    )
    truncation: bool = Field(
        False,
        description="Keep the last tokens of a prompt too long for the model (plus max_new_tokens) instead "
        "of failing the row. Off by default, as in the pipeline.",
    )


@register_operator("text-generation")
class TextGenerationOperator(GenerationOperator):
    output_columns = ("generated_text",)
    output_types = {"generated_text": pa.string()}
    response = ResponseShape(one_record("generated_text"))
    # text-generation-inference, and so InferenceClient.text_generation, returns only the
    # continuation unless asked for return_full_text; pipeline() prepends the prompt.
    endpoint_defaults = {"return_full_text": False}
    auto_model = "AutoModelForCausalLM"
    Options = TextGenerationOptions
    pipeline_defaults = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}
    default_clean_up_spaces = None  # the tokenizer's own default, as the pipeline decodes

    def check_config(self) -> None:
        super().check_config()
        try:
            self.prompt_limit()
        except ValueError as e:
            name = "max_length" if str(e).startswith("max_length") else "max_new_tokens"
            raise option_error(type(self.options), name, self.resolved(name), f"{e} of model {self.model_id!r}") from None

    def prompt_limit(self) -> int:
        """Most prompt tokens that leave room for max_new_tokens in the model's positions, and
        for at least one new token under a total max_length (generate() refuses a prompt that
        fills max_length: the pipeline's call fails)."""
        config = self.model_config
        positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
        limit = self.options.max_input_tokens or positions or 1_000_000
        new_tokens = self.resolved("max_new_tokens")
        if positions is not None:
            limit = min(limit, positions - (new_tokens or 1))
        if limit < 1:
            raise ValueError(f"max_new_tokens={new_tokens} leaves no room for a prompt in {positions} positions")
        max_length, _ = self.total_lengths()
        if max_length is not None:
            if max_length < 2:
                raise ValueError(f"max_length={self.resolved('max_length')} leaves no room for a prompt")
            limit = min(limit, max_length - 1)
        return limit

    def preprocess_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        prefix = self.prompt_prefix()
        encoded = self.processor([prefix + r["text"] for r in rows], return_attention_mask=False)
        limit = self.prompt_limit()
        features = []
        for row, ids in zip(rows, encoded["input_ids"]):
            if len(ids) > limit:
                if not self.options.truncation:
                    bound = (
                        f"max_new_tokens={self.resolved('max_new_tokens')}"
                        if self.resolved("max_new_tokens") is not None
                        else f"max_length={self.resolved('max_length')}"
                    )
                    raise RowError(
                        "preprocess",
                        f"prompt has {len(ids)} tokens; at most {limit} fit with {bound} "
                        f"(set truncation=True to keep the last {limit})",
                    )
                ids = ids[-limit:]  # the end of a prompt is what the continuation follows
            features.append({"input_ids": np.asarray(ids, dtype=np.int32), "prompt": row["text"]})
        return features

    def postprocess_row(self, raw: np.ndarray, features: dict[str, Any]) -> dict[str, Any]:
        text = self.decode(raw)
        if self.options.return_full_text:
            text = features["prompt"] + text
        return {"generated_text": text}
