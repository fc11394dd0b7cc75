"""token-classification (NER): `entities`, with pipeline()'s aggregation strategies.

Post-processing is transformers' own: TokenClassificationPipeline's gather_pre_entities,
aggregate (word fusion for first/average/max, B-/I- grouping, the fallback word heuristic for
tokenizers without a subword prefix, such as XLM-R's) and aggregate_overlapping_entities, run on
our logits, so every family gets the library's answer. Long texts are truncated to the token
limit, as the pipeline does by default, or, with `stride`, split by the tokenizer into
overlapping windows (one model input each, batched with other rows' windows) whose entities
the pipeline's own merge joins.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from operators.errors import RowError, option_error
from operators.registry import register_operator
from operators.scoring import softmax
from operators.text_inputs import EncoderTextOperator, TextOptions, pipeline_steps
from operators.results import LabelSource, ResponseShape, column



class TokenClassificationOptions(TextOptions):
    aggregation_strategy: Literal["none", "simple", "first", "average", "max"] = Field(
        "none", description="How tokens are fused into entities, as in pipeline(): none keeps one entity per token."
    )
    ignore_labels: list[str] = Field(["O"], description="Labels never reported as entities.")
    stride: int | None = Field(
        None,
        ge=0,
        description="Tokens shared by consecutive windows over a text longer than the token limit, as "
        "pipeline(stride=...): every window is labelled and overlapping entities merged. Needs an "
        "aggregation_strategy other than none. Default: no windows; long texts are truncated.",
    )


@register_operator("token-classification")
class TokenClassificationOperator(EncoderTextOperator):
    output_columns = ("entities",)

    @classmethod
    def output_types_for(cls, options):
        import pyarrow as pa

        from operators.results import struct

        # token-level entities name their label `entity` and their position `index`;
        # aggregated ones name it `entity_group`, with no index (as pipeline() answers)
        if options.aggregation_strategy == "none":
            entity = struct(entity=pa.string(), score=pa.float64(), index=pa.int64(), word=pa.string(),
                            start=pa.int64(), end=pa.int64())
        else:
            entity = struct(entity_group=pa.string(), score=pa.float64(), word=pa.string(), start=pa.int64(), end=pa.int64())
        return {"entities": pa.list_(entity)}
    response = ResponseShape(column("entities"))
    # aggregated entities carry `entity_group`, token-level ones `entity`
    label_source = LabelSource("entities", "score", ("entity_group", "entity"), "entities")
    auto_model = "AutoModelForTokenClassification"
    Options = TokenClassificationOptions

    def check_config(self) -> None:
        """A stride the pipeline refuses fails here, before any row."""
        super().check_config()
        stride = self.options.stride
        if stride is None:
            return
        if self.options.aggregation_strategy == "none":
            raise option_error(
                self.Options, "stride", stride,
                "stride merges entities across windows, which needs an aggregation_strategy other than none",
            )
        room = self.max_tokens() - self.processor.num_special_tokens_to_add(pair=False)
        if stride >= room:
            raise option_error(
                self.Options, "stride", stride,
                f"stride ({stride}) must be below the {room} text tokens of a window for {self.model_id}",
            )

    def preprocess_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        texts = [r["text"] for r in rows]
        limit = self.max_tokens()
        windows = self.options.stride is not None
        truncation = self.options.truncation or windows
        extra = {"stride": self.options.stride, "return_overflowing_tokens": True} if windows else {}
        encoded = self.processor(
            texts,
            truncation=truncation,
            max_length=limit if truncation else None,
            return_attention_mask=False,
            return_special_tokens_mask=True,
            return_offsets_mapping=True,
            **extra,
        )
        features: list[Any] = [{"text": text, "chunks": []} for text in texts]
        rows_of = encoded["overflow_to_sample_mapping"] if windows else range(len(texts))
        for span, row in enumerate(rows_of):
            chunk = {
                "input_ids": np.asarray(encoded["input_ids"][span], dtype=np.int32),
                "special_tokens_mask": np.asarray(encoded["special_tokens_mask"][span], dtype=np.int8),
                "offsets": np.asarray(encoded["offset_mapping"][span], dtype=np.int32).reshape(-1, 2),
            }
            if "token_type_ids" in encoded:
                chunk["token_type_ids"] = np.asarray(encoded["token_type_ids"][span], dtype=np.int8)
            features[row]["chunks"].append(chunk)
        if not truncation:
            # Past the model's positions a row would index out of range (on CUDA a device-side
            # assert that kills the actor): it fails alone, here.
            for i, f in enumerate(features):
                length = len(f["chunks"][0]["input_ids"])
                if length > limit:
                    features[i] = RowError(
                        "preprocess", f"input has {length} tokens; the model takes at most {limit} (truncation is off)"
                    )
        return features

    def row_pieces(self, features: dict[str, Any]) -> list[dict[str, Any]]:
        return features["chunks"]  # one window, or one per stride window

    def merge_pieces(self, outputs: list[np.ndarray], features: dict[str, Any]) -> list[np.ndarray]:
        return outputs  # postprocess_row reads every window's logits

    def forward_batch(self, features: list[dict[str, Any]]) -> list[np.ndarray]:
        logits = self.model(**self.model_inputs(features)).logits
        return self.host_rows(logits, [len(f["input_ids"]) for f in features])

    def postprocess_row(self, raw: list[np.ndarray], features: dict[str, Any]) -> dict[str, Any]:
        """TokenClassificationPipeline.postprocess, step for step, on our logits."""
        from transformers.pipelines.token_classification import AggregationStrategy, TokenClassificationPipeline

        steps = pipeline_steps(TokenClassificationPipeline, self.processor, self.model_config)
        strategy = AggregationStrategy(self.options.aggregation_strategy)
        ignore = set(self.options.ignore_labels)
        entities = []
        for logits, chunk in zip(raw, features["chunks"]):
            # The pipeline's own softmax is inline in its postprocess: the same float32 formula.
            pre_entities = steps.gather_pre_entities(
                features["text"], chunk["input_ids"], softmax(logits), chunk["offsets"],
                chunk["special_tokens_mask"], strategy,
            )
            entities += [
                e for e in steps.aggregate(pre_entities, strategy)
                if e.get("entity") not in ignore and e.get("entity_group") not in ignore
            ]
        if len(raw) > 1:
            entities = steps.aggregate_overlapping_entities(entities)
        return {"entities": [_plain(e) for e in entities]}


def _plain(entity: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars (scores, offsets) as Python values, for Arrow and JSON."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in entity.items()}
