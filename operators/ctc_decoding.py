"""Greedy CTC decoding as array operations, equal to `Wav2Vec2CTCTokenizer.decode`.

The tokenizer decodes one frame id at a time in Python (convert_ids_to_tokens, groupby, a
filter and a join): ~5 ms for a 30 s clip's 1,500 frames, 16% of a CPU forward call of the
benchmark's ASR model, and far more than the forward itself on a GPU. Here the ids become
indices into a table of the tokenizer's own strings, repeats collapse with one comparison,
and one join builds the text; the remaining steps (strip, lower case, clean-up) are the
tokenizer's own code.

Only the plain `Wav2Vec2CTCTokenizer` is table-decoded: a subclass (phoneme tokenizers) may
decode differently, so it keeps its own `decode`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class CtcDecoder:
    """`decode(ids)` == `tokenizer.decode(ids, skip_special_tokens=False)`, for a Wav2Vec2 CTC tokenizer."""

    def __init__(self, tokenizer: Any):
        from transformers import Wav2Vec2CTCTokenizer

        self._tokenizer = tokenizer
        self._table: np.ndarray | None = None
        if type(tokenizer) is Wav2Vec2CTCTokenizer:
            self._table, self._strings = _token_table(tokenizer)

    def decode(self, ids: np.ndarray) -> str:
        ids = np.asarray(ids, dtype=np.int64)
        table = self._table
        if table is None or (ids.size and (ids.min() < 0 or ids.max() >= len(table))):
            return self._tokenizer.decode(ids, skip_special_tokens=False)
        tok = self._tokenizer
        if ids.size == 0:
            return ""  # the tokenizer returns "" for no tokens, before strip and clean-up
        tokens = table[ids]
        # CTC grouping: a run of equal tokens (by string, as groupby sees them) counts once.
        tokens = tokens[np.concatenate(([True], tokens[1:] != tokens[:-1]))]
        text = "".join(self._strings[tokens].tolist()).strip()
        if tok.do_lower_case:
            text = text.lower()
        if tok.clean_up_tokenization_spaces:
            text = tok.clean_up_tokenization(text)
        return text


def _token_table(tokenizer: Any) -> tuple[np.ndarray, np.ndarray]:
    """id -> index of its token string, and each string as it appears in the text: the
    blank (pad) as "", the word delimiter as its replacement character."""
    decoder = tokenizer.decoder
    added = {i: t.content for i, t in tokenizer.added_tokens_decoder.items()}
    size = 1 + max([*decoder, *added, -1])
    tokens = [
        decoder[i] if i in decoder else added[i] if i in added else tokenizer.unk_token for i in range(size)
    ]
    distinct = list(dict.fromkeys(tokens))
    index = {t: k for k, t in enumerate(distinct)}
    pad, delimiter = tokenizer.pad_token, tokenizer.word_delimiter_token
    shown = ["" if t == pad else tokenizer.replace_word_delimiter_char if t == delimiter else t for t in distinct]
    return np.array([index[t] for t in tokens], dtype=np.int64), np.array(shown, dtype=object)
