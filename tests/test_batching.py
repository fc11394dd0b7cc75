"""Unit tests of the micro-batch planners and padding (no weights, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from operators.batching import budget_batches, pad_sequences, padded_batches, padded_canvas, shape_batches


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


def test_shape_batches_group_over_the_whole_call_largest_group_first():
    shapes = ["a", "b", "a", "c", "b", "a"]
    assert shape_batches(shapes, max_rows=8) == [[0, 2, 5], [1, 4], [3]]


# DETR's 800/1333 resize of phone and camera photos: 4:3, 3:2 and 16:9 landscapes, a square,
# 4:3 and 16:9 portraits
LANDSCAPE_43, LANDSCAPE_32, LANDSCAPE_169 = (800, 1067), (800, 1200), (750, 1333)
SQUARE, PORTRAIT_43, PORTRAIT_169 = (800, 800), (1067, 800), (1333, 750)


def test_padded_batches_share_a_canvas_between_similar_aspect_ratios():
    sizes = [LANDSCAPE_43, PORTRAIT_43, LANDSCAPE_169, SQUARE, LANDSCAPE_32, PORTRAIT_169, LANDSCAPE_43]
    batches = padded_batches(sizes, max_pixels=1 << 24, max_rows=64, max_padding=0.25, multiple=32)
    assert _covers(batches, len(sizes))
    # landscapes together (the 4:3 ones are 20% padding on an 800 x 1344 canvas), the square
    # (40%) and the portraits on their own canvases
    assert batches == [[2, 4, 0, 6], [3], [1, 5]]
    for batch in batches:
        height, width = padded_canvas([sizes[i] for i in batch], 32)
        assert all(sizes[i][0] * sizes[i][1] >= 0.75 * height * width for i in batch)


def test_padded_batches_bound_padded_pixels_and_rows():
    sizes = [LANDSCAPE_43] * 10 + [LANDSCAPE_169] * 10
    canvas = 800 * 1344
    batches = padded_batches(sizes, max_pixels=8 * canvas, max_rows=64, max_padding=0.25, multiple=32)
    assert _covers(batches, len(sizes)) and [len(b) for b in batches] == [8, 8, 4]
    for batch in batches:
        height, width = padded_canvas([sizes[i] for i in batch], 32)
        assert len(batch) * height * width <= 8 * canvas
    assert [len(b) for b in padded_batches(sizes, 1 << 30, max_rows=6, max_padding=0.25)] == [6, 6, 6, 2]
    # no padding allowed: equal sizes only; an image over the budget still runs, alone
    assert sorted(map(sorted, padded_batches(sizes, 1 << 30, 64, 0.0))) == [list(range(10)), list(range(10, 20))]
    assert padded_batches([(4000, 4000), (10, 10)], max_pixels=100, max_rows=4, max_padding=0.5) == [[0], [1]]
    assert padded_batches([], 100, 4, 0.25) == []


def test_padded_canvas_rounds_up_only_mixed_sizes():
    assert padded_canvas([(267, 1333), (267, 1333)], 32) == (267, 1333)
    assert padded_canvas([(267, 1333), (305, 1333)], 32) == (320, 1344)
    assert padded_canvas([(267, 1333), (305, 1333)]) == (305, 1333)


def test_padded_batches_reject_bad_bounds():
    for kwargs, message in [
        ({"max_pixels": 0}, "max_pixels"), ({"max_rows": 0}, "max_rows"), ({"max_padding": 1.0}, "max_padding"),
    ]:
        with pytest.raises(ValueError, match=message):
            padded_batches([(1, 1)], **{"max_pixels": 10, "max_rows": 2, "max_padding": 0.1, **kwargs})


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
