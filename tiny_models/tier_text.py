"""Tiny models rebuilding the published configurations of the text families users bring most
(text-classification, token-classification, question-answering and feature-extraction), offline.
See checkpoints.py for the rules a builder follows.

Each keeps the published config flags (position count and the padding_idx that RoBERTa-style
embeddings reserve, type vocabulary, id2label, problem_type) and the tokenizer's class, special
tokens, model_max_length and offsets behaviour; cardiffnlp's models also keep the repository's
tokenizer files (no tokenizer_config.json). Only widths, layer counts and the vocabulary
(trained locally on the standard library's prose) shrink.
Random heads are re-centred on calibration texts so that labels vary with the input.
"""

from __future__ import annotations

import json
import os
from typing import Callable

import torch

from tiny_models.calibration import calibration_texts, recenter_linear
from tiny_models.tokenizers import train_unigram, corpus, wordpiece_tokenizer

SEED = 40
VOCAB = 1000

# The published RoBERTa-base body (roberta-base, cardiffnlp, SamLowe, deepset): 514 positions of
# which padding_idx + 1 = 2 are reserved, one token type, <s>/<pad>/</s> = 0/1/2.
ROBERTA_BASE = {
    "attention_probs_dropout_prob": 0.1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 514,
    "pad_token_id": 1,
    "position_embedding_type": "absolute",
    "type_vocab_size": 1,
    # shrunk from hidden 768, 12 layers, 12 heads, intermediate 3072
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}

GO_EMOTIONS = [
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity",
    "desire", "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear",
    "gratitude", "grief", "joy", "love", "nervousness", "optimism", "pride", "realization", "relief",
    "remorse", "sadness", "surprise", "neutral",
]
NER_HRL = ["O", "B-DATE", "I-DATE", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def _labels(labels: list[str]) -> dict:
    return {"id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}


def _encode(tokenizer, texts):
    return tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")


# ---------------------------------------------------------------------------- tokenizers


def roberta_tokenizer(model_max_length: int | None = 512):
    """roberta-base's tokenizer: byte-level BPE, <s>/<pad>/</s>/<unk> = 0/1/2/3 and <mask> last
    (50264 in the real vocabulary), no prefix space, offsets trimmed of the leading space
    (RobertaProcessing), no token type ids. None: no model_max_length (transformers' 1e30)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        corpus(),
        trainers.BpeTrainer(
            vocab_size=VOCAB - 1, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
        ),
    )
    trained = json.loads(tok.to_str())["model"]
    vocab = dict(trained["vocab"])
    vocab["<mask>"] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    kwargs = {} if model_max_length is None else {"model_max_length": model_max_length}
    return RobertaTokenizer(vocab=vocab, merges=merges, add_prefix_space=False, trim_offsets=True, **kwargs)


def _write_roberta_files_as_cardiffnlp(tokenizer, out_dir: str) -> None:
    """The tokenizer files cardiffnlp's twitter-roberta repositories ship: vocab.json,
    merges.txt and special_tokens_map.json. No tokenizer_config.json (so no model_max_length)
    and no tokenizer.json: transformers builds the tokenizer from the config's model_type."""
    tokenizer.backend_tokenizer.model.save(out_dir)  # vocab.json, merges.txt
    specials = {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
        "pad_token": "<pad>", "cls_token": "<s>",
        "mask_token": {"content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False, "normalized": False},
    }
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w") as f:
        json.dump(specials, f)


def xlm_roberta_tokenizer(model_max_length: int = 512):
    """XLM-R's tokenizer: a sentencepiece Unigram with <s>/<pad>/</s>/<unk> = 0/1/2/3 and
    <mask> last (250001), '▁' prefixed words, '<s> A </s>' and '<s> A </s></s> B </s>'. Its
    model has no continuing-subword prefix, so pipeline() fuses words with its fallback heuristic.
    (The published normalizer is sentencepiece's precompiled charsmap, which cannot be built
    offline; the prose here is ASCII, where it changes nothing.)"""
    from transformers import XLMRobertaTokenizer

    tok = train_unigram(["<s>", "<pad>", "</s>", "<unk>"], VOCAB - 1)
    pieces = [tuple(p) for p in json.loads(tok.to_str())["model"]["vocab"]]
    return XLMRobertaTokenizer(vocab=pieces + [("<mask>", 0.0)], model_max_length=model_max_length)


def distilbert_tokenizer():
    """distilbert-base-uncased's tokenizer: lower-cased WordPiece, [PAD] = 0, model_max_length
    512, and no token type ids (DistilBertTokenizer's model inputs)."""
    from transformers import DistilBertTokenizer

    bert = wordpiece_tokenizer()
    return DistilBertTokenizer(
        tokenizer_object=bert.backend_tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", do_lower_case=True, model_max_length=512,
    )


# ---------------------------------------------------------------------------- models


def save(model, out_dir: str, tokenizer=None) -> str:
    model.save_pretrained(out_dir, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    return out_dir


@torch.no_grad()
def _roberta_classifier(config: dict, tokenizer, seed: int):
    """RobertaForSequenceClassification with its out_proj re-centred on the features its
    dense + tanh head layer gives for the calibration texts."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(seed)
    model = RobertaForSequenceClassification(RobertaConfig(**config)).eval()
    cls = model.roberta(**_encode(tokenizer, calibration_texts())).last_hidden_state[:, 0]
    recenter_linear(model.classifier.out_proj, torch.tanh(model.classifier.dense(cls)))
    return model


def build_distilbert_sst2(out_dir: str) -> str:
    """distilbert-base-uncased-finetuned-sst-2-english: DistilBERT (learned positions, 512),
    pre_classifier + relu + classifier, seq_classif_dropout 0.2, NEGATIVE/POSITIVE, and an
    uncased WordPiece tokenizer without token types. Shrunk: dim 32, 2 layers."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    tokenizer = distilbert_tokenizer()
    config = DistilBertConfig(
        activation="gelu", attention_dropout=0.1, dropout=0.1, finetuning_task="sst-2", initializer_range=0.02,
        max_position_embeddings=512, output_past=True, pad_token_id=0, qa_dropout=0.1, seq_classif_dropout=0.2,
        sinusoidal_pos_embds=False, tie_weights_=True, vocab_size=len(tokenizer),
        dim=32, hidden_dim=64, n_heads=2, n_layers=2,  # shrunk from 768, 3072, 12, 6
        **_labels(["NEGATIVE", "POSITIVE"]),
    )
    torch.manual_seed(SEED)
    model = DistilBertForSequenceClassification(config).eval()
    with torch.no_grad():
        cls = model.distilbert(**_encode(tokenizer, calibration_texts())).last_hidden_state[:, 0]
        recenter_linear(model.classifier, torch.relu(model.pre_classifier(cls)))
    return save(model, out_dir, tokenizer)


def build_twitter_roberta_sentiment(out_dir: str) -> str:
    """cardiffnlp/twitter-roberta-base-sentiment-latest: RoBERTa-base, negative/neutral/positive,
    and the repository's tokenizer files: vocab.json, merges.txt, special_tokens_map.json, and
    NO tokenizer_config.json, so the tokenizer loads with no model_max_length (1e30) while the
    model takes 512 tokens (514 positions, padding_idx 1)."""
    tokenizer = roberta_tokenizer(model_max_length=None)
    config = {**ROBERTA_BASE, "vocab_size": len(tokenizer), **_labels(["negative", "neutral", "positive"])}
    model = _roberta_classifier(config, tokenizer, SEED + 1)
    save(model, out_dir)
    _write_roberta_files_as_cardiffnlp(tokenizer, out_dir)
    return out_dir


def build_twitter_roberta_base(out_dir: str) -> str:
    """cardiffnlp/twitter-roberta-base (the language model, used for embeddings): RoBERTa-base
    with the same tokenizer files as the sentiment model (no tokenizer_config.json) and no
    sentence-transformers modules, so feature-extraction mean-pools its last hidden state."""
    from transformers import RobertaConfig, RobertaModel

    tokenizer = roberta_tokenizer(model_max_length=None)
    torch.manual_seed(SEED + 2)
    model = RobertaModel(RobertaConfig(**ROBERTA_BASE, vocab_size=len(tokenizer)), add_pooling_layer=False).eval()
    save(model, out_dir)
    _write_roberta_files_as_cardiffnlp(tokenizer, out_dir)
    return out_dir


def build_roberta_go_emotions(out_dir: str) -> str:
    """SamLowe/roberta-base-go_emotions: RoBERTa-base with 28 GoEmotions labels and problem_type
    multi_label_classification (so scores are sigmoids), tokenizer with model_max_length 512."""
    tokenizer = roberta_tokenizer(512)
    config = {
        **ROBERTA_BASE, "vocab_size": len(tokenizer), "problem_type": "multi_label_classification",
        **_labels(GO_EMOTIONS),
    }
    model = _roberta_classifier(config, tokenizer, SEED + 3)
    return save(model, out_dir, tokenizer)


def build_xlm_roberta_ner_hrl(out_dir: str) -> str:
    """Davlan/xlm-roberta-base-ner-hrl: XLMRobertaForTokenClassification (514 positions,
    padding_idx 1, one token type) with its 9 labels (O, B-/I- DATE, PER, ORG, LOC) and an
    XLM-R Unigram tokenizer with model_max_length 512. Shrunk: hidden 32, 2 layers."""
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

    tokenizer = xlm_roberta_tokenizer(512)
    config = XLMRobertaConfig(**ROBERTA_BASE, vocab_size=len(tokenizer), **_labels(NER_HRL))
    torch.manual_seed(SEED + 4)
    model = XLMRobertaForTokenClassification(config).eval()
    with torch.no_grad():
        enc = _encode(tokenizer, calibration_texts())
        hidden = model.roberta(**enc).last_hidden_state[enc["attention_mask"].bool()]
        recenter_linear(model.classifier, hidden)
        # Entities are the exception in real text: "O" ahead by a margin most tokens keep.
        model.classifier.bias[0] += 3.0
    return save(model, out_dir, tokenizer)


def squad_examples() -> list[dict[str, str]]:
    """Questions over contexts from the prose: short ones and ones spanning several windows."""
    docs = [" ".join(d.split()) for d in corpus()[40:60]]
    questions = ["What does it return?", "Which statement is used?", "When is it raised?", "Who calls it?"]
    lengths = [150, 500, 1200, 3000]
    return [
        {"question": questions[i % 4], "context": doc[: lengths[i % 4]]} for i, doc in enumerate(docs[:12])
    ]


def build_roberta_squad2(out_dir: str) -> str:
    """deepset/roberta-base-squad2: RobertaForQuestionAnswering, tokenizer with model_max_length
    512. SQuAD2 models answer "no answer" by scoring the <s> position; the random head is
    re-centred on token states and then moved towards <s> until the empty answer wins on about
    half of the example questions, so that handle_impossible_answer is exercised both ways."""
    from transformers import RobertaConfig, RobertaForQuestionAnswering

    tokenizer = roberta_tokenizer(512)
    torch.manual_seed(SEED + 5)
    model = RobertaForQuestionAnswering(RobertaConfig(**ROBERTA_BASE, vocab_size=len(tokenizer))).eval()
    examples = squad_examples()
    with torch.no_grad():
        enc = tokenizer(
            [e["question"] for e in examples], [e["context"] for e in examples], truncation="only_second",
            max_length=384, padding=True, return_tensors="pt",
        )
        hidden = model.roberta(**enc).last_hidden_state
        mask = enc["attention_mask"].bool()
        recenter_linear(model.qa_outputs, hidden[mask])
        # The direction from an average token's state to <s>'s: adding it to both heads lifts
        # the <s> logits alone (the bias would lift every position alike).
        toward_cls = hidden[:, 0].mean(0) - hidden[mask].mean(0)
        toward_cls = toward_cls / toward_cls.norm() ** 2
        base = model.qa_outputs.weight.clone()

        def null_share(lift: float) -> float:
            model.qa_outputs.weight.copy_(base + lift * toward_cls)
            logits = model.qa_outputs(hidden).masked_fill(~mask[..., None], -1e4)
            p = logits.softmax(dim=1)  # over positions, per head
            null = p[:, 0, 0] * p[:, 0, 1]
            span = (p[:, 1:, 0, None] * p[:, None, 1:, 1]).triu().flatten(1).max(dim=1).values
            return float((null > span).float().mean())

        low, high = 0.0, 64.0
        for _ in range(20):
            mid = (low + high) / 2
            low, high = (mid, high) if null_share(mid) < 0.5 else (low, mid)
        null_share(high)
    return save(model, out_dir, tokenizer)


# hub id -> (task, builder(out_dir) -> out_dir)
CHECKPOINTS: dict[str, tuple[str, Callable[[str], str]]] = {
    "distilbert-base-uncased-finetuned-sst-2-english": ("text-classification", build_distilbert_sst2),
    "cardiffnlp/twitter-roberta-base-sentiment-latest": ("text-classification", build_twitter_roberta_sentiment),
    "cardiffnlp/twitter-roberta-base": ("feature-extraction", build_twitter_roberta_base),
    "SamLowe/roberta-base-go_emotions": ("text-classification", build_roberta_go_emotions),
    "Davlan/xlm-roberta-base-ner-hrl": ("token-classification", build_xlm_roberta_ner_hrl),
    "deepset/roberta-base-squad2": ("question-answering", build_roberta_squad2),
}
