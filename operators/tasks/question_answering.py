"""question-answering (extractive, BERT-style): `answer`, `score`, `start`, `end`.

transformers 5 removed this pipeline; we implement the semantics of transformers 4.57's
QuestionAnsweringPipeline: question-first pairs, `doc_stride` windows over long contexts,
`max_answer_len`, `handle_impossible_answer`, answers aligned to words and given as
character offsets into the original context, equal answers from different windows merged.
Why a copy, not a call: v5 has no QA pipeline to call, and 4.57 cannot be imported beside v5;
tests/operators/test_question_answering.py and tests/checkpoints/test_text_tier.py hold this
copy to 4.57's pipeline on BERT and RoBERTa (SQuAD2) checkpoints. The windowing itself is the
tokenizer's (`stride` with `return_overflowing_tokens`), as in 4.57.

Windows are at most the token limit (operators/text_inputs.py): 4.57 uses
min(model_max_length, 384) or the `max_seq_len` given, so a `max_seq_len` past the model's
positions fails there on every long context and is capped here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from operators.base import Operator
from operators.batching import pad_sequences
from operators.errors import RowError, option_error
from operators.registry import register_operator
from operators.text_inputs import TextLimitOptions, TokenLimit, check_text
from operators.results import LabelSource, ResponseShape
import pyarrow as pa

from operators.results import struct

_MASKED = -10000.0  # what 4.57 writes over logits that cannot be part of an answer


class QuestionAnsweringOptions(TextLimitOptions):
    top_k: int | None = Field(None, ge=1, description="Also return `answers`, the k best answers.")
    doc_stride: int | None = Field(
        None, ge=1, description="Overlap between context windows; default min(max_seq_len // 2, 128)."
    )
    max_seq_len: int | None = Field(
        None,
        ge=8,
        description="Tokens per window (question + context); default min(model_max_length, 384); "
        "capped by the model's positions (512 of RoBERTa's 514).",
    )
    max_answer_len: int = Field(15, ge=1, description="Longest answer, in tokens.")
    handle_impossible_answer: bool = Field(False, description="Allow the empty answer when it scores best.")
    align_to_words: bool = Field(True, description="Widen answers to whole words.")


def best_answers(row) -> object:
    """The HTTP answer: the k best answers when top_k was asked for, else the best one
    (pipeline() returns a lone answer unwrapped even for top_k=1)."""
    if row.get("answers") is not None and len(row["answers"]) > 1:
        return list(row["answers"])
    return {n: row[n] for n in ("answer", "score", "start", "end")}


@register_operator("question-answering")
class QuestionAnsweringOperator(TokenLimit, Operator):
    modality = "text"
    input_roles = ("question", "context")
    output_columns = ("answer", "score", "start", "end", "answers")
    output_types = {
        "answer": pa.string(), "score": pa.float64(), "start": pa.int64(), "end": pa.int64(),
        "answers": pa.list_(struct(score=pa.float64(), start=pa.int64(), end=pa.int64(), answer=pa.string())),
    }
    response = ResponseShape(best_answers)
    label_source = LabelSource(None, "score", (), "answers")  # scores only: an answer is no label
    auto_model = "AutoModelForQuestionAnswering"
    processor_kind = "tokenizer"
    Options = QuestionAnsweringOptions
    rows_per_call = 256  # token ids are small; sorting more rows pads less

    def check_row(self, row: dict[str, Any]) -> dict[str, Any]:
        limit = self.options.max_text_chars
        return {
            "question": check_text(row["question"], "question", limit),
            "context": check_text(row["context"], "context", limit),
        }

    def check_config(self) -> None:
        """What would fail every row fails here, before any row: a tokenizer that puts the
        context first (4.57 supports it; we do not) and a doc_stride past the window."""
        super().check_config()
        side = self.processor.padding_side
        if side != "right":
            raise ValueError(
                f"question-answering with {self.model_id!r}: its tokenizer pads on the {side}, which puts the "
                "context first; only question-first (right-padding) tokenizers are supported"
            )
        self._window()

    def _window(self) -> tuple[int, int]:
        max_seq_len = self.max_tokens(self.options.max_seq_len or 384)
        doc_stride = self.options.doc_stride or min(max_seq_len // 2, 128)
        if doc_stride > max_seq_len:
            raise option_error(
                self.Options, "doc_stride", doc_stride,
                f"doc_stride ({doc_stride}) is larger than the window ({max_seq_len} tokens) for {self.model_id}",
            )
        return max_seq_len, doc_stride

    def preprocess_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        tokenizer = self.processor
        max_seq_len, doc_stride = self._window()
        encoded = tokenizer(
            [r["question"] for r in rows],
            [r["context"] for r in rows],
            truncation="only_second",
            max_length=max_seq_len,
            stride=doc_stride,
            return_token_type_ids=True,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_attention_mask=False,
        )
        features = [
            {"context": r["context"], "ids": [], "types": [], "allowed": [], "offsets": [], "word_chars": []}
            for r in rows
        ]
        for span, row in enumerate(encoded["overflow_to_sample_mapping"]):
            f = features[row]
            ids = np.asarray(encoded["input_ids"][span], dtype=np.int32)
            sequence_ids = encoded.sequence_ids(span)
            # 4.57: p_mask is 0 on context tokens and on CLS; everything else cannot be an answer.
            allowed = np.array([s == 1 for s in sequence_ids], dtype=bool)
            if tokenizer.cls_token_id is not None:
                allowed |= ids == tokenizer.cls_token_id
            f["ids"].append(ids)
            f["types"].append(np.asarray(encoded["token_type_ids"][span], dtype=np.int8))
            f["allowed"].append(allowed)
            f["offsets"].append(np.asarray(encoded["offset_mapping"][span], dtype=np.int32).reshape(-1, 2))
            f["word_chars"].append(_word_chars(encoded[span], sequence_ids))
        return features

    def row_pieces(self, features: dict[str, Any]) -> list[dict[str, Any]]:
        # Each window is one model input; the base batches windows of all rows together.
        return [{"input_ids": ids, "types": types} for ids, types in zip(features["ids"], features["types"])]

    def forward_batch(self, windows: list[dict[str, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
        ids, mask = pad_sequences([w["input_ids"] for w in windows], self.processor.pad_token_id or 0, dtype=np.int64)
        inputs = {"input_ids": self.to_device(ids), "attention_mask": self.to_device(mask)}
        # As 4.57 does, only the inputs the tokenizer names: RoBERTa's have no token types (its
        # one-row type table would reject a second segment's 1s).
        if "token_type_ids" in self.processor.model_input_names:
            types, _ = pad_sequences([w["types"] for w in windows], 0, dtype=np.int64)
            inputs["token_type_ids"] = self.to_device(types)
        out = self.model(**inputs)
        lengths = [len(w["input_ids"]) for w in windows]
        return list(zip(self.host_rows(out.start_logits, lengths), self.host_rows(out.end_logits, lengths)))

    def merge_pieces(
        self, outputs: list[tuple[np.ndarray, np.ndarray]], features: dict[str, Any]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        return outputs  # postprocess_row reads every window's logits

    def postprocess_row(self, raw: list[tuple[np.ndarray, np.ndarray]], features: dict[str, Any]) -> dict[str, Any]:
        opts = self.options
        top_k = opts.top_k or 1
        pre_top_k = top_k * 2 + 10 if opts.align_to_words else top_k
        context = features["context"]
        min_null_score = 1000000.0
        answers: list[dict[str, Any]] = []
        for (start_logits, end_logits), allowed, offsets, word_chars in zip(
            raw, features["allowed"], features["offsets"], features["word_chars"]
        ):
            starts, ends, scores, min_null_score = _select_spans(
                start_logits, end_logits, allowed, min_null_score, pre_top_k,
                opts.handle_impossible_answer, opts.max_answer_len,
            )
            for s, e, score in zip(starts, ends, scores):
                if opts.align_to_words and word_chars[s, 0] >= 0 and word_chars[e, 1] >= 0:
                    start, end = int(word_chars[s, 0]), int(word_chars[e, 1])
                else:
                    start, end = int(offsets[s, 0]), int(offsets[e, 1])
                text = context[start:end]
                same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
                if same is not None:
                    same["score"] += float(score)
                else:
                    answers.append({"score": float(score), "start": start, "end": end, "answer": text})
        if opts.handle_impossible_answer:
            answers.append({"score": float(min_null_score), "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        if not answers:
            raise RowError("postprocess", "no answer span fits max_answer_len in the context")
        best = answers[0]
        return {**best, "answers": answers if opts.top_k is not None else None}


def _word_chars(encoding, sequence_ids: list[int | None]) -> np.ndarray:
    """Per token: character span of its whole context word, or -1 where 4.57's word alignment
    would fail (it then falls back to the token's own offsets)."""
    chars = np.full((len(sequence_ids), 2), -1, dtype=np.int32)
    for t, seq in enumerate(sequence_ids):
        word = encoding.token_to_word(t)
        if word is None:
            continue
        span = encoding.word_to_chars(word, sequence_index=1)
        if span is not None:
            chars[t] = span
    return chars


def _select_spans(start, end, allowed, min_null_score, top_k, handle_impossible_answer, max_answer_len):
    """transformers 4.57 select_starts_ends + decode_spans, for one window (no padding)."""
    start = np.where(allowed, start, _MASKED).astype(np.float64)
    end = np.where(allowed, end, _MASKED).astype(np.float64)
    start = np.exp(start - start.max())
    start = start / start.sum()
    end = np.exp(end - end.max())
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, float(start[0] * end[0]))
    start[0] = end[0] = 0.0  # never the CLS position

    candidates = np.tril(np.triu(np.outer(start, end)), max_answer_len - 1)
    flat = candidates.flatten()
    if top_k == 1:
        order = np.array([np.argmax(flat)])
    elif len(flat) < top_k:
        order = np.argsort(-flat)
    else:
        part = np.argpartition(-flat, top_k)[:top_k]
        order = part[np.argsort(-flat[part])]
    starts, ends = np.unravel_index(order, candidates.shape)
    # 4.57 tests membership against a (row, col) nonzero tuple of a 1 x n mask, so index 0 is
    # always accepted; keep that so results stay equal.
    ok_positions = np.append(np.nonzero(allowed)[0], 0)
    keep = np.isin(starts, ok_positions) & np.isin(ends, ok_positions)
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[starts, ends], min_null_score
