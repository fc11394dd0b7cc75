"""token-classification (NER): `entities`, with pipeline()'s aggregation strategies.

The aggregation follows transformers' TokenClassificationPipeline step for step (pre-entities
from offsets, word fusion for first/average/max, B-/I- grouping), so results are equal.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from operators.registry import register_operator
from operators.scoring import softmax
from operators.text_inputs import EncoderTextOperator, TextOptions


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
        encoded = self.processor(
            texts,
            truncation=self.options.truncation,
            max_length=self.max_tokens() if self.options.truncation else None,
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
        return features

    def forward_batch(self, features: list[dict[str, Any]]) -> list[np.ndarray]:
        logits = self.model(**self.model_inputs(features)).logits.float().cpu().numpy()
        return [logits[row, : len(f["input_ids"])] for row, f in enumerate(features)]

    def postprocess_row(self, raw: np.ndarray, features: dict[str, Any]) -> dict[str, Any]:
        strategy = self.options.aggregation_strategy
        pre_entities = self._pre_entities(features, softmax(raw))
        if strategy in ("none", "simple"):
            entities = [
                {
                    "entity": self._label(int(p["scores"].argmax())),
                    "score": float(p["scores"].max()),
                    "index": p["index"],
                    "word": p["word"],
                    "start": p["start"],
                    "end": p["end"],
                }
                for p in pre_entities
            ]
        else:
            entities = self._aggregate_words(pre_entities, strategy)
        if strategy != "none":
            entities = self._group_entities(entities)
        ignore = set(self.options.ignore_labels)
        return {
            "entities": [
                e for e in entities if e.get("entity") not in ignore and e.get("entity_group") not in ignore
            ]
        }

    # -- the steps of TokenClassificationPipeline.postprocess

    def _label(self, index: int) -> str:
        return self.model.config.id2label[index]

    def _pre_entities(self, features: dict[str, Any], scores: np.ndarray) -> list[dict[str, Any]]:
        tokenizer = self.processor
        sentence = features["text"]
        word_aware = bool(getattr(getattr(tokenizer, "_tokenizer", None), "model", None)
                          and getattr(tokenizer._tokenizer.model, "continuing_subword_prefix", None))
        pre = []
        for idx, token_scores in enumerate(scores):
            if features["special_tokens_mask"][idx]:
                continue
            token_id = int(features["input_ids"][idx])
            word = tokenizer.convert_ids_to_tokens(token_id)
            start, end = (int(x) for x in features["offsets"][idx])
            word_ref = sentence[start:end]
            if word_aware:
                is_subword = len(word) != len(word_ref)
            else:  # pipeline()'s fallback heuristic for tokenizers that do not know words
                is_subword = start > 0 and " " not in sentence[start - 1 : start + 1]
            if token_id == tokenizer.unk_token_id:
                word, is_subword = word_ref, False
            pre.append({"word": word, "scores": token_scores, "start": start, "end": end,
                        "index": idx, "is_subword": is_subword})
        return pre

    def _aggregate_words(self, pre_entities: list[dict[str, Any]], strategy: str) -> list[dict[str, Any]]:
        words: list[list[dict[str, Any]]] = []
        for entity in pre_entities:
            if words and entity["is_subword"]:
                words[-1].append(entity)
            else:
                words.append([entity])
        return [self._aggregate_word(group, strategy) for group in words]

    def _aggregate_word(self, entities: list[dict[str, Any]], strategy: str) -> dict[str, Any]:
        if strategy == "first":
            scores = entities[0]["scores"]
        elif strategy == "max":
            scores = max(entities, key=lambda e: e["scores"].max())["scores"]
        else:  # average
            scores = np.nanmean(np.stack([e["scores"] for e in entities]), axis=0)
        best = int(scores.argmax())
        return {
            "entity": self._label(best),
            "score": float(scores[best]),
            "word": self.processor.convert_tokens_to_string([e["word"] for e in entities]),
            "start": entities[0]["start"],
            "end": entities[-1]["end"],
        }

    def _group_entities(self, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        groups: list[list[dict[str, Any]]] = []
        for entity in entities:
            bi, tag = _split_tag(entity["entity"])
            if groups and bi != "B" and tag == _split_tag(groups[-1][-1]["entity"])[1]:
                groups[-1].append(entity)
            else:
                groups.append([entity])
        return [
            {
                "entity_group": group[0]["entity"].split("-", 1)[-1],
                "score": float(np.nanmean([e["score"] for e in group])),
                "word": self.processor.convert_tokens_to_string([e["word"] for e in group]),
                "start": group[0]["start"],
                "end": group[-1]["end"],
            }
            for group in groups
        ]


def _split_tag(name: str) -> tuple[str, str]:
    """("B"|"I", tag); a label without a B-/I- prefix counts as a continuation, as in pipeline()."""
    if name.startswith(("B-", "I-")):
        return name[0], name[2:]
    return "I", name
