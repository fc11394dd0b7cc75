"""The deterministic gallery sample: rows ranked by a keyed hash of their id.

Ranking by id rather than by position gives the same rows for the same seed however Ray
split the output into files, on a rerun or after a resume, and the same ids in every task's
gallery of a multi-task job (a row that succeeded everywhere shows up in each).
"""

from __future__ import annotations

import hashlib
from typing import Any


def rank(row_id: Any, seed: int) -> bytes:
    return hashlib.blake2b(str(row_id).encode("utf-8"), digest_size=8, key=str(seed).encode("ascii")).digest()


def sample_indices(ids: list[Any], n: int, seed: int = 0) -> list[int]:
    """Indices of `n` of `ids` (all when there are fewer), ordered by id for a stable page."""
    if n <= 0:
        return []
    chosen = sorted(range(len(ids)), key=lambda i: rank(ids[i], seed))[:n]
    return sorted(chosen, key=lambda i: str(ids[i]))
