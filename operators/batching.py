"""Micro-batch planning: little padding, bounded memory, original order restored by the caller.

Text and audio rows are sorted by length and cut into micro-batches whose padded size
(rows x longest row) stays within a budget. Images go one of two ways: models that read a
pixel mask (DETR) share micro-batches between images of similar aspect ratio, padded
bottom/right to the batch's largest height and width (`padded_batches`); the others (GLPN)
batch only images of one exact tensor shape (`shape_batches`).
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
    """Group row indices by exact shape over the whole call, then cut each group into batches
    of at most max_rows. The largest groups come first, so a call's full batches run before
    its stragglers."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, shape in enumerate(shapes):
        groups[shape].append(i)
    ordered = sorted(groups.values(), key=lambda members: (-len(members), members[0]))
    return [members[start : start + max_rows] for members in ordered for start in range(0, len(members), max_rows)]


def padded_batches(
    sizes: Sequence[tuple[int, int]], max_pixels: int, max_rows: int, max_padding: float, multiple: int = 1
) -> list[list[int]]:
    """Micro-batches of (height, width) images that are padded to the batch's largest height
    and largest width.

    Rows are sorted by aspect ratio (height / width, then larger first), so neighbours need
    little padding, and a batch grows while its padded canvas (rows x largest height x
    largest width) stays within `max_pixels`, it holds at most `max_rows`, and no row in it
    would be more than `max_padding` (a share of the canvas) padding. The canvas of a batch
    of mixed sizes is rounded up to a multiple of `multiple` (see `padded_canvas`). A row
    larger than the budget still runs, alone. Returns lists of indices into `sizes`, covering
    each once.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    if not 0 <= max_padding < 1:
        raise ValueError(f"max_padding must be in [0, 1), got {max_padding}")
    dims = [(max(int(h), 1), max(int(w), 1)) for h, w in sizes]
    order = sorted(range(len(dims)), key=lambda i: (dims[i][0] / dims[i][1], -dims[i][0] * dims[i][1], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        candidate = current + [i]
        height, width = padded_canvas([dims[j] for j in candidate], multiple)
        canvas = height * width
        fits = (
            len(candidate) <= max_rows
            and len(candidate) * canvas <= max_pixels
            and min(dims[j][0] * dims[j][1] for j in candidate) >= (1 - max_padding) * canvas
        )
        if current and not fits:
            batches.append(current)
            candidate = [i]
        current = candidate
    if current:
        batches.append(current)
    return batches


def padded_canvas(sizes: Sequence[tuple[int, int]], multiple: int = 1) -> tuple[int, int]:
    """The (height, width) that images of these sizes are padded to in one micro-batch: the
    largest of each; where sizes differ, rounded up to a multiple of `multiple`. DETR
    downsamples its pixel mask to the feature map by nearest-neighbour sampling, so on a canvas
    that is a multiple of the backbone's stride it marks valid exactly the feature cells that
    the image alone would have; on another canvas it can mark one more row or column, whose
    features are all padding."""
    height, width = max(int(h) for h, _ in sizes), max(int(w) for _, w in sizes)
    if all((int(h), int(w)) == (height, width) for h, w in sizes):
        return height, width
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


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
