"""Micro-batch planning: little padding, bounded memory, original order restored by the caller.

Text and audio rows are sorted by length and cut into micro-batches whose padded size
(rows x longest row) stays within a budget. Images are grouped by their tensor shape so that
models with variable-size inputs (DETR, Mask2Former, GLPN) never pad mixed sizes together.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Hashable, Sequence

import numpy as np


def budget_batches(
    lengths: Sequence[int], budget: int, max_rows: int | None = None
) -> list[list[int]]:
    """Split row indices into micro-batches by a padded-size budget.

    Rows are sorted by length (longest first, so a too-large batch fails early), and a batch
    grows while `rows * longest <= budget` and `rows <= max_rows`. A row longer than the
    budget on its own still gets a batch of one: the budget bounds padding, never drops rows.
    Returns lists of indices into `lengths`; together they cover every index exactly once.
    """
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = max(int(lengths[i]), 1)
        new_longest = max(longest, n)
        full = max_rows is not None and len(current) >= max_rows
        if current and (full or new_longest * (len(current) + 1) > budget):
            batches.append(current)
            current, new_longest = [], n
        current.append(i)
        longest = new_longest
    if current:
        batches.append(current)
    return batches


def shape_batches(shapes: Sequence[Hashable], max_rows: int) -> list[list[int]]:
    """Group row indices by exact shape, then cut each group into batches of at most max_rows."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, shape in enumerate(shapes):
        groups[shape].append(i)
    return [
        members[start : start + max_rows]
        for members in groups.values()
        for start in range(0, len(members), max_rows)
    ]


def pad_sequences(
    sequences: Sequence[np.ndarray], pad_value: int | float = 0, side: str = "right", dtype=None
) -> tuple[np.ndarray, np.ndarray]:
    """Pad 1-D (or N-D along axis 0) arrays to the longest; returns (padded, attention_mask)."""
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    if not sequences:
        raise ValueError("pad_sequences needs at least one sequence")
    arrays = [np.asarray(s) for s in sequences]
    longest = max(a.shape[0] for a in arrays)
    out_dtype = dtype or arrays[0].dtype
    padded = np.full((len(arrays), longest, *arrays[0].shape[1:]), pad_value, dtype=out_dtype)
    mask = np.zeros((len(arrays), longest), dtype=np.int64)
    for row, a in enumerate(arrays):
        n = a.shape[0]
        if side == "right":
            padded[row, :n] = a
            mask[row, :n] = 1
        else:
            padded[row, longest - n :] = a
            mask[row, longest - n :] = 1
    return padded, mask
