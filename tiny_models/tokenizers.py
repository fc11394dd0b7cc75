"""Tokenizers trained in well under a second on prose the Python standard library ships
(pydoc_data.topics), so the tiny models tokenize real English without any download."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def corpus() -> tuple[str, ...]:
    import pydoc_data.topics

    return tuple(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))


def wordpiece_tokenizer(vocab_size: int = 2000):
    """A BERT-style uncased WordPiece tokenizer as a BertTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.train_from_iterator(corpus(), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        do_lower_case=True,
        model_max_length=128,
    )


def byte_level_bpe_tokenizer(vocab_size: int = 1000, model_max_length: int = 128, *, eos_last: bool = False):
    """A GPT-2-style byte-level BPE tokenizer as a GPT2TokenizerFast ('<|endoftext|>' is
    bos, eos and unk; no pad token, as GPT-2 ships). eos_last: '<|endoftext|>' takes the last
    id, after the merges (GPT-2's 50256), instead of id 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2TokenizerFast

    eos = "<|endoftext|>"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(
        corpus(),
        trainers.BpeTrainer(
            vocab_size=vocab_size - eos_last, special_tokens=[] if eos_last else [eos],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
        ),
    )
    if eos_last:
        tok.add_special_tokens([eos])
    return GPT2TokenizerFast(
        tokenizer_object=tok, unk_token=eos, bos_token=eos, eos_token=eos, model_max_length=model_max_length
    )


def bart_bpe_tokenizer(vocab_size: int = 1000, model_max_length: int = 128):
    """A BART/RoBERTa-style byte-level BPE tokenizer ('<s> text </s>') as a BartTokenizerFast.

    Built with `tokenizer_object=`: from vocab/merges files v5 loads only the special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import BartTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        corpus(),
        trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    bos_id, eos_id = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos_id), ("</s>", eos_id)]
    )
    return BartTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=model_max_length,
    )


def train_unigram(specials: list[str], vocab_size: int):
    """A Unigram (sentencepiece-like) model over the prose, specials first."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" {2,}", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    # Every 4th topic (~1/4 of the prose): Unigram training is several times slower than BPE.
    tok.train_from_iterator(
        corpus()[::4],
        trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>", show_progress=False),
    )
    return tok


def unigram_tokenizer(vocab_size: int = 1000, model_max_length: int = 128):
    """A T5-style (sentencepiece-like) Unigram tokenizer, 'text </s>', as a T5TokenizerFast.

    Ids 0/1/2 are <pad>/</s>/<unk> as in T5; no <extra_id_*> sentinels (not needed to generate)."""
    from tokenizers import processors
    from transformers import T5TokenizerFast

    tok = train_unigram(["<pad>", "</s>", "<unk>"], vocab_size)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    return T5TokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=model_max_length,
    )


def mbart_tokenizer(vocab_size: int = 1000, model_max_length: int = 128):
    """An mBART-style tokenizer ('text </s> <src_lang>', fairseq language codes as special
    tokens) as an MBartTokenizerFast built from a locally trained Unigram vocabulary."""
    import json

    from transformers import MBartTokenizerFast

    tok = train_unigram(["<s>", "<pad>", "</s>", "<unk>"], vocab_size)
    pieces = [tuple(p) for p in json.loads(tok.to_str())["model"]["vocab"]]
    return MBartTokenizerFast(vocab=pieces, src_lang="en_XX", model_max_length=model_max_length)
