"""torch threads for the forward calls that one process runs at once (an offline forward actor's
calls, picked per node by pipelines/hardware.py: on CPU nodes text and audio run 2 calls, each
on half the cores). operators/runtime.py's OperatorRunner owns one; the operator refits the
calling thread's share before each micro-batch (Operator.share_threads).

An actor with N forward calls of T threads owns N x T threads' worth of cores. While
all N calls are in the model each runs on T threads; when fewer are (the job's first and last
blocks, a gap while the next block arrives), the ones running take the idle threads.
The split is redone before every micro-batch, so a call that started alone on 2 threads
drops to 1 within one micro-batch (tens of ms) of a second call arriving.

torch's thread count is per OS thread (OpenMP's nthreads ICV and MKL's local setting), so
each call thread sets its own without touching the others. Without the share, a job's last
call ran on one thread while the other core idled (measured, see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class ThreadShare:
    """`calls` x `per_call` torch threads, split among the forward calls running now."""

    def __init__(self, per_call: int, calls: int):
        if per_call < 1 or calls < 1:
            raise ValueError(f"per_call and calls must be >= 1, got {per_call}, {calls}")
        self.per_call = per_call
        self.total = per_call * calls
        self._running = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Count this thread's forward call as running while the block runs."""
        with self._lock:
            self._running += 1
        try:
            self.fit()  # before the call plans its micro-batches, which are sized per thread
            yield
        finally:
            with self._lock:
                self._running -= 1

    def threads_now(self) -> int:
        """Threads for a call starting a micro-batch now: an equal share, at least per_call."""
        return max(self.per_call, self.total // max(1, self._running))

    def fit(self) -> None:
        """Set the calling thread's torch thread count to its share."""
        import torch

        n = self.threads_now()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
