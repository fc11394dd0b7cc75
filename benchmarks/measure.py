"""What the benchmark measures: wall time, peak resident memory of the whole process tree,
object-store spilling, and device utilisation inside forward actors."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Measurement:
    """One competitor's run over one workload."""

    competitor: str
    items: int
    seconds: float
    peak_rss_bytes: int | None = None
    spilled_bytes: int | None = None
    # forward time / wall time inside the forward actors (or the process), CUDA runs only
    device_utilisation: float | None = None
    setup_seconds: float | None = None  # model load etc. kept out of `seconds`, where it was
    # Ray runs: seconds from the start to the first forward call (process start, imports,
    # weights, the first block read and preprocessed), the fixed cost inside `seconds`
    first_forward_s: float | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "items_per_s": self.items_per_s}


def release_memory() -> None:
    """Give the memory that one competitor freed back to the OS before the next one runs.

    glibc keeps freed blocks under its mmap threshold (which grows to 32 MiB) in the heap: after
    forward-only's 3,000 padded clips the driver still held 9.7 GiB, and the taskray run that
    followed started its first forward 9.6 s in instead of 6.8 s.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def tree_rss_bytes(root_pid: int | None = None, children: bool = True) -> int:
    """Resident memory of a process and all its descendants.

    A local `ray.init()` starts the GCS, the raylet and the dashboard as children of the
    driver, and the raylet forks every worker, so the driver's tree is every Ray process.
    Shared object-store pages count in each process that maps them, so this over- rather
    than under-states memory.
    """
    import psutil

    try:
        root = psutil.Process(root_pid or os.getpid())
        processes = [root, *(root.children(recursive=True) if children else ())]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # exited between listing and reading
            continue
    return total


class PeakRss:
    """Samples `tree_rss_bytes` on a background thread while the block runs.

        with PeakRss() as peak:
            work()
        peak.bytes
    """

    def __init__(self, interval_s: float = 0.2, root_pid: int | None = None, children: bool = True):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self.root_pid = root_pid
        self.children = children  # False: the process alone (in-process competitors)
        self.bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        self.bytes = max(self.bytes, tree_rss_bytes(self.root_pid, self.children))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> "PeakRss":
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()


def spilled_bytes_total() -> int | None:
    """Bytes the object store has spilled to disk since Ray started (None without Ray).

    Ray has no public API for this counter; `ray memory --stats-only` reads it the same way.
    """
    import ray

    if not ray.is_initialized():
        return None
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    reply = get_memory_info_reply(get_state_from_address(ray.get_runtime_context().gcs_address))
    return int(reply.store_stats.spilled_bytes_total)


class ForwardClock:
    """Forward time and wall time inside one forward actor, appended to a JSON-lines file so
    that the driver can read them after the actors are gone.

    On CUDA each forward is bracketed by synchronize() so that the time is the device's.
    """

    def __init__(self, path: str):
        self.path = path
        self.created = time.perf_counter()
        self.forward_s = 0.0
        self.spans: list[tuple[float, float]] = []  # (epoch start, seconds) of each forward

    def timed(self, fn, *args, **kwargs):
        import torch

        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.synchronize()
        epoch, start = time.time(), time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            self.forward_s += seconds
            self.spans.append((epoch, seconds))

    def flush(self) -> None:
        record = {
            "pid": os.getpid(),
            "forward_s": self.forward_s,
            "wall_s": time.perf_counter() - self.created,
            "spans": self.spans,
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _last_records(path: str) -> list[dict]:
    """The last record of each actor that wrote to `path` (each record holds its totals)."""
    last: dict[int, dict] = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                last[record["pid"]] = record
    return list(last.values())


def device_utilisation(path: str) -> float | None:
    """Time with a forward running / wall time, summed over the actors that wrote to `path`.
    An actor running several forward calls at once (`forward_calls`) counts overlapping
    spans once: the device is busy, not busier."""
    records = _last_records(path)
    wall = sum(r["wall_s"] for r in records)
    return sum(busy_seconds(r["spans"]) for r in records) / wall if wall > 0 else None


def busy_seconds(spans: list[tuple[float, float]]) -> float:
    """Length of the union of (start, seconds) spans."""
    total, end = 0.0, float("-inf")
    for start, seconds in sorted(spans):
        stop = start + seconds
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def first_forward_s(path: str, started_epoch: float) -> float | None:
    """Seconds from `started_epoch` (time.time() when the run began) to the first forward call
    of any actor: the run's start-up, paid once per job."""
    starts = [span[0] for r in _last_records(path) for span in r.get("spans", ())]
    return min(starts) - started_epoch if starts else None
