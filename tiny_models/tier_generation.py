"""Tiny models rebuilding the published configurations of the generation families users bring most
(translation, summarization and text-generation), offline. See checkpoints.py for the rules a builder follows.

Each builder writes the published config.json flags and generation_config.json (token ids, beams,
lengths, forced tokens, eos lists, penalties) and a tokenizer of the published class with the
published special tokens and language codes, trained locally on the standard library's prose.
Only widths, layer counts and the vocabulary of ordinary pieces shrink, so every id that the
language-code and length logic reads sits where the published tokenizer puts it relative to the
vocabulary (M2M100's '__de__' after the pieces, NLLB's 'deu_Latn' among 202 codes, Qwen's
<|im_end|> after the byte-level merges).

The weights are drawn at a wide range (random weights at the published 0.02 give near-flat logits:
greedy search repeats one token) and config.json keeps the published initializer value.
"""

from __future__ import annotations

import io
import json
import os
from typing import Callable

import torch

from tiny_models.checkpoints import SEED, write_json
from tiny_models.generation import save
from tiny_models.tokenizers import corpus

WIDTH = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
             encoder_ffn_dim=64, decoder_ffn_dim=64)


def _lines(step: int = 4) -> list[str]:
    return [line for topic in corpus()[::step] for line in topic.splitlines() if line.strip()]


def _sentencepiece(vocab_size: int, model_type: str, **kwargs) -> bytes:
    """A sentencepiece model (the .spm / sentencepiece.bpe.model file of the fairseq and Marian
    families) trained in well under a second on the prose."""
    import sentencepiece

    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_lines()), model_writer=buffer, vocab_size=vocab_size, model_type=model_type,
        character_coverage=1.0, minloglevel=2, **kwargs,
    )
    return buffer.getvalue()


def _spm_pieces(model: bytes) -> list[str]:
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_proto=model)
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def _trained_bpe(specials: list[str], vocab_size: int, byte_level: bool) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """vocab and merges of a BPE trained on the prose: byte-level (GPT-2/Qwen) or over
    sentencepiece-style '▁' words (NLLB, Llama)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if byte_level:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        alphabet = []
    tok.train_from_iterator(
        corpus()[::2],
        trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet, show_progress=False),
    )
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def _generation_config(model, published: dict) -> None:
    """The published generation_config.json, and nothing else (from_model_config would copy
    the config's legacy generation keys too)."""
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(**published)


def _portable(out_dir: str, **drop_or_set) -> None:
    """Keys of tokenizer_config.json set (value) or removed (None: the published file lacks
    it or holds null), where v5 writes the file otherwise than the published one."""
    path = os.path.join(out_dir, "tokenizer_config.json")
    with open(path) as f:
        config = json.load(f)
    for key, value in drop_or_set.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    write_json(path, config)


# ---------------------------------------------------------------------------- translation


def build_m2m100_418m(out_dir: str) -> str:
    """facebook/m2m100_418M: M2M100Tokenizer (sentencepiece.bpe.model + vocab.json, <s>/<pad>/</s>/<unk>
    = 0-3, then the 100 '__xx__' language tokens and 8 made-up words after the pieces; the
    pipeline takes 'de' and forces '__de__'), relu, scaled embeddings, 1024 positions, layerdrop
    0.05, and the generation config as published: decoder start 2 (</s>), num_beams 5,
    max_length 200, early_stopping. Shrunk: d_model 32, 2 + 2 layers, ~1000 pieces."""
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

    torch.manual_seed(SEED + 40)
    spm_model = _sentencepiece(1000, "bpe", unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for piece in _spm_pieces(spm_model):
        vocab.setdefault(piece, len(vocab))
    scratch = os.path.join(out_dir, "_spm")
    os.makedirs(scratch, exist_ok=True)
    with open(os.path.join(scratch, "sentencepiece.bpe.model"), "wb") as f:
        f.write(spm_model)
    write_json(os.path.join(scratch, "vocab.json"), vocab)
    tokenizer = M2M100Tokenizer(
        os.path.join(scratch, "vocab.json"), os.path.join(scratch, "sentencepiece.bpe.model"),
        src_lang=None, tgt_lang=None, language_codes="m2m100", num_madeup_words=8, model_max_length=1024,
    )
    config = M2M100Config(
        vocab_size=tokenizer.encoder_size + len(tokenizer.lang_code_to_id) + tokenizer.num_madeup_words,
        max_position_embeddings=1024, **WIDTH, encoder_layerdrop=0.05, decoder_layerdrop=0.05,
        activation_function="relu", dropout=0.1, attention_dropout=0.1, activation_dropout=0.0,
        scale_embedding=True, use_cache=True, is_encoder_decoder=True,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, init_std=1.0,
    )
    model = M2M100ForConditionalGeneration(config).eval()
    model.config.init_std = 0.02
    _generation_config(model, {
        "bos_token_id": 0, "decoder_start_token_id": 2, "early_stopping": True, "eos_token_id": 2,
        "max_length": 200, "num_beams": 5, "pad_token_id": 1,
    })
    save(model, tokenizer, out_dir)
    # As published: the language tokens listed as additional special tokens (v5 writes none),
    # so that decoding skips the forced '__de__' in both transformers versions.
    _portable(
        out_dir, additional_special_tokens=list(tokenizer.lang_token_to_id), src_lang=None, tgt_lang=None, backend=None
    )
    for name in os.listdir(scratch):
        os.remove(os.path.join(scratch, name))
    os.rmdir(scratch)
    return out_dir


def build_nllb_200_distilled_600m(out_dir: str) -> str:
    """facebook/nllb-200-distilled-600M: the M2M100 architecture with NllbTokenizer ('eng_Latn text
    </s>' inputs, legacy_behaviour false; the 202 FLORES-200 codes such as 'deu_Latn' and <mask>
    after the pieces; model_max_length 1024), scaled embeddings, relu, and the generation config
    as published: decoder start 2, max_length 200, no num_beams (the pipeline's 4 applies).
    Shrunk: d_model 32, 2 + 2 layers, ~1000 BPE pieces."""
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    torch.manual_seed(SEED + 41)
    vocab, merges = _trained_bpe(["<s>", "<pad>", "</s>", "<unk>"], 1000, byte_level=False)
    tokenizer = NllbTokenizer(vocab=vocab, merges=merges, src_lang="eng_Latn", legacy_behaviour=False, model_max_length=1024)
    config = M2M100Config(
        vocab_size=len(tokenizer), max_position_embeddings=1024, **WIDTH, encoder_layerdrop=0.0, decoder_layerdrop=0.0,
        activation_function="relu", dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, scale_embedding=True,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, init_std=1.0,
        tokenizer_class="NllbTokenizer", max_length=200,
    )
    model = M2M100ForConditionalGeneration(config).eval()
    model.config.init_std = 0.02
    _generation_config(model, {"bos_token_id": 0, "decoder_start_token_id": 2, "eos_token_id": 2, "max_length": 200, "pad_token_id": 1})
    return save(model, tokenizer, out_dir)


def build_mbart_large_50_mmt(out_dir: str) -> str:
    """facebook/mbart-large-50-many-to-many-mmt: MBart50Tokenizer ('en_XX text </s>' inputs, the 52
    mBART-50 codes such as 'de_DE' and <mask> after the pieces), gelu, scaled embeddings, and
    the generation config as published: decoder start 2, forced EOS 2, num_beams 5, max_length
    200, early_stopping. Shrunk: d_model 32, 2 + 2 layers, ~1000 Unigram pieces."""
    from transformers import MBart50Tokenizer, MBartConfig, MBartForConditionalGeneration

    from tiny_models.tokenizers import train_unigram

    torch.manual_seed(SEED + 42)
    tok = train_unigram(["<unk>", "<s>", "</s>"], 1000)  # sentencepiece's order, which MBart50Tokenizer reorders
    pieces = [tuple(p) for p in json.loads(tok.to_str())["model"]["vocab"]]
    tokenizer = MBart50Tokenizer(vocab=pieces, src_lang="en_XX", model_max_length=1024)
    config = MBartConfig(
        vocab_size=len(tokenizer), max_position_embeddings=1024, **WIDTH, activation_function="gelu",
        dropout=0.1, attention_dropout=0.0, activation_dropout=0.0, scale_embedding=True,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2, init_std=1.0,
    )
    model = MBartForConditionalGeneration(config).eval()
    model.config.init_std = 0.02
    _generation_config(model, {
        "bos_token_id": 0, "decoder_start_token_id": 2, "early_stopping": True, "eos_token_id": 2,
        "forced_eos_token_id": 2, "max_length": 200, "num_beams": 5, "pad_token_id": 1,
    })
    return save(model, tokenizer, out_dir)


def build_opus_mt_en_de(out_dir: str) -> str:
    """Helsinki-NLP/opus-mt-en-de: MarianTokenizer (source.spm and target.spm, one shared vocab.json
    with </s> = 0, <unk> = 1 and <pad> LAST, which is also the decoder start), swish, scaled
    embeddings, 512 static positions, shared embeddings, and the generation config as published:
    bad_words_ids [[pad]], forced EOS 0, num_beams 4, max_length 512, renormalize_logits.
    Shrunk: d_model 32, 2 + 2 layers, ~1000 pieces."""
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    torch.manual_seed(SEED + 43)
    spm_model = _sentencepiece(1000, "unigram", unk_id=1, eos_id=0, bos_id=-1, pad_id=-1)
    scratch = os.path.join(out_dir, "_spm")
    os.makedirs(scratch, exist_ok=True)
    for name in ("source.spm", "target.spm"):
        with open(os.path.join(scratch, name), "wb") as f:
            f.write(spm_model)
    vocab = {"</s>": 0, "<unk>": 1}
    for piece in _spm_pieces(spm_model):
        vocab.setdefault(piece, len(vocab))
    vocab["<pad>"] = len(vocab)
    write_json(os.path.join(scratch, "vocab.json"), vocab)
    tokenizer = MarianTokenizer(
        os.path.join(scratch, "source.spm"), os.path.join(scratch, "target.spm"), os.path.join(scratch, "vocab.json"),
        source_lang="en", target_lang="de", model_max_length=512,
    )
    pad = vocab["<pad>"]
    config = MarianConfig(
        vocab_size=len(vocab), decoder_vocab_size=len(vocab), max_position_embeddings=512, **WIDTH,
        activation_function="swish", dropout=0.1, attention_dropout=0.0, activation_dropout=0.0, scale_embedding=True,
        share_encoder_decoder_embeddings=True, pad_token_id=pad, eos_token_id=0, bos_token_id=0,
        decoder_start_token_id=pad, forced_eos_token_id=0, init_std=1.0,
    )
    model = MarianMTModel(config).eval()
    model.config.init_std = 0.02
    _generation_config(model, {
        "bad_words_ids": [[pad]], "bos_token_id": 0, "decoder_start_token_id": pad, "eos_token_id": 0,
        "forced_eos_token_id": 0, "max_length": 512, "num_beams": 4, "pad_token_id": pad, "renormalize_logits": True,
    })
    save(model, tokenizer, out_dir)
    for name in os.listdir(scratch):
        os.remove(os.path.join(scratch, name))
    os.rmdir(scratch)
    return out_dir


# ---------------------------------------------------------------------------- summarization


def build_distilbart_cnn_12_6(out_dir: str) -> str:
    """sshleifer/distilbart-cnn-12-6: BART with 12 encoder and 6 decoder layers (the asymmetry kept as
    2 + 1), the CNN summarization settings in config.json and its task_specific_params (num_beams
    4, length_penalty 2.0, max_length 142, min_length 56, no_repeat_ngram_size 3, early_stopping,
    prefix " "), forced BOS 0 / EOS 2, and NO generation_config.json, as published: the generation config comes from
    the model config. Shrunk: d_model 32, a local 1000-token byte-level BPE."""
    from transformers import BartConfig, BartForConditionalGeneration

    from tiny_models.tokenizers import bart_bpe_tokenizer

    torch.manual_seed(SEED + 44)
    tokenizer = bart_bpe_tokenizer(1000, 1024)
    summarization = {
        "early_stopping": True, "length_penalty": 2.0, "max_length": 142, "min_length": 56,
        "no_repeat_ngram_size": 3, "num_beams": 4,
    }
    published = {
        "architectures": ["BartForConditionalGeneration"], "model_type": "bart", "activation_function": "gelu",
        "activation_dropout": 0.0, "attention_dropout": 0.0, "dropout": 0.1, "add_bias_logits": False,
        "add_final_layer_norm": False, "normalize_before": False, "normalize_embedding": True,
        "scale_embedding": False, "static_position_embeddings": False, "extra_pos_embeddings": 2,
        "max_position_embeddings": 1024, "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2,
        "decoder_start_token_id": 2, "is_encoder_decoder": True, "init_std": 0.02, "output_past": True,
        # The legacy flag beside the ids it became: 4.57's BartConfig defaults forced_eos_token_id
        # to 2 where config.json omits it, v5's loader reads only what the file holds.
        "force_bos_token_to_be_generated": True, "forced_bos_token_id": 0, "forced_eos_token_id": 2,
        "prefix": " ", "task_specific_params": {"summarization": summarization}, **summarization,
        "vocab_size": len(tokenizer), "d_model": 32, "encoder_layers": 2, "decoder_layers": 1,
        "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
        "num_hidden_layers": 2,
    }
    model = BartForConditionalGeneration(BartConfig.from_dict({**published, "init_std": 1.0})).eval()
    save(model, tokenizer, out_dir)
    os.remove(os.path.join(out_dir, "generation_config.json"))
    write_json(os.path.join(out_dir, "config.json"), published)
    return out_dir


def build_pegasus_xsum(out_dir: str) -> str:
    """google/pegasus-xsum: PegasusTokenizer (<pad> 0 = decoder start, </s> 1, <mask_1>, <mask_2>, the
    <unk_2>..<unk_102> fillers, so the sentencepiece pieces start at offset 103; model_max_length
    512), sinusoidal positions, scaled embeddings, relu, and the generation config as published:
    num_beams 8, length_penalty 0.6, max_length 64, forced EOS 1; task_specific_params per
    dataset (summarization_xsum, ...), which pipeline("summarization") does not read. Shrunk:
    d_model 32, 2 + 2 layers, ~1000 Unigram pieces."""
    from transformers import PegasusConfig, PegasusForConditionalGeneration, PegasusTokenizer

    from tiny_models.tokenizers import train_unigram

    torch.manual_seed(SEED + 47)
    tok = train_unigram(["<pad>", "</s>", "<unk>"], 1000)
    pieces = [tuple(p) for p in json.loads(tok.to_str())["model"]["vocab"]][3:]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<mask_1>", 0.0), ("<mask_2>", 0.0)]
    vocab += [(f"<unk_{i}>", -100.0) for i in range(2, 103)] + [("<unk>", 0.0)] + pieces
    tokenizer = PegasusTokenizer(vocab=vocab, model_max_length=512)
    assert tokenizer.convert_tokens_to_ids(["<pad>", "</s>", "<mask_2>", "<unk>"]) == [0, 1, 3, 105]
    xsum = {"length_penalty": 0.6, "max_length": 64, "max_position_embeddings": 512}
    config = PegasusConfig(
        vocab_size=len(tokenizer), max_position_embeddings=512, **WIDTH, activation_function="relu",
        dropout=0.1, attention_dropout=0.1, activation_dropout=0.1, scale_embedding=True,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, forced_eos_token_id=1, init_std=1.0,
        task_specific_params={
            "summarization_xsum": xsum,
            "summarization_cnn_dailymail": {"length_penalty": 0.8, "max_length": 128, "max_position_embeddings": 1024},
        },
    )
    model = PegasusForConditionalGeneration(config).eval()
    model.config.init_std = 0.02
    _generation_config(model, {
        "bos_token_id": 0, "decoder_start_token_id": 0, "eos_token_id": 1, "forced_eos_token_id": 1,
        "length_penalty": 0.6, "max_length": 64, "num_beams": 8, "pad_token_id": 0,
    })
    return save(model, tokenizer, out_dir)


# ---------------------------------------------------------------------------- text-generation

QWEN_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
]
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_qwen25_05b_instruct(out_dir: str) -> str:
    """Qwen/Qwen2.5-0.5B-Instruct: Qwen2Tokenizer (byte-level BPE, no BOS added, <|endoftext|> right after
    the merges then <|im_start|>/<|im_end|> and the other specials; eos <|im_end|>, pad
    <|endoftext|>, model_max_length 131072), 32768 positions, rope_theta 1e6, grouped KV heads,
    qkv bias, tied embeddings, a vocabulary padded past the tokenizer, and the generation config
    as published: eos list [<|im_end|>, <|endoftext|>], pad <|endoftext|>, do_sample,
    repetition_penalty 1.1, temperature 0.7, top_p 0.8, top_k 20. Shrunk: hidden 32, 2 layers,
    ~1000 merges."""
    from transformers import AddedToken, Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

    torch.manual_seed(SEED + 45)
    vocab, merges = _trained_bpe([], 1000, byte_level=True)
    first = len(vocab)
    vocab.update({token: first + i for i, token in enumerate(QWEN_SPECIALS)})  # their published order
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        errors="replace", model_max_length=131072, split_special_tokens=False, chat_template=QWEN_CHAT_TEMPLATE,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken(t, special=True) for t in QWEN_SPECIALS]})
    ids = tokenizer.convert_tokens_to_ids(QWEN_SPECIALS[:3])
    assert ids == [first, first + 1, first + 2], ids
    config = Qwen2Config(
        vocab_size=-(-len(tokenizer) // 128) * 128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768, max_window_layers=21,
        rms_norm_eps=1e-6, rope_theta=1000000.0, sliding_window=32768, use_sliding_window=False, tie_word_embeddings=True,
        hidden_act="silu", attention_dropout=0.0, bos_token_id=ids[0], eos_token_id=ids[2], use_cache=True,
        initializer_range=0.4,
    )
    model = Qwen2ForCausalLM(config).eval()
    model.config.initializer_range = 0.02
    _generation_config(model, {
        "bos_token_id": ids[0], "pad_token_id": ids[0], "do_sample": True, "eos_token_id": [ids[2], ids[0]],
        "repetition_penalty": 1.1, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
    })
    return save(model, tokenizer, out_dir)


TINYLLAMA_CHAT_TEMPLATE = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)


def build_tinyllama_chat(out_dir: str) -> str:
    """TinyLlama/TinyLlama-1.1B-Chat-v1.0: LlamaTokenizer (<unk>/<s>/</s> = 0/1/2, the 256 byte-fallback
    tokens, then the merges; BOS added, pad </s>, model_max_length 2048, padding side right),
    2048 positions, rope_theta 10000, grouped KV heads, untied embeddings, and the generation
    config as published: bos 1, eos 2, pad 0 and max_length 2048, a TOTAL length that generate()
    counts over the prompt (and, batched, over its left padding). Shrunk: hidden 32, 2 layers,
    ~1000 merges."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    torch.manual_seed(SEED + 46)
    trained, merges = _trained_bpe(["<unk>", "<s>", "</s>"], 1000, byte_level=False)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for piece in trained:
        vocab.setdefault(piece, len(vocab))
    tokenizer = LlamaTokenizer(
        vocab=vocab, merges=merges, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>",
        legacy=False, add_bos_token=True, add_eos_token=False, model_max_length=2048, padding_side="right",
        chat_template=TINYLLAMA_CHAT_TEMPLATE,
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0, hidden_act="silu",
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, use_cache=True, attention_bias=False,
        initializer_range=0.4,
    )
    model = LlamaForCausalLM(config).eval()
    model.config.initializer_range = 0.02
    _generation_config(model, {"bos_token_id": 1, "eos_token_id": 2, "max_length": 2048, "pad_token_id": 0})
    return save(model, tokenizer, out_dir)


# hub id -> (task, builder(out_dir) -> out_dir)
CHECKPOINTS: dict[str, tuple[str, Callable[[str], str]]] = {
    "facebook/m2m100_418M": ("translation", build_m2m100_418m),
    "facebook/nllb-200-distilled-600M": ("translation", build_nllb_200_distilled_600m),
    "facebook/mbart-large-50-many-to-many-mmt": ("translation", build_mbart_large_50_mmt),
    "Helsinki-NLP/opus-mt-en-de": ("translation", build_opus_mt_en_de),
    "sshleifer/distilbart-cnn-12-6": ("summarization", build_distilbart_cnn_12_6),
    "google/pegasus-xsum": ("summarization", build_pegasus_xsum),
    "Qwen/Qwen2.5-0.5B-Instruct": ("text-generation", build_qwen25_05b_instruct),
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": ("text-generation", build_tinyllama_chat),
}
