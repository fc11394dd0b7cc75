"""feature-extraction: one sentence embedding per text, mean-pooled over the attention mask.

transformers.pipeline("feature-extraction") returns per-token hidden states; labelling jobs
want one vector per row, so we pool on the device (masked mean) and return `embedding`.
For sentence-transformers checkpoints (modules.json), the defaults follow the checkpoint:
normalize when it has a Normalize module, and its max_seq_length.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from pydantic import Field

from operators.registry import register_operator
from operators.text_inputs import EncoderTextOperator, TextOptions


class FeatureExtractionOptions(TextOptions):
    normalize: bool | None = Field(
        None,
        description="L2-normalize embeddings. Default: as the sentence-transformers config says "
        "(a Normalize module), else False.",
    )


@register_operator("feature-extraction")
class FeatureExtractionOperator(EncoderTextOperator):
    output_columns = ("embedding",)
    float32_columns = ("embedding",)
    auto_model = "AutoModel"
    Options = FeatureExtractionOptions

    def __init__(self, model: str, **kwargs: Any):
        super().__init__(model, **kwargs)
        self._sentence_config: dict[str, Any] | None = None

    def sentence_config(self) -> dict[str, Any]:
        """What the sentence-transformers files say: {"normalize": bool, "max_seq_length": int}."""
        if self._sentence_config is None:
            modules = _read_json(self.load_options, "modules.json") or []
            bert_config = _read_json(self.load_options, "sentence_bert_config.json") or {}
            self._sentence_config = {
                "normalize": any(str(m.get("type", "")).endswith(".Normalize") for m in modules),
                "max_seq_length": bert_config.get("max_seq_length"),
            }
        return self._sentence_config

    @property
    def normalize(self) -> bool:
        if self.options.normalize is not None:
            return self.options.normalize
        return self.sentence_config()["normalize"]

    def max_tokens(self) -> int:
        if self.options.max_length is None and self.sentence_config()["max_seq_length"]:
            return int(self.sentence_config()["max_seq_length"])
        return super().max_tokens()

    def forward_batch(self, features: list[dict[str, Any]]) -> list[np.ndarray]:
        import torch

        inputs = self.model_inputs(features)
        hidden = self.model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=-1)
        return list(pooled.float().cpu().numpy())

    def postprocess_row(self, raw: np.ndarray, features: dict[str, Any]) -> dict[str, Any]:
        return {"embedding": raw.astype(np.float32).tolist()}


def _read_json(load_options, filename: str) -> Any:
    """A JSON file of the checkpoint, or None when it has none (local dir or hub)."""
    import os

    if load_options.is_local:
        path = os.path.join(load_options.model, filename)
        if not os.path.exists(path):
            return None
    else:
        from transformers.utils import cached_file

        path = cached_file(
            load_options.model,
            filename,
            revision=load_options.revision,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
        if path is None:
            return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)
