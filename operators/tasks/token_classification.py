"""token-classification (NER): `entities`, with pipeline()'s aggregation strategies.

Post-processing is transformers' own: TokenClassificationPipeline's gather_pre_entities and
aggregate (word fusion for first/average/max, B-/I- grouping, the fallback word heuristic for
tokenizers without a subword prefix, such as XLM-R's), run on our logits, so every family gets
the library's answer. Long texts are truncated to the token limit, as the pipeline does by
default; its `stride` windows over long texts are not offered.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from operators.registry import register_operator
from operators.scoring import softmax
from operators.text_inputs import EncoderTextOperator, TextOptions, pipeline_steps, refuse_long_rows


class TokenClassificationOptions(TextOptions):
    aggregation_strategy: Literal["none", "simple", "first", "average", "max"] = Field(
        "none", description="How tokens are fused into entities, as in pipeline(): none keeps one entity per token."
    )
    ignore_labels: list[str] = Field(["O"], description="Labels never reported as entities.")


@register_operator("token-classification")
class TokenClassificationOperator(EncoderTextOperator):
    output_columns = ("entities",)
    auto_model = "AutoModelForTokenClassification"
    Options = TokenClassificationOptions

    def preprocess_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        texts = [r["text"] for r in rows]
        limit = self.max_tokens()
        encoded = self.processor(
            texts,
            truncation=self.options.truncation,
            max_length=limit if self.options.truncation else None,
            return_attention_mask=False,
            return_special_tokens_mask=True,
            return_offsets_mapping=True,
        )
        features = []
        for i, text in enumerate(texts):
            f = {
                "input_ids": np.asarray(encoded["input_ids"][i], dtype=np.int32),
                "special_tokens_mask": np.asarray(encoded["special_tokens_mask"][i], dtype=np.int8),
                "offsets": np.asarray(encoded["offset_mapping"][i], dtype=np.int32).reshape(-1, 2),
                "text": text,
            }
            if "token_type_ids" in encoded:
                f["token_type_ids"] = np.asarray(encoded["token_type_ids"][i], dtype=np.int8)
            features.append(f)
        return features if self.options.truncation else refuse_long_rows(features, limit)

    def forward_batch(self, features: list[dict[str, Any]]) -> list[np.ndarray]:
        logits = self.model(**self.model_inputs(features)).logits.float().cpu().numpy()
        return [logits[row, : len(f["input_ids"])] for row, f in enumerate(features)]

    def postprocess_row(self, raw: np.ndarray, features: dict[str, Any]) -> dict[str, Any]:
        from transformers.pipelines.token_classification import AggregationStrategy, TokenClassificationPipeline

        steps = pipeline_steps(TokenClassificationPipeline, self.processor, self.model_config)
        strategy = AggregationStrategy(self.options.aggregation_strategy)
        # The pipeline's own softmax is inline in its postprocess: the same float32 formula.
        pre_entities = steps.gather_pre_entities(
            features["text"], features["input_ids"], softmax(raw), features["offsets"],
            features["special_tokens_mask"], strategy,
        )
        ignore = set(self.options.ignore_labels)
        return {
            "entities": [
                _plain(e)
                for e in steps.aggregate(pre_entities, strategy)
                if e.get("entity") not in ignore and e.get("entity_group") not in ignore
            ]
        }


def _plain(entity: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars (scores, offsets) as Python values, for Arrow and JSON."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in entity.items()}
