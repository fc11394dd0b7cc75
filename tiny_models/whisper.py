"""A tiny Whisper with the checkpoint configuration of openai/whisper-tiny, built offline.

What is kept from the published checkpoint, because the ASR pipeline and `generate()` read it:

* config.json's structural flags: encoder-decoder, 80 mel bins, 1500 source positions (30 s of
  20 ms frames after the stride-2 conv), 448 target positions, tied output embeddings, no
  embedding scaling, the token roles (pad = bos = eos = <|endoftext|>, decoder start =
  <|startoftranscript|>);
* the WhisperFeatureExtractor defaults as published (80 mels, 16 kHz, hop 160, 30 s chunks,
  n_fft 400, no attention mask);
* generation_config.json: lang_to_id (the 99 languages of the multilingual checkpoints),
  task_to_id, is_multilingual, forced_decoder_ids [[1, None], [2, <|transcribe|>]] (detect the
  language, then transcribe), suppress_tokens (the non-speech symbols as the openai package
  derives them, plus <|startoftranscript|>, <|startoflm|>, <|startofprev|>, <|nocaptions|>),
  begin_suppress_tokens (the space and <|endoftext|>), no_timestamps_token_id,
  prev_sot_token_id, max_initial_timestamp_index 50, max_length 448, alignment_heads (they
  name decoder layers and heads, so the decoder keeps whisper-tiny's 4 layers of 6 heads).

What differs, and why:

* Sizes: d_model 48 and 2 encoder layers (width changes no code path).
* The vocabulary: a byte-level BPE of 1,000 pieces trained on local prose instead of the 50,257
  GPT-2 pieces, followed by Whisper's special tokens in the published order (<|endoftext|>,
  <|startoftranscript|>, the language tokens, <|translate|>, <|transcribe|>, <|startoflm|>,
  <|startofprev|>, <|nocaptions|>, <|notimestamps|>, then the 1,501 timestamps <|0.00|> ...
  <|30.00|>). The ids therefore differ from the checkpoint's; every id in the configs above is
  the same token's id in this vocabulary.
* Random weights with a large initializer range (near-flat logits would make a weak oracle,
  see generation.py), and the timestamp tokens' output embeddings scaled down so that, as a
  trained model does, the decoder writes text between its timestamps instead of a timestamp at
  every step (at 0.5 it closed almost no segment, at 1.0 most segments were empty).
* suppress_tokens also holds the byte-level pieces that decode to U+FFFD or control
  characters, as the other tiny generation models' configs do.
* `max_new_tokens` 24 in the generation config: a random decoder rarely says <|endoftext|>, and
  448 steps per clip would make every test slow. Whisper's generate() takes max_new_tokens over
  max_length, as for the real checkpoint when a caller passes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from tiny_models.tokenizers import corpus

SEED = 30
BPE_VOCAB = 1000
INIT_STD = 0.5
# Timestamp tokens' output embeddings are scaled by this (see the module docstring).
TIMESTAMP_EMBEDDING_SCALE = 0.8
MAX_NEW_TOKENS = 24

# whisper-tiny's alignment_heads (decoder layer, head), used for word-level timestamps.
ALIGNMENT_HEADS = [[2, 2], [3, 0], [3, 2], [3, 3], [3, 4], [3, 5]]
MAX_INITIAL_TIMESTAMP_INDEX = 50
NUM_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|> in 0.02 s steps


@dataclass(frozen=True)
class WhisperProfile:
    """What differs between the published Whisper checkpoints that the builders rebuild."""

    languages: int = 99  # language tokens, in transformers' LANGUAGES order
    no_speech_token: str = "<|nocaptions|>"  # renamed <|nospeech|> in large-v3's vocabulary
    num_mel_bins: int = 80
    d_model: int = 48
    encoder_layers: int = 2
    encoder_heads: int = 6
    decoder_layers: int = 4
    decoder_heads: int = 6
    alignment_heads: tuple[tuple[int, int], ...] = tuple(map(tuple, ALIGNMENT_HEADS))
    # large-v3 also suppresses <|translate|> and <|transcribe|> and pads with the last BPE
    # piece (id 50256), not <|endoftext|> (50257).
    suppress_task_tokens: bool = False
    pad_is_last_piece: bool = False
    # whisper-tiny's generation config forces [[1, None], [2, <|transcribe|>]]; large-v3's holds
    # no forced_decoder_ids (generate() then detects the language and transcribes by default).
    forced_decoder_ids: bool = True
    # Not published (see MAX_NEW_TOKENS): what keeps a test's generate() calls short.
    max_new_tokens: int = MAX_NEW_TOKENS


# openai/whisper-tiny: the builder the seed tests use.
WHISPER_TINY = WhisperProfile()
# openai/whisper-large-v3: 128 mel bins, Cantonese as the 100th language, <|nospeech|>, its
# suppress list and pad token, and its alignment heads, which name decoder layers up to 25 and
# heads up to 18, so the decoder keeps large-v3's 32 layers of 20 heads (2 wide each).
WHISPER_LARGE_V3 = WhisperProfile(
    languages=100,
    no_speech_token="<|nospeech|>",
    num_mel_bins=128,
    d_model=40,
    encoder_layers=2,
    encoder_heads=20,
    decoder_layers=32,
    decoder_heads=20,
    alignment_heads=((7, 0), (10, 17), (12, 18), (13, 12), (16, 1), (17, 14), (19, 11), (21, 4), (24, 1), (25, 6)),
    suppress_task_tokens=True,
    pad_is_last_piece=True,
    forced_decoder_ids=False,
    max_new_tokens=12,  # 32 decoder layers per step
)


def _non_speech_symbols() -> tuple[list[str], set[str]]:
    """The symbols that openai-whisper's Tokenizer.non_speech_tokens suppresses."""
    symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
    symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
    miscellaneous = set("♩♪♫♬♭♮♯")
    return symbols, miscellaneous


def whisper_tokenizer(profile: WhisperProfile = WHISPER_TINY):
    """A WhisperTokenizer: local byte-level BPE plus Whisper's special and timestamp tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AddedToken, WhisperTokenizer
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(
        corpus(),
        trainers.BpeTrainer(
            vocab_size=BPE_VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
        ),
    )
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    # The multilingual checkpoints up to large-v2 list 99 languages; large-v3 adds Cantonese.
    languages = [f"<|{code}|>" for code in list(LANGUAGES)[: profile.languages]]
    specials = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *languages,
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        profile.no_speech_token,
        "<|notimestamps|>",
    ]
    tokenizer = WhisperTokenizer(vocab=model["vocab"], merges=merges, model_max_length=1024)
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    # As in the published tokenizer.json, the timestamps are added tokens but not special ones:
    # decode() drops them by pattern unless asked for offsets.
    tokenizer.add_tokens(
        [AddedToken(f"<|{i * 0.02:.2f}|>", lstrip=False, rstrip=False, normalized=False) for i in range(NUM_TIMESTAMPS)]
    )
    expected = BPE_VOCAB + len(specials) + NUM_TIMESTAMPS
    if len(tokenizer) != expected or tokenizer.convert_tokens_to_ids("<|endoftext|>") != BPE_VOCAB:
        raise RuntimeError(f"tiny Whisper vocabulary has {len(tokenizer)} tokens, expected {expected}")
    return tokenizer


def suppress_tokens(tokenizer, profile: WhisperProfile = WHISPER_TINY) -> list[int]:
    """openai-whisper's non_speech_tokens for this vocabulary, plus the special tokens the
    multilingual checkpoints suppress (transformers' NON_SPEECH_TOKENS_MULTI ends with them;
    large-v3's list also holds <|translate|> and <|transcribe|>)."""
    symbols, miscellaneous = _non_speech_symbols()

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    result = {encode(" -")[0], encode(" '")[0]}
    for symbol in symbols + sorted(miscellaneous):
        for tokens in (encode(symbol), encode(" " + symbol)):
            if len(tokens) == 1 or symbol in miscellaneous:
                result.add(tokens[0])
    tasks = ["<|translate|>", "<|transcribe|>"] if profile.suppress_task_tokens else []
    specials = ["<|startoftranscript|>", *tasks, "<|startoflm|>", "<|startofprev|>", profile.no_speech_token]
    return sorted(result) + tokenizer.convert_tokens_to_ids(specials)


def unreadable_tokens(tokenizer) -> list[int]:
    """Byte-level pieces that decode to U+FFFD or control characters on their own. A random
    decoder picks them as often as any other piece; suppressing them (as the other tiny
    generation models do, see generation.py) keeps transcripts readable."""
    ids = []
    for token_id in range(tokenizer.convert_tokens_to_ids("<|endoftext|>")):
        text = tokenizer.decode([token_id])
        if "\ufffd" in text or any(not (c.isprintable() or c.isspace()) for c in text):
            ids.append(token_id)
    return ids


def feature_extractor(num_mel_bins: int = 80):
    from transformers import WhisperFeatureExtractor

    # The published preprocessor_config.json: the class defaults but for the mel bins (128
    # for large-v3, whose filters the extractor computes for that count).
    return WhisperFeatureExtractor(
        feature_size=num_mel_bins, sampling_rate=16_000, hop_length=160, chunk_length=30, n_fft=400,
        padding_value=0.0, return_attention_mask=False,
    )


def build_whisper(out_dir: str, profile: WhisperProfile = WHISPER_TINY) -> str:
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

    torch.manual_seed(SEED)
    tokenizer = whisper_tokenizer(profile)
    ids = tokenizer.convert_tokens_to_ids
    eos, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    pad = eos - 1 if profile.pad_is_last_piece else eos
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=profile.num_mel_bins,
        d_model=profile.d_model,
        encoder_layers=profile.encoder_layers,
        encoder_attention_heads=profile.encoder_heads,
        encoder_ffn_dim=2 * profile.d_model,
        decoder_layers=profile.decoder_layers,
        decoder_attention_heads=profile.decoder_heads,
        decoder_ffn_dim=2 * profile.d_model,
        max_source_positions=1500,
        max_target_positions=448,
        scale_embedding=False,
        tie_word_embeddings=True,
        pad_token_id=pad,
        bos_token_id=eos,
        eos_token_id=eos,
        decoder_start_token_id=sot,
        begin_suppress_tokens=None,
        init_std=INIT_STD,
        architectures=["WhisperForConditionalGeneration"],
    )
    model = WhisperForConditionalGeneration(config).eval()
    timestamp_begin = ids("<|notimestamps|>") + 1
    with torch.no_grad():
        model.model.decoder.embed_tokens.weight[timestamp_begin:] *= TIMESTAMP_EMBEDDING_SCALE

    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    lang_to_id = {f"<|{code}|>": ids(f"<|{code}|>") for code in list(LANGUAGES)[: profile.languages]}
    model.generation_config = _generation_config(tokenizer, lang_to_id, profile, pad)
    model.save_pretrained(out_dir, safe_serialization=True)
    extractor = feature_extractor(profile.num_mel_bins)
    WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out_dir)
    return out_dir


def _generation_config(tokenizer, lang_to_id: dict[str, int], profile: WhisperProfile, pad: int):
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    eos = ids("<|endoftext|>")
    space = tokenizer.encode(" ", add_special_tokens=False)
    if len(space) != 1:
        raise RuntimeError(f"the space is not one token in the tiny Whisper vocabulary: {space}")
    unreadable = unreadable_tokens(tokenizer)
    return GenerationConfig(
        alignment_heads=[list(head) for head in profile.alignment_heads],
        begin_suppress_tokens=[space[0], eos],
        bos_token_id=eos,
        decoder_start_token_id=ids("<|startoftranscript|>"),
        eos_token_id=eos,
        forced_decoder_ids=[[1, None], [2, ids("<|transcribe|>")]] if profile.forced_decoder_ids else None,
        is_multilingual=True,
        lang_to_id=lang_to_id,
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
        max_length=448,
        max_new_tokens=profile.max_new_tokens,
        no_timestamps_token_id=ids("<|notimestamps|>"),
        pad_token_id=pad,
        prev_sot_token_id=ids("<|startofprev|>"),
        return_timestamps=False,
        suppress_tokens=sorted(set(suppress_tokens(tokenizer, profile)) | set(unreadable)),
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
    )
