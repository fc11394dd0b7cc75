"""Compaction of committed blocks into files of target_file_size (pipelines/offline/compaction.py),
without Ray: an output laid out as Ray Data's checkpointed write leaves it (data files named
`<checkpoint id>-<i>.parquet`, committed and pending checkpoints under `_checkpoint/`), then
compacted, and killed at every step of a compaction. The kill is simulated in-process (an
exception at the halt point that nothing in the compactor catches, so no later step runs);
the SIGKILLed job with Ray is tests/offline_reliability/test_retry_failed.py."""

from __future__ import annotations

import collections
import os

import pytest

STEPS = ("compact:written", "compact:journaled", "compact:moved", "compact:deleted-source")


class Killed(BaseException):
    """Stands for a SIGKILL at a halt point: no except clause of the code under test catches it."""


def ray_output(root, n_blocks: int = 12, rows: int = 20, pending: set[int] = frozenset(), write: str = "5f00e1") -> dict[str, int]:
    """Blocks as Ray's checkpointed Parquet write leaves them; returns id -> block."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(root / "_checkpoint", exist_ok=True)
    owner = {}
    for b in range(n_blocks):
        base = f"ab12cd_{write}_{b:06d}"
        ids = [f"row-{write}-{b:02d}-{r:03d}" for r in range(rows)]
        owner.update({i: b for i in ids})
        # Null labels in one block, as a block whose rows all failed is typed.
        label = pa.nulls(rows, pa.string()) if b == 3 else pa.array([f"label-{r % 3}" for r in range(rows)])
        pq.write_table(pa.table({"id": ids, "label": label, "score": [0.5] * rows}), root / f"{base}-0.parquet")
        suffix = ".pending.parquet" if b in pending else ".parquet"
        pq.write_table(pa.table({"id": ids}), root / "_checkpoint" / f"{base}{suffix}")
    return owner


def compactor(root, target: int):
    from pipelines.offline.compaction import Compactor
    from pipelines.storage import resolve

    out = resolve(str(root))
    return Compactor(out, target, os.path.join(out.path, "_checkpoint"))


def ids_on_disk(root) -> collections.Counter:
    import pyarrow.parquet as pq

    return collections.Counter(pq.read_table(str(root), columns=["id"]).column("id").to_pylist())


def test_committed_blocks_become_files_of_the_target_size(tmp_path):
    owner = ray_output(tmp_path, n_blocks=40, pending={11})
    block_bytes = compactor(tmp_path, 1)._size("ab12cd_5f00e1_000000-0.parquet")
    target = 3 * block_bytes
    c = compactor(tmp_path, target)
    assert "ab12cd_5f00e1_000011-0.parquet" not in c.committed_files()  # its checkpoint is pending
    assert c.compact() >= 10  # 39 committed blocks: full groups of about three blocks each
    assert len(c.committed_files()) < 4  # what is left is no full group
    c.compact(final=True)
    names = sorted(os.listdir(tmp_path))
    # The uncommitted block is left to Ray (its clean-up deletes it on resume), and nothing else.
    assert [n for n in names if n.endswith(".parquet") and not n.startswith("compacted-")] == ["ab12cd_5f00e1_000011-0.parquet"]
    assert "_compact" not in names
    counts = ids_on_disk(tmp_path)
    assert set(counts) == set(owner) and max(counts.values()) == 1
    import pyarrow.parquet as pq

    # Files of the target size (whole files, footer included), but the final remainder.
    sizes = sorted(os.path.getsize(tmp_path / n) for n in names if n.startswith("compacted-"))
    assert len(sizes) >= 10
    assert all(target <= size <= 2 * target for size in sizes[1:]), (target, sizes)
    # The null-typed block (all rows failed) is promoted to the others' type in its group.
    assert all(pq.read_schema(tmp_path / n).field("label").type == "string" for n in names if n.startswith("compacted-"))


def test_a_compacted_file_under_half_the_target_joins_the_next_group(tmp_path):
    """A resumed run's first group (or any planned before the compression gain was measured)
    may come out small; the next compaction takes it in rather than leaving it."""
    first = ray_output(tmp_path, n_blocks=4)
    compactor(tmp_path, 10**9).compact(final=True)
    [small] = [n for n in os.listdir(tmp_path) if n.startswith("compacted-")]
    later = ray_output(tmp_path, n_blocks=12, write="77aa00")  # the next run's blocks
    target = 3 * os.path.getsize(tmp_path / small)
    c = compactor(tmp_path, target)
    assert c.committed_files()[0] == small
    c.compact(final=True)
    names = os.listdir(tmp_path)
    assert small not in names
    counts = ids_on_disk(tmp_path)
    assert set(counts) == set(first) | set(later) and max(counts.values()) == 1


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_at_any_step_of_a_compaction_loses_and_duplicates_nothing(tmp_path, monkeypatch, step):
    import pipelines.offline.compaction

    owner = ray_output(tmp_path, n_blocks=6)
    c = compactor(tmp_path, 10**9)

    def halt(name):
        if name == step:
            raise Killed(name)

    monkeypatch.setattr(pipelines.offline.compaction, "halt_point", halt)
    with pytest.raises(Killed):
        c.compact(final=True)
    counts = ids_on_disk(tmp_path)
    assert set(counts) == set(owner)
    if step in ("compact:moved", "compact:deleted-source"):
        # The kill left the output mid-swap: the compacted file and (some of) its sources.
        assert max(counts.values()) == 2
    monkeypatch.setattr(pipelines.offline.compaction, "halt_point", lambda name: None)

    # What every reader of the output does first (a resume, the finalize, a retry).
    compactor(tmp_path, 10**9).compact(final=True)
    counts = ids_on_disk(tmp_path)
    assert set(counts) == set(owner) and max(counts.values()) == 1
    names = os.listdir(tmp_path)
    assert len([n for n in names if n.startswith("compacted-")]) == 1
    assert "_compact" not in names


def test_target_file_size_reads_units_and_output_format_lance_refuses_what_it_cannot_do(tmp_path):
    from pipelines.offline.job import check_output_format
    from pipelines.offline.retry import retry_failed
    from pipelines.spec import JobSpec, SpecError, TaskSpec
    from pipelines.storage import resolve

    def spec(**fields):
        return JobSpec(input=[str(tmp_path)], output=str(tmp_path / "out"), tasks=[TaskSpec(task="text-classification", model="m")], **fields)

    assert spec().target_file_size == 128 * 2**20
    assert spec(target_file_size="64MiB").target_file_size == 64 * 2**20
    assert spec(target_file_size="64MB").target_file_size == 64 * 10**6
    assert spec(target_file_size=4096).target_file_size == 4096
    with pytest.raises(ValueError, match="128MiB"):
        spec(target_file_size="lots")
    lance = spec(output_format="lance", mode="retry-failed")
    with pytest.raises(SpecError, match="retry-failed replaces failed rows in the Parquet files"):
        retry_failed(lance)
    with pytest.raises(SpecError, match="local path or s3://"):
        check_output_format(lance, resolve("memory://bucket/out"))
