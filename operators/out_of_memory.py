"""Device out-of-memory in forward: recognize it, free the cache, and remember what fit.

A micro-batch that runs out of device memory is not a bad row: the same rows fit in smaller
micro-batches. `Operator._forward_isolated` halves a micro-batch that raised an OOM and tries
each half again, down to one row; only a row that runs out of memory alone becomes a row
error, of kind `oom` ("oom: ..."). The operator then keeps a lowered budget
(`MicroBatchScale`): every later micro-batch the planner cuts is split to the fraction of its
rows that worked, which is the token, sample or pixel budget and `max_batch_rows` scaled down
by that fraction, whatever the task's planner. It lasts for the operator's life (an actor's,
a replica's): memory that ran out once, at a given batch shape, runs out again.
"""

from __future__ import annotations

import math
import threading

# PyTorch before 2.1 raised a plain RuntimeError for CUDA OOMs, and some kernels (cuBLAS
# workspaces, custom extensions) still re-raise the allocator's message as one.
CUDA_OOM_MESSAGE = "CUDA out of memory"


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is a CUDA out-of-memory error (torch.cuda.OutOfMemoryError, or the
    generic RuntimeError carrying the allocator's message)."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and CUDA_OOM_MESSAGE in str(exc)


def free_device_memory(device) -> None:
    """Return the failed micro-batch's cached blocks to CUDA so the smaller retry can use
    them. Call it after the exception is gone: its traceback holds the batch's tensors."""
    if getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.empty_cache()


class MicroBatchScale:
    """The fraction of each planned micro-batch that forward runs at once (1.0 until an OOM).

    One instance is shared by an operator and its `with_options` copies (they share the
    model, so they share its memory), and by concurrent forward calls of one actor; a lock
    keeps the lowering monotonic.
    """

    def __init__(self) -> None:
        self.value = 1.0
        self._lock = threading.Lock()

    def rows(self, planned: int) -> int:
        """Rows per sub-batch for a planned micro-batch of `planned` rows (at least 1)."""
        # The epsilon keeps e.g. 3/5 * 5 from flooring to 2.
        return max(1, min(planned, math.floor(planned * self.value + 1e-9)))

    def lower(self, rows: int, planned: int) -> None:
        """Record that sub-batches of `rows` of a planned `planned` are the most to try now."""
        with self._lock:
            self.value = min(self.value, rows / planned)
