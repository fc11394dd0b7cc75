"""Shared pieces for operators whose input is text run through a tokenizer and an encoder."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from operators.base import Operator, OperatorOptions
from operators.batching import pad_sequences
from operators.errors import RowError

DEFAULT_MAX_TEXT_CHARS = 1_000_000


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


class TextLimitOptions(OperatorOptions):
    """The input-size limit every text operator applies before tokenizing."""

    max_text_chars: int = Field(
        DEFAULT_MAX_TEXT_CHARS, ge=1, description="Inputs with more characters are refused per row before tokenizing."
    )


class TextOptions(TextLimitOptions):
    truncation: bool = Field(
        True, description="Truncate inputs longer than the model's maximum length instead of failing the row."
    )
    max_length: int | None = Field(
        None, ge=1, description="Token limit per input; default: the tokenizer's model_max_length, capped by the model's positions."
    )


class EncoderTextOperator(Operator):
    """Tokenize `text` without padding on the CPU; pad per micro-batch on the device side."""

    modality = "text"
    input_roles = ("text",)
    processor_kind = "tokenizer"
    Options = TextOptions
    rows_per_call = 256  # token ids are small; sorting more rows pads less

    def check_row(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"text": check_text(row["text"], "text", self.options.max_text_chars)}

    def max_tokens(self) -> int:
        limit = self.options.max_length or getattr(self.processor, "model_max_length", None) or 512
        return int(min(limit, 1_000_000))

    def preprocess_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        encoded = self.processor(
            [r["text"] for r in rows],
            truncation=self.options.truncation,
            max_length=self.max_tokens() if self.options.truncation else None,
            return_attention_mask=False,
        )
        features = []
        for i in range(len(rows)):
            f = {"input_ids": np.asarray(encoded["input_ids"][i], dtype=np.int32)}
            if "token_type_ids" in encoded:
                f["token_type_ids"] = np.asarray(encoded["token_type_ids"][i], dtype=np.int8)
            features.append(f)
        return features

    def model_inputs(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        """Right-padded tensors on the device for one micro-batch."""
        pad_id = self.processor.pad_token_id or 0
        ids, mask = pad_sequences([f["input_ids"] for f in features], pad_id, dtype=np.int64)
        inputs = {"input_ids": self.to_device(ids), "attention_mask": self.to_device(mask)}
        if "token_type_ids" in features[0]:
            types, _ = pad_sequences([f["token_type_ids"] for f in features], 0, dtype=np.int64)
            inputs["token_type_ids"] = self.to_device(types)
        return inputs
