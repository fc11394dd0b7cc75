"""What the benchmark measures: wall time, peak resident memory of the whole process tree,
object-store spilling, when a job's first output file appears, and the forward's busy share.

The Ray competitors run as commands (`run_command`), as a user runs them: their numbers come
from outside the process (wall time, the process tree's memory, the output directory) or from
what Ray writes to its own logs (spilling).
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
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
    # time with a forward running / wall time, in the process or the competitor's own actors
    device_utilisation: float | None = None
    setup_seconds: float | None = None  # model load etc. kept out of `seconds`, where it was
    # Commands: seconds from the launch to the first output file (interpreter, imports, Ray
    # start-up, weights, the first block read, forwarded and written), the fixed cost inside
    # `seconds`
    first_output_s: float | None = None
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


# The raylet logs its running totals, at most once a second, while it spills:
# "Spilled 1234 MiB, 56 objects, write throughput 789 MiB/s".
_SPILLED = re.compile(r"Spilled (\d+) MiB, (\d+) objects")


def spilled_bytes_from_logs(ray_tmpdir: str) -> int:
    """Bytes the object stores of the Ray sessions under `ray_tmpdir` (a command's RAY_TMPDIR)
    spilled, from their raylet logs: the largest total logged, so MiB-rounded and possibly
    short of the last second's spilling, but 0 only when nothing spilled."""
    most = 0
    for path in glob.glob(os.path.join(ray_tmpdir, "**", "raylet*.out"), recursive=True):
        with open(path, encoding="utf-8", errors="replace") as f:
            for match in _SPILLED.finditer(f.read()):
                most = max(most, int(match.group(1)) * 2**20)
    return most


@dataclass
class CommandRun:
    seconds: float
    peak_rss_bytes: int
    first_output_s: float | None  # None: no output file appeared while it ran
    spilled_bytes: int


def run_command(argv: list[str], *, output_dir: str, log_path: str, env: dict[str, str] | None = None,
                cwd: str | None = None, poll_s: float = 0.05) -> CommandRun:
    """Run `argv` as a user's shell would and time it end to end, with a private RAY_TMPDIR so
    that its Ray logs (spilling) are its own. Watches `output_dir` for the first data file
    (names starting with "_" or "." are markers, not data). stdout and stderr go to
    `log_path`; a non-zero exit raises with the log's tail."""
    import tempfile

    # Short on purpose: Ray puts its sockets under it, and a Unix socket path has 107 bytes.
    ray_tmpdir = tempfile.mkdtemp(prefix="trb-", dir="/tmp")
    env = {**(os.environ if env is None else env), "RAY_TMPDIR": ray_tmpdir}
    first_output = None
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            started = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                with PeakRss(root_pid=proc.pid) as peak:
                    while proc.poll() is None:
                        if first_output is None and _has_data_file(output_dir):
                            first_output = time.perf_counter() - started
                        time.sleep(poll_s)
                    seconds = time.perf_counter() - started
            finally:
                _stop(proc)
        if proc.returncode != 0:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                tail = f.read()[-4000:]
            raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}:\n{tail}")
        return CommandRun(seconds, peak.bytes, first_output, spilled_bytes_from_logs(ray_tmpdir))
    finally:
        import shutil

        shutil.rmtree(ray_tmpdir, ignore_errors=True)


def _has_data_file(directory: str) -> bool:
    try:
        with os.scandir(directory) as entries:
            return any(e.is_file() and not e.name.startswith(("_", ".")) for e in entries)
    except FileNotFoundError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """End what is left of a command's session: the command itself if the harness was
    interrupted, and any Ray process it started that outlived it (the next competitor must
    not share the cores with it)."""
    for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        deadline = time.monotonic() + wait_s
        try:
            os.killpg(proc.pid, sig)
            while time.monotonic() < deadline:
                proc.poll()  # reaps the command itself once it exits
                time.sleep(0.05)
                os.killpg(proc.pid, 0)  # raises once no process of the session is left
        except ProcessLookupError:
            break
    proc.wait()


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
