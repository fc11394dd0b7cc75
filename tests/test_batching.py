"""Unit tests of the micro-batch planners and padding (no weights, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from operators.batching import budget_batches, pad_sequences, shape_batches


def _covers(batches, n):
    flat = sorted(i for b in batches for i in b)
    return flat == list(range(n))


def test_budget_empty_batch():
    assert budget_batches([], budget=100) == []


def test_budget_one_row():
    assert budget_batches([7], budget=100) == [[0]]


def test_budget_smaller_than_one_row_still_yields_every_row_alone():
    batches = budget_batches([50, 60, 10], budget=5)
    assert batches == [[1], [0], [2]]


def test_budget_respects_padded_size_and_max_rows():
    lengths = [3, 10, 4, 9, 1, 2, 10, 8]
    batches = budget_batches(lengths, budget=20, max_rows=3)
    assert _covers(batches, len(lengths))
    for b in batches:
        assert len(b) <= 3
        if len(b) > 1:
            assert len(b) * max(lengths[i] for i in b) <= 20


def test_budget_sorts_by_length_to_cut_padding():
    lengths = [1, 100, 2, 99, 3, 98]
    batches = budget_batches(lengths, budget=300)
    assert [sorted(lengths[i] for i in b) for b in batches] == [[98, 99, 100], [1, 2, 3]]


def test_budget_rejects_nonpositive():
    with pytest.raises(ValueError, match="budget must be >= 1, got 0"):
        budget_batches([1], budget=0)
    with pytest.raises(ValueError, match="max_rows"):
        budget_batches([1], budget=1, max_rows=0)


def test_shape_batches_groups_and_caps():
    shapes = [(3, 224, 224), (3, 800, 600), (3, 224, 224), (3, 224, 224), (3, 800, 600)]
    batches = shape_batches(shapes, max_rows=2)
    assert _covers(batches, len(shapes))
    for b in batches:
        assert len({shapes[i] for i in b}) == 1 and len(b) <= 2
    assert shape_batches([], max_rows=4) == []
    assert shape_batches([(1,)], max_rows=4) == [[0]]


def test_pad_sequences_right_and_left():
    seqs = [np.array([1, 2, 3]), np.array([4])]
    padded, mask = pad_sequences(seqs, pad_value=0)
    assert padded.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    padded, mask = pad_sequences(seqs, pad_value=9, side="left")
    assert padded.tolist() == [[1, 2, 3], [9, 9, 4]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError):
        pad_sequences([], 0)
