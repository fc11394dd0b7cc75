"""Shared pieces for operators whose input is text run through a tokenizer and an encoder."""

from __future__ import annotations

import inspect
import logging
from functools import lru_cache
from typing import Any

import numpy as np
from pydantic import Field

from operators.base import Operator, OperatorOptions, server_option
from operators.batching import pad_sequences
from operators.errors import RowError

logger = logging.getLogger(__name__)

DEFAULT_MAX_TEXT_CHARS = 1_000_000
# transformers' VERY_LARGE_INTEGER (int(1e30)): the model_max_length of a tokenizer saved
# without one (cardiffnlp's twitter-roberta checkpoints ship no tokenizer_config.json).
UNSET_TOKENIZER_LIMIT = int(1e30)


def check_text(value: Any, role: str = "text", max_chars: int = DEFAULT_MAX_TEXT_CHARS) -> str:
    """A non-empty str, or a RowError("input") saying what arrived instead."""
    if value is None:
        raise RowError("input", f"expected {role} as str, got None")
    if not isinstance(value, str):
        raise RowError("input", f"expected {role} as str, got {type(value).__name__}")
    if not value.strip():
        raise RowError("input", f"empty {role}")
    if len(value) > max_chars:
        raise RowError("input", f"{role} too long: {len(value)} characters exceeds {max_chars}")
    return value


def model_positions(config, auto_model: str, trust_remote_code: bool = False, model=None) -> int | None:
    """The longest input the model's absolute position embeddings index, asked of the model
    transformers builds for `config` (the loaded `model`, else a skeleton on the meta device:
    no weights, no memory, milliseconds), or None where it has no position table.

    RoBERTa-style embeddings (RoBERTa, XLM-R, CamemBERT, MPNet, ESM, Longformer, ...) number
    positions from padding_idx + 1, so 514 positions hold 512 tokens; the module's own
    `create_position_ids_from_inputs_embeds` says where numbering starts, so no family list
    here can go stale (MPNet's padding_idx is fixed at 1 whatever its config says). Models
    without a table (relative or rotary positions) fall back to `max_position_embeddings`:
    past it they do not fail but leave the range they were trained on."""
    import torch

    if model is None:
        import transformers

        try:
            with torch.device("meta"):
                model = getattr(transformers, auto_model).from_config(config, trust_remote_code=trust_remote_code)
        except Exception as e:  # an exotic or remote-code model: fall back to the config's number
            logger.warning("cannot build %s for %s on the meta device (%s); using max_position_embeddings",
                           auto_model, type(config).__name__, e)
            model = None
    if model is not None:
        for module in model.modules():
            table = getattr(module, "position_embeddings", None)
            if not isinstance(table, torch.nn.Embedding):
                continue
            first = 0
            numbering = getattr(module, "create_position_ids_from_inputs_embeds", None)
            if numbering is not None:
                # A static method (inputs_embeds, padding_idx) in RoBERTa's family, a bound
                # method (inputs_embeds) in MPNet's and ESM's.
                args = (torch.zeros(1, 1, 1),)
                if "padding_idx" in inspect.signature(numbering).parameters:
                    args += (module.padding_idx,)
                first = int(numbering(*args).reshape(-1)[0])
            return table.num_embeddings - first
    positions = getattr(config, "max_position_embeddings", None)
    return positions if isinstance(positions, int) and positions > 0 else None


def token_limit(tokenizer, positions: int | None, option: int | None = None) -> int:
    """Tokens per input: the smallest of the tokenizer's model_max_length (unless unset, 1e30),
    the model's positions (`model_positions`) and the `max_length` option. 512 where none of
    them says (a tokenizer without a limit on a model without positions)."""
    limits = [option, positions]
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < UNSET_TOKENIZER_LIMIT:
        limits.append(tokenizer_limit)
    known = [int(x) for x in limits if x is not None]
    return min(known) if known else 512


class TokenLimit:
    """`max_tokens()` for operators whose model reads token ids: the one token limit of every
    text task (see `token_limit`). The model's positions are read once per operator."""

    def position_limit(self) -> int | None:
        if getattr(self, "_position_limit", False) is False:
            self._position_limit = model_positions(
                self.model_config, self.auto_model, self.load_options.trust_remote_code, self._model
            )
        return self._position_limit

    def max_tokens(self, option: int | None = None) -> int:
        return token_limit(self.processor, self.position_limit(), option)

    def load(self):
        super().load()
        self.position_limit()  # now, so that with_options copies (a Serve request's) share it
        return self


def refuse_long_rows(features: list[dict[str, Any]], limit: int) -> list[Any]:
    """With truncation off, a row over the limit fails alone in preprocess: past the model's
    positions it would index out of range (on CUDA a device-side assert that kills the actor)."""
    return [
        RowError("preprocess", f"input has {len(f['input_ids'])} tokens; the model takes at most {limit} (truncation is off)")
        if len(f["input_ids"]) > limit else f
        for f in features
    ]


@lru_cache(maxsize=None)
def _bare(pipeline_class: type) -> type:
    class Bare(pipeline_class):
        def __init__(self, tokenizer, config):  # deliberately not Pipeline.__init__ (see pipeline_steps)
            from types import SimpleNamespace

            self.tokenizer = tokenizer
            self.model = SimpleNamespace(config=config)

    Bare.__name__ = f"Bare{pipeline_class.__name__}"
    return Bare


def pipeline_steps(pipeline_class: type, tokenizer, config):
    """An instance of a transformers pipeline class whose post-processing methods we call on
    our own logits, so that the answer is the library's, not a copy of it that drifts on the
    next family. Those methods read only `self.tokenizer` and `self.model.config`, so
    Pipeline.__init__ (which wants the loaded model on its device) is skipped."""
    return _bare(pipeline_class)(tokenizer, config)


class TextLimitOptions(OperatorOptions):
    """The input-size limit every text operator applies before tokenizing."""

    max_text_chars: int = server_option(
        DEFAULT_MAX_TEXT_CHARS, ge=1, description="Inputs with more characters are refused per row before tokenizing."
    )


class TextOptions(TextLimitOptions):
    truncation: bool = Field(
        True, description="Truncate inputs longer than the model's maximum length instead of failing the row."
    )
    max_length: int | None = Field(
        None,
        ge=1,
        description="Token limit per input; default and cap: the smaller of the tokenizer's model_max_length "
        "and the model's positions (RoBERTa-style models reserve padding_idx + 1 of them: 512 of 514).",
    )


class EncoderTextOperator(TokenLimit, Operator):
    """Tokenize `text` without padding on the CPU; pad per micro-batch on the device side."""

    modality = "text"
    input_roles = ("text",)
    processor_kind = "tokenizer"
    Options = TextOptions
    rows_per_call = 256  # token ids are small; sorting more rows pads less

    def check_row(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"text": check_text(row["text"], "text", self.options.max_text_chars)}

    def max_tokens(self, option: int | None = None) -> int:
        return super().max_tokens(self.options.max_length if option is None else option)

    def preprocess_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Truncation by the tokenizer, to our limit: transformers' pipelines pass the
        # tokenizer's model_max_length alone, which is 1e30 for a tokenizer saved without one.
        limit = self.max_tokens()
        encoded = self.processor(
            [r["text"] for r in rows],
            truncation=self.options.truncation,
            max_length=limit if self.options.truncation else None,
            return_attention_mask=False,
        )
        features = []
        for i in range(len(rows)):
            f = {"input_ids": np.asarray(encoded["input_ids"][i], dtype=np.int32)}
            if "token_type_ids" in encoded:
                f["token_type_ids"] = np.asarray(encoded["token_type_ids"][i], dtype=np.int8)
            features.append(f)
        return features if self.options.truncation else refuse_long_rows(features, limit)

    def model_inputs(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        """Right-padded tensors on the device for one micro-batch."""
        pad_id = self.processor.pad_token_id or 0
        ids, mask = pad_sequences([f["input_ids"] for f in features], pad_id, dtype=np.int64)
        inputs = {"input_ids": self.to_device(ids), "attention_mask": self.to_device(mask)}
        if "token_type_ids" in features[0]:
            types, _ = pad_sequences([f["token_type_ids"] for f in features], 0, dtype=np.int64)
            inputs["token_type_ids"] = self.to_device(types)
        return inputs
