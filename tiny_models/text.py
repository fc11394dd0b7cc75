"""Tiny BERT models for the text tasks (hidden 32, 2 layers) with a local WordPiece tokenizer."""

from __future__ import annotations

import torch

from tiny_models.calibration import calibration_texts, recenter_linear
from tiny_models.tokenizers import wordpiece_tokenizer

SEED = 0


def bert_config(**overrides):
    from transformers import BertConfig

    config = dict(
        vocab_size=2000,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        type_vocab_size=2,
    )
    config.update(overrides)
    return BertConfig(**config)


def _encode(tokenizer, texts):
    return tokenizer(texts, padding=True, truncation=True, return_tensors="pt")


def save(model, tokenizer, out_dir: str) -> str:
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_text_classification(out_dir: str) -> str:
    from transformers import BertForSequenceClassification

    torch.manual_seed(SEED)
    labels = ["negative", "neutral", "positive"]
    config = bert_config(num_labels=3, id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    model = BertForSequenceClassification(config).eval()
    tokenizer = wordpiece_tokenizer()
    with torch.no_grad():
        pooled = model.bert(**_encode(tokenizer, calibration_texts())).pooler_output
    recenter_linear(model.classifier, pooled)
    return save(model, tokenizer, out_dir)


def build_token_classification(out_dir: str) -> str:
    from transformers import BertForTokenClassification

    torch.manual_seed(SEED + 1)
    labels = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    config = bert_config(num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    model = BertForTokenClassification(config).eval()
    tokenizer = wordpiece_tokenizer()
    with torch.no_grad():
        enc = _encode(tokenizer, calibration_texts())
        hidden = model.bert(**enc).last_hidden_state[enc["attention_mask"].bool()]
    recenter_linear(model.classifier, hidden)
    return save(model, tokenizer, out_dir)


def build_question_answering(out_dir: str) -> str:
    from transformers import BertForQuestionAnswering

    torch.manual_seed(SEED + 2)
    model = BertForQuestionAnswering(bert_config()).eval()
    tokenizer = wordpiece_tokenizer()
    with torch.no_grad():
        enc = _encode(tokenizer, calibration_texts())
        hidden = model.bert(**enc).last_hidden_state[enc["attention_mask"].bool()]
    recenter_linear(model.qa_outputs, hidden)
    return save(model, tokenizer, out_dir)


def build_feature_extraction(out_dir: str) -> str:
    from transformers import BertModel

    torch.manual_seed(SEED + 3)
    model = BertModel(bert_config(), add_pooling_layer=False).eval()
    return save(model, wordpiece_tokenizer(), out_dir)
