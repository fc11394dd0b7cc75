"""Tiny generation models (width 32, 2 layers) with locally trained tokenizers:
GPT-2 for text-generation, BART for summarization, T5 (with task prefixes) for translation.

Random models make weak oracles: their logits are nearly flat, so greedy decoding repeats one
token and seq2seq models emit EOS at once. Two remedies keep the outputs non-trivial and
dependent on the input:

* a large initializer range, so logits are far apart (no near-ties that padding noise could
  flip, which also keeps batched-vs-single parity exact);
* a generation config with `min_new_tokens`, `suppress_tokens` (the special tokens that would
  decode to nothing) and a short length, so tests stay fast. Seq2seq models bound it with
  `max_length`, not `max_new_tokens`: transformers 4.57's pipelines (our reference) replace a
  model's `max_new_tokens` with their default 256 but honour a model's `max_length`.
"""

from __future__ import annotations

import json
import os

import torch

from tiny_models.tokenizers import (
    bart_bpe_tokenizer,
    byte_level_bpe_tokenizer,
    mbart_tokenizer,
    unigram_tokenizer,
)

SEED = 10
VOCAB = 1000
POSITIONS = 128
# Std of the random weights; transformers' default 0.02 gives near-uniform logits.
INIT_STD = 0.4


def save(model, tokenizer, out_dir: str) -> str:
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    _make_tokenizer_config_portable(out_dir)
    return out_dir


def _make_tokenizer_config_portable(out_dir: str) -> None:
    """transformers 4.57 (the reference for summarization/translation) fails on the empty
    `extra_special_tokens` *list* that v5 writes ('list' object has no attribute 'keys');
    it expects a dict, and an absent key means the same as an empty one. A non-empty list
    (mBART's language codes) goes under `additional_special_tokens`, which both versions read."""
    path = os.path.join(out_dir, "tokenizer_config.json")
    with open(path) as f:
        config = json.load(f)
    extra = config.pop("extra_special_tokens", None)
    if isinstance(extra, list) and extra:
        config["additional_special_tokens"] = extra  # the key 4.57 reads (mBART language codes)
    elif extra:
        config["extra_special_tokens"] = extra
    with open(path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)


def _generation_config(model, tokenizer, **settings) -> None:
    """Readable, non-trivial outputs from a random model (see module docstring)."""
    model.generation_config.update(suppress_tokens=unreadable_tokens(tokenizer), **settings)


def unreadable_tokens(tokenizer) -> list[int]:
    """Special tokens other than EOS (they decode to nothing) and byte-level pieces that decode
    to U+FFFD or control characters on their own."""
    ids = {tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens}
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if "\ufffd" in text or any(not (c.isprintable() or c.isspace()) for c in text):
            ids.add(token_id)
    return sorted(ids - {tokenizer.eos_token_id})


def build_text_generation(out_dir: str) -> str:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(SEED)
    tokenizer = byte_level_bpe_tokenizer(VOCAB, POSITIONS)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=POSITIONS,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=INIT_STD,
    )
    model = GPT2LMHeadModel(config).eval()
    # GPT-2 ships no pad token and sets no sampling defaults: leave those to the caller,
    # as with the real checkpoint. A short max_new_tokens keeps tests fast.
    _generation_config(model, tokenizer, max_new_tokens=12)
    return save(model, tokenizer, out_dir)


def tiny_bart_fields(tokenizer) -> dict:
    """Config fields shared by the tiny BART and mBART models."""
    return dict(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        # BART's decoder ignores its input at 0.4 (3 distinct summaries of 8 texts); 1.0 gives 8 of 8.
        init_std=1.0,
    )


def build_summarization(out_dir: str) -> str:
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(SEED + 1)
    tokenizer = bart_bpe_tokenizer(VOCAB, POSITIONS)
    config = BartConfig(**tiny_bart_fields(tokenizer), forced_bos_token_id=tokenizer.bos_token_id)
    model = BartForConditionalGeneration(config).eval()
    _generation_config(model, tokenizer, min_new_tokens=4, max_length=12)
    return save(model, tokenizer, out_dir)


def build_translation(out_dir: str, variant: str | None = None) -> str:
    """T5 with task prefixes; variant "mbart": mBART with language codes (src_lang/tgt_lang)."""
    if variant == "mbart":
        return _build_translation_mbart(out_dir)
    if variant is not None:
        raise ValueError(f"translation variants: None (T5) or 'mbart', got {variant!r}")
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(SEED + 2)
    tokenizer = unigram_tokenizer(VOCAB, POSITIONS)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        relative_attention_num_buckets=8,
        feed_forward_proj="relu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        initializer_factor=INIT_STD * 10,
        # As in the real t5-small config: the translation pipeline reads its prefix (and
        # generation settings) from here.
        task_specific_params={
            "summarization": {"prefix": "summarize: ", "num_beams": 2, "min_length": 3},
            "translation_en_to_de": {"prefix": "translate English to German: ", "num_beams": 2},
            "translation_en_to_fr": {"prefix": "translate English to French: ", "num_beams": 2},
        },
    )
    model = T5ForConditionalGeneration(config).eval()
    _generation_config(model, tokenizer, min_new_tokens=4, max_length=12)
    return save(model, tokenizer, out_dir)


def _build_translation_mbart(out_dir: str) -> str:
    from transformers import MBartConfig, MBartForConditionalGeneration

    torch.manual_seed(SEED + 3)
    tokenizer = mbart_tokenizer(VOCAB, POSITIONS)
    config = MBartConfig(**tiny_bart_fields(tokenizer))
    model = MBartForConditionalGeneration(config).eval()
    # Language codes stay allowed: the target code is forced as the first token, and
    # generate() suppresses after forcing, which would leave no token at all.
    codes = set(tokenizer.convert_tokens_to_ids(list(tokenizer.lang_code_to_id)))
    model.generation_config.update(
        suppress_tokens=[t for t in unreadable_tokens(tokenizer) if t not in codes], min_new_tokens=4, max_length=12
    )
    return save(model, tokenizer, out_dir)
