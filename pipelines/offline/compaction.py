"""Output files of a useful size: committed blocks are compacted into files of
`target_file_size` while the job runs and when it finishes.

    compactor = Compactor(out, 128 << 20, checkpoint_dir, write_options=PARQUET_WRITE_OPTIONS)
    compactor.recover()                   # finish a compaction a kill interrupted (before any read)
    with compacting(compactor):           # a driver thread compacts full groups as blocks commit
        ds.write_parquet(...)
    compactor.compact(final=True)         # the remainder, before _SUCCESS

Why: resume tracks blocks (Ray Data's checkpoint has one entry per data file, and a block is
the unit that a kill loses), so blocks stay small, a few hundred rows. Written as they are,
a 200,000-row text-classification job left 706 files of about 4 KiB (benchmarks/RESULTS.md);
at a hundred million rows that is hundreds of thousands of objects, which S3 listings, Spark
and `datasets` all pay for (ray-project/ray#59485). Ray's own `min_rows_per_file` would make
the block, and so what a kill loses, as large as the file.

What resume reads is untouched: Ray Data's checkpoint (`_checkpoint/`, the ids of every
committed block) stays as it is, so a compacted row is never recomputed. Only blocks whose
checkpoint is committed (and none pending: a retried write task) are compacted, so Ray's
own clean-up of uncommitted blocks never meets a compacted file, whose name (`compacted-`)
no checkpoint id can prefix.

A compaction replaces N files by one, which no store does atomically, so it keeps a journal:
  1. the new file is written under `_compact/` (hidden from readers, as `_checkpoint` is);
  2. `_compact/<name>.json` names it and its sources: from here on the compaction is done;
  3. the new file is moved into the output;
  4. the sources are deleted, then the journal.
`recover()` rolls every journal forward (steps 3 and 4 again; each is idempotent) and drops
new files that have no journal (a kill before step 2: their sources are all still there).
A kill between steps 3 and 4 leaves ids twice on disk until then, so every reader of the
output (resume, finalize, --retry-failed) calls `recover()` first; `_SUCCESS` is written only
after the final compaction, so no reader of a finished output sees that state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from pipelines.offline.halt_points import halt_point
from pipelines.storage import Location, is_hidden, read_text, write_text

logger = logging.getLogger(__name__)

COMPACT_DIR = "_compact"
COMPACTED_PREFIX = "compacted-"
# Large enough that a hundred million rows make hundreds of files, not hundreds of
# thousands; small enough that one file is a reasonable unit for Spark or `datasets` to read
# (and for --retry-failed to rewrite). Parquet writers commonly aim at 128 MiB-1 GiB.
DEFAULT_TARGET_FILE_BYTES = 128 * 1024 * 1024
# How often the driver thread looks for a full group while the job runs: a look is two LISTs
# (the output and its checkpoint), milliseconds on local disk, seconds on S3 once the checkpoint
# holds many thousands of blocks. The wait after each look is POLL_COST_FACTOR times what it
# took, within [POLL_MIN_S, POLL_MAX_S], so the thread spends at most a sixth of its time
# looking, and a fast local job is compacted while it runs rather than all at the end.
POLL_MIN_S, POLL_MAX_S, POLL_COST_FACTOR = 0.2, 10.0, 5.0


class Compactor:
    """Compacts the committed Ray Data files of one output directory (see the module docstring).

    `write_options`: pyarrow.parquet.write_table keywords, as the job's writer uses them.
    """

    def __init__(self, out: Location, target_bytes: int, checkpoint_dir: str, write_options: dict | None = None) -> None:
        if target_bytes <= 0:
            raise ValueError(f"target_bytes must be positive, got {target_bytes}")
        self.out = out
        self.target_bytes = target_bytes
        self.write_options = dict(write_options or {})
        self.checkpoint_dir = checkpoint_dir  # a path in out's filesystem: Ray Data's checkpoint of the files
        self.compact_dir = posixpath.join(out.path, COMPACT_DIR)
        self._data_bytes: dict[str, int] = {}  # a committed file never changes: read its footer once
        # Bytes of the last compacted file per byte of its sources' data: one file of many
        # blocks compresses better (one dictionary per column instead of one per block), by
        # 0.74 for 16-row text-classification blocks. The next group is planned with it.
        self._ratio = 1.0
        self._lock = threading.Lock()

    # --- reading the output -------------------------------------------------------------

    def _list(self, path: str) -> list[str]:
        import pyarrow.fs as pafs

        infos = self.out.filesystem.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
        return sorted(posixpath.basename(i.path) for i in infos if i.type == pafs.FileType.File)

    def committed_files(self) -> list[str]:
        """What a group may take: compacted files under half the target (the first group of a
        run is planned before any compression gain is measured, and came out at half the
        target on 200,000 rows), then Ray-written data files whose checkpoint is committed and
        none pending, in name order."""
        committed, pending = set(), set()
        for name in self._list(self.checkpoint_dir):
            if name.endswith(".pending.parquet"):
                pending.add(name[: -len(".pending.parquet")])
            elif name.endswith(".parquet"):
                committed.add(name[: -len(".parquet")])
        small, out = [], []
        for name in self._list(self.out.path):
            if name.startswith(COMPACTED_PREFIX) and name.endswith(".parquet"):
                if self._size(name) < self.target_bytes / 2:
                    small.append(name)
                continue
            if is_hidden(name) or not name.endswith(".parquet"):
                continue
            stem = name[: -len(".parquet")]
            # Ray names a task's files `<checkpoint id>-<i>.parquet` (ParquetDatasink's basename
            # template); the checkpoint id is the file name's prefix.
            bases = {stem, stem.rsplit("-", 1)[0]}
            if bases & committed and not bases & pending:
                out.append(name)
        return small + out

    def _size(self, name: str) -> int:
        """Bytes of a file's column data (its footer and schema left out): N small files
        compacted into one file carry N footers less, so summing whole file sizes would make
        compacted files far smaller than the target when blocks are small."""
        import pyarrow.parquet as pq

        if name not in self._data_bytes:
            with self.out.filesystem.open_input_file(posixpath.join(self.out.path, name)) as f:
                meta = pq.ParquetFile(f).metadata
            self._data_bytes[name] = sum(
                meta.row_group(g).column(c).total_compressed_size
                for g in range(meta.num_row_groups)
                for c in range(meta.num_columns)
            )
        return self._data_bytes[name]

    def groups(self, final: bool) -> list[list[str]]:
        """Consecutive committed files whose data reaches the target; with `final`, the rest
        as one more group (when it is more than one file)."""
        groups, group, size = [], [], 0
        for name in self.committed_files():
            group.append(name)
            # A compacted file's bytes carry over as they are; a block's shrink by the ratio.
            size += self._size(name) * (1.0 if name.startswith(COMPACTED_PREFIX) else self._ratio)
            if size >= self.target_bytes:
                groups.append(group)
                group, size = [], 0
        if final and len(group) > 1:
            groups.append(group)
        return groups

    # --- compacting -----------------------------------------------------------------------

    def compact(self, final: bool = False) -> int:
        """Compact every full group (and with `final` the remainder); returns files written."""
        with self._lock:
            self.recover()
            written = 0
            # One group at a time, planned again after each: the compression gain measured on
            # one group sizes the next (a file of a group planned before it came out at half
            # the target on 200,000 rows, and joins the next group as a small file). Each
            # compaction leaves fewer files, so this ends.
            while groups := self.groups(final):
                self._compact_group(groups[0])
                written += 1
            if final:
                _delete_empty_dir(self.out, self.compact_dir)
            return written

    def _compact_group(self, sources: list[str]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        fs = self.out.filesystem
        # Deterministic: the same sources give the same name, so a rerun cannot make two.
        name = COMPACTED_PREFIX + hashlib.sha256("\0".join(sources).encode()).hexdigest()[:24] + ".parquet"
        tables = []
        for source in sources:
            with fs.open_input_file(posixpath.join(self.out.path, source)) as f:
                tables.append(pq.read_table(f))
        # Result columns are typed by their operators, but a kept input column that is all
        # null in one input file is typed null there; permissive promotion gives the group one
        # schema (job._unify_file_schemas does the same across groups).
        table = pa.concat_tables(tables, promote_options="permissive")
        fs.create_dir(self.compact_dir, recursive=True)
        staged = posixpath.join(self.compact_dir, name)
        with fs.open_output_stream(staged) as f:
            pq.write_table(table, f, **self.write_options)
        source_bytes = sum(self._size(s) for s in sources if not s.startswith(COMPACTED_PREFIX))
        if source_bytes and all(not s.startswith(COMPACTED_PREFIX) for s in sources):
            self._ratio = min(1.0, max(0.05, fs.get_file_info(staged).size / source_bytes))
        halt_point("compact:written")
        write_text(self.out, posixpath.join(self.compact_dir, name + ".json"), json.dumps({"target": name, "sources": sources}))
        halt_point("compact:journaled")
        self._roll_forward(name, sources)
        logger.info("compacted %d files (%d rows) into %s", len(sources), table.num_rows, name)

    def _roll_forward(self, name: str, sources: list[str]) -> None:
        import pyarrow.fs as pafs

        fs = self.out.filesystem
        staged = posixpath.join(self.compact_dir, name)
        target = posixpath.join(self.out.path, name)
        if fs.get_file_info(staged).type != pafs.FileType.NotFound:
            fs.move(staged, target)  # local: rename(2); S3: a copy onto the key (then the staged copy goes)
        elif fs.get_file_info(target).type == pafs.FileType.NotFound:
            raise RuntimeError(f"compaction journal {name}.json names a file that is in neither {COMPACT_DIR}/ nor the output")
        halt_point("compact:moved")
        for source in sources:
            path = posixpath.join(self.out.path, source)
            if fs.get_file_info(path).type != pafs.FileType.NotFound:
                fs.delete_file(path)
            self._data_bytes.pop(source, None)
            halt_point("compact:deleted-source")
        fs.delete_file(posixpath.join(self.compact_dir, name + ".json"))

    def recover(self) -> None:
        """Finish every compaction whose journal was written; drop staged files without one."""
        names = self._list(self.compact_dir)
        journals = [n for n in names if n.endswith(".json")]
        for journal in journals:
            text = read_text(self.out, posixpath.join(self.compact_dir, journal))
            entry = json.loads(text)
            logger.info("finishing the compaction into %s that an earlier run left", entry["target"])
            self._roll_forward(entry["target"], entry["sources"])
        finished = {j[: -len(".json")] for j in journals}
        for name in names:
            if name.endswith(".parquet") and name not in finished:
                self.out.filesystem.delete_file(posixpath.join(self.compact_dir, name))


def _delete_empty_dir(out: Location, path: str) -> None:
    import pyarrow.fs as pafs

    fs = out.filesystem
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory and not fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        fs.delete_dir(path)


@contextmanager
def compacting(compactor: Compactor | None) -> Iterator[None]:
    """Compact full groups from a driver thread while the body (the Ray Data write) runs.
    A failure there is logged and stops the thread: the final compaction tries again."""
    if compactor is None:
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        wait = POLL_MIN_S
        while not stop.wait(wait):
            started = time.monotonic()
            try:
                compactor.compact(final=False)
            except Exception:  # broad on purpose: the job must not die of a compaction; finalize retries it
                logger.exception("compaction while the job runs failed; the rest is compacted at the end")
                return
            wait = min(POLL_MAX_S, max(POLL_MIN_S, POLL_COST_FACTOR * (time.monotonic() - started)))

    thread = threading.Thread(target=loop, name="taskray-compaction", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
