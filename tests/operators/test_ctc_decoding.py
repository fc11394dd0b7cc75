"""CtcDecoder equals Wav2Vec2CTCTokenizer.decode(ids, skip_special_tokens=False) on frame ids
that exercise every step the tokenizer takes: runs of repeats, blanks between equal letters,
the word delimiter, special and multi-character tokens, ids the vocab does not hold, lower
casing and the clean-up of spaces before punctuation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from operators.ctc_decoding import CtcDecoder

VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "A", "B", "C", "'", ".", "?", "N", "T", "<laugh>"]


def tokenizer(tmp_path, **kwargs):
    from transformers import Wav2Vec2CTCTokenizer

    vocab_file = tmp_path / "vocab.json"
    vocab_file.write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}))
    return Wav2Vec2CTCTokenizer(str(vocab_file), word_delimiter_token="|", **kwargs)


def frame_ids(rng: np.random.Generator, n: int, high: int) -> np.ndarray:
    """Frame ids with CTC-like runs: each id repeated 1-4 times, blanks common."""
    ids = rng.integers(0, high, size=n)
    ids[rng.random(n) < 0.3] = 0
    return np.repeat(ids, rng.integers(1, 5, size=n))


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"do_lower_case": True}, {"clean_up_tokenization_spaces": True}, {"replace_word_delimiter_char": "_"}],
    ids=["default", "lower-case", "clean-up", "delimiter-char"],
)
def test_table_decode_equals_tokenizer_decode(tmp_path, kwargs):
    tok = tokenizer(tmp_path, **kwargs)
    tok.add_tokens(["<extra>"])  # an added token past the vocab: decoded by its content
    decoder = CtcDecoder(tok)
    assert decoder._table is not None, "a plain Wav2Vec2CTCTokenizer should be table-decoded"
    rng = np.random.default_rng(0)
    cases = [frame_ids(rng, int(n), len(tok)) for n in rng.integers(0, 400, size=200)]
    cases += [
        np.array([], dtype=np.int64),
        np.array([0, 0, 0]),  # blanks only
        np.array([5, 5, 0, 5, 4, 4, 6]),  # A A _ A | | B -> "AA B"
        np.array([4, 5, 4]),  # leading/trailing delimiter: stripped
        np.array([5, 4, 9, 4, 10, 4, 8, 4, 11, 8, 12]),  # spaces before punctuation
    ]
    for ids in cases:
        assert decoder.decode(ids) == tok.decode(ids, skip_special_tokens=False), ids.tolist()


def test_ids_outside_the_table_fall_back_to_the_tokenizer(tmp_path):
    tok = tokenizer(tmp_path)
    decoder = CtcDecoder(tok)
    ids = np.array([5, 6, len(VOCAB) + 7, 7])  # a head wider than the vocab: <unk> for that frame
    assert decoder.decode(ids) == tok.decode(ids, skip_special_tokens=False) == "AB<unk>C"


def test_other_tokenizer_classes_keep_their_own_decode(tmp_path):
    from transformers import Wav2Vec2CTCTokenizer

    class Custom(Wav2Vec2CTCTokenizer):
        def decode(self, ids, **kwargs):
            return "custom"

    vocab_file = tmp_path / "vocab.json"
    vocab_file.write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}))
    decoder = CtcDecoder(Custom(str(vocab_file)))
    assert decoder._table is None
    assert decoder.decode(np.array([5, 6])) == "custom"
