"""`taskray run --resume` and `--retry-failed` after a SIGKILL: a killed run resumes with every
input id exactly once, recomputing only the rows that were not committed; the failed rows of a
finished output run again and replace the old rows in place, every id exactly once even when
the retry is killed midway.

The transient failures are injected by the test: some input rows are None on the first run
(they fail as `input: ...`), and the test then fixes those rows in the input files, as a user
would after a transient failure. Every 17th text is None for good (harness.text_shards), so
those rows fail again on the retry.
"""

from __future__ import annotations

import collections
import hashlib
import os

import pytest

from tests.offline_reliability.harness import (
    TASK,
    assert_files_of_target_size,
    assert_output_matches,
    checkpoint_state,
    cli_job,
    committed_ids,
    data_file_sizes,
    driver_job,
    expected_rows,
    kill_at,
    read_manifest,
    read_output,
    text_shards,
    wait_until,
    write_shards,
)


def broken(shards, files: set[int], column: str = "text"):
    """Copies of `shards` whose `column` is None in every row of the given files."""
    import pyarrow as pa

    out = []
    for i, table in enumerate(shards):
        if i in files:
            index = table.column_names.index(column)
            table = table.set_column(index, column, pa.array([None] * table.num_rows, pa.string()))
        out.append(table)
    return out


def assert_each_id_once(table, ids) -> None:
    counts = collections.Counter(table.column("id").to_pylist())
    assert not [i for i, n in counts.items() if n > 1], "an id appears twice"
    assert set(counts) == set(ids), f"ids missing: {sorted(set(ids) - set(counts))[:3]}"


def task_view(table, prefix: str):
    """One task's columns of a multi-task output, named as a single-task output names them."""
    names = ["id", f"{prefix}.label", f"{prefix}.score", f"{prefix}.error"]
    return table.select(names).rename_columns(["id", "label", "score", "error"])


def file_digests(out: str) -> dict[str, str]:
    return {
        n: hashlib.sha256(open(os.path.join(out, n), "rb").read()).hexdigest()
        for n in os.listdir(out)
        if n.endswith(".parquet")
    }


# Generous bound: it only catches hangs. On a quiet 2-core machine each driver run takes about half
# a minute; with the CPU shared by many processes Ray startup alone can take minutes.
@pytest.mark.timeout(1200)
def test_resume_then_retry_failed_after_sigkills_keep_every_id_once(tmp_path, tiny_model, spawn_driver):
    """One output through both recoveries, each from a driver SIGKILLed with its whole Ray (one
    test, so that the retry's finished output is the resumed run's instead of a third full run):

    1. `taskray run` with a small target_file_size, SIGKILLed mid-job in the middle of a
       compaction (its compacted file moved into the output, its blocks not yet deleted: ids
       twice on disk); `--resume` finishes the job with every id once, in files of the target
       size, and recomputes exactly the rows that were not committed.
    2. The input is fixed; `--retry-failed`, killed once retried blocks are committed, leaves
       every id once and the first _SUCCESS; a second `--retry-failed` finishes, keeping the
       blocks committed before the kill.
    """
    n_files, rows_per_file, block_rows = 8, 40, 10  # 32 blocks, one output file each
    model_dir = tiny_model(TASK)
    good = text_shards(n_files, rows_per_file)
    # Three files of eight fail: under the default error budget (half the rows) of a job.
    first_input = broken(good, {2, 3, 4})
    write_shards(first_input, str(tmp_path / "in"))
    expected_first, expected = expected_rows(model_dir, first_input), expected_rows(model_dir, good)
    out = str(tmp_path / "out")
    # `taskray run` on a fresh local Ray of the driver's own (see driver.py).
    # About six blocks of this data per file (a block's Parquet file is about 1 KiB, ~400 B of it data).
    target = 2500
    argv = driver_job(tmp_path, model_dir, block_rows, out, target_file_size=target)
    env = {"RAY_ADDRESS": "local"}

    # 1. Resume after the driver is killed mid-job, mid-compaction (pipelines/offline/compaction.py).
    kill_at(spawn_driver, argv, "compact:moved", tmp_path / "halted", env=env)

    state = checkpoint_state(out)
    done_before = committed_ids(out)
    assert read_manifest(out) is None, "a killed run must not leave _SUCCESS"
    # Every row may be committed already: on a loaded machine the driver's compaction lagged
    # the forward stage to its end (seen once). The kill is still mid-job (no _SUCCESS), and
    # the resume then recomputes nothing, which the rows_processed check below holds it to.
    assert 0 < len(done_before) <= len(expected), f"kill was before any commit: {len(done_before)} committed"
    # File by file: mid-job, a block whose rows all failed is still typed null (finalize unifies).
    import pyarrow as pa
    import pyarrow.parquet as pq

    # A block file that a write task had open at the kill is torn (no Parquet footer): its
    # checkpoint is still pending, so the resume below deletes and recomputes it, and the
    # output it finishes is checked in full.
    on_disk: collections.Counter = collections.Counter()
    for n in data_file_sizes(out):
        try:
            on_disk.update(pq.read_table(os.path.join(out, n), columns=["id"]).column("id").to_pylist())
        except pa.ArrowInvalid:
            print(f"torn by the kill: {n}")
    assert max(on_disk.values()) == 2, "the kill should have left a compaction mid-swap"
    print(f"after SIGKILL: {len(state['data'])} data files, {len(state['committed'])} committed and "
          f"{len(state['pending'])} pending checkpoints, {len(done_before)} rows committed")

    resumed = spawn_driver([*argv, "--resume"], env=env)
    assert resumed.wait(600) == 0, f"resumed run failed:\n{resumed.output()[-3000:]}"
    assert_output_matches(read_output(out), expected_first)
    manifest = read_manifest(out)
    assert manifest["rows"]["total"] == len(expected)
    # Less work than a full run, and exactly the rows that were not committed before the kill:
    # Ray Data's checkpoint filter skips committed ids and data files whose checkpoint was
    # still pending are deleted and recomputed.
    assert manifest["rows_processed"] == len(expected) - len(done_before)
    assert not os.path.exists(os.path.join(out, "_checkpoint")), "checkpoint left after success"
    assert_files_of_target_size(data_file_sizes(out), target)

    # 2. Retry the failed rows, killed midway, then again.
    failed_first = manifest["rows"]["failed"]
    write_shards(good, str(tmp_path / "in"))  # the transient cause is gone

    staging = os.path.join(out, "_retry", "data")
    retry = spawn_driver([*argv, "--retry-failed"], env=env)
    # The staging checkpoint starts with one committed file (the ids not to retry); wait for
    # one more, i.e. a retried block written, then kill the retry with its whole Ray. (The
    # retried rows are few, and inline decoding writes them in few files: waiting for two
    # let the retry finish first.)
    wait_until(
        lambda: not retry.alive() or len(checkpoint_state(staging)["committed"]) >= 2,
        480,
        "retried blocks committed in the staging area",
    )
    assert retry.alive(), f"the retry ended before the kill (rc={retry.proc.returncode}):\n{retry.output()[-3000:]}"
    retry.kill()

    # Killed midway: the output still holds every id exactly once, and its _SUCCESS is the
    # first run's (the retry had not finished).
    assert_each_id_once(read_output(out), expected)
    assert [h["mode"] for h in read_manifest(out)["history"]] == ["run"]
    assert os.path.isdir(os.path.join(out, "_retry"))

    again = spawn_driver([*argv, "--retry-failed"], env=env)
    assert again.wait(600) == 0, again.output()[-3000:]

    assert_output_matches(read_output(out), expected)
    manifest = read_manifest(out)
    still_failed = sum(1 for r in expected.values() if r["error"] is not None)
    assert manifest["rows"]["failed"] == still_failed
    assert [h["mode"] for h in manifest["history"]] == ["run", "retry-failed"]
    assert manifest["history"][1]["rows"] == failed_first
    assert manifest["history"][1]["failed"] == still_failed
    # The resumed retry kept the blocks committed before the kill.
    assert manifest["rows_processed"] < failed_first
    assert not os.path.exists(os.path.join(out, "_retry"))


@pytest.mark.timeout(1200)
def test_multi_task_retry_replaces_failed_rows_in_place_through_sigkills_mid_merge(job_ray, tmp_path, tiny_model, monkeypatch, spawn_driver):
    """A two-task retry in place, SIGKILLed inside a file replacement and between two (local
    disk; S3: test_s3_job.py), every id once after each kill and after the rerun."""
    import pipelines.offline.retry
    from pipelines.offline.job import run_job
    from pipelines.spec import JobSpec, TaskSpec

    n_files, rows_per_file, block_rows = 4, 20, 10
    model_dir = tiny_model(TASK)
    # Rows 5 and 45 fail for good (files 0 and 2); with the broken files 1 and 2, the output file
    # of input file 3 has no failed row and must stay untouched.
    good = [t.append_column("text_b", t.column("text")) for t in text_shards(n_files, rows_per_file, none_every=40)]
    expected = expected_rows(model_dir, good)
    # Task a fails the rows of file 1, task b those of file 2: each task retries its own.
    first_input = broken(broken(good, {1}, "text"), {2}, "text_b")
    write_shards(first_input, str(tmp_path / "in"))
    out = str(tmp_path / "out")

    def spec(mode: str) -> JobSpec:
        # A small target_file_size: several output files, so that the merge replaces several.
        return JobSpec(
            target_file_size=1500,
            input=[str(tmp_path / "in")],
            output=out,
            tasks=[
                TaskSpec(task=TASK, model=model_dir, name="a", batch_size=block_rows),
                TaskSpec(task=TASK, model=model_dir, name="b", columns={"text": "text_b"}, batch_size=block_rows),
            ],
            block_rows=block_rows,
            mode=mode,
        )

    run_job(spec("error-if-exists"))
    before = read_output(out)
    failed_a = set(before.filter(before.column("a.error").is_valid()).column("id").to_pylist())
    failed_b = set(before.filter(before.column("b.error").is_valid()).column("id").to_pylist())
    ok_b_in_file_1 = {r["id"]: r for r in task_view(before, "b").to_pylist() if r["id"].startswith("doc-01-")}
    digests = file_digests(out)
    write_shards(good, str(tmp_path / "in"))

    assert len(digests) >= 3 and len({n for n in digests if n.startswith("compacted-")}) >= 3, digests

    # The retried rows are staged here, on the test's Ray, and the merge is stopped before it
    # starts; the killed retries below then find the staged rows complete and start no Ray.
    def no_merge(*args):
        raise OSError("injected: stopped before the merge")

    monkeypatch.setattr(pipelines.offline.retry, "_merge", no_merge)
    with pytest.raises(OSError, match="injected"):
        pipelines.offline.retry.retry_failed(spec("retry-failed"))
    monkeypatch.undo()
    argv = cli_job(tmp_path / "retry.yaml", spec("retry-failed"))
    # SIGKILLed inside the first replacement (its new file written, not yet moved over the old),
    # then between the first and the second: each time every id once, the first _SUCCESS.
    # A replacement is a rename onto the name: the file's inode tells whether it happened (its
    # bytes may not: a file whose failed rows fail again is rewritten as it was).
    inodes = {n: os.stat(os.path.join(out, n)).st_ino for n in digests}
    for step, replaced in (("retry:written:1", 0), ("retry:replaced:1", 1)):
        kill_at(spawn_driver, argv, step, tmp_path / "halted")
        assert_each_id_once(read_output(out), expected)
        assert [h["mode"] for h in read_manifest(out)["history"]] == ["run"], step
        now = {n: os.stat(os.path.join(out, n)).st_ino for n in file_digests(out)}
        assert set(now) == set(inodes) and sum(now[n] != inodes[n] for n in now) == replaced, step

    summary = pipelines.offline.retry.retry_failed(spec("retry-failed"))

    after = read_output(out)
    for prefix in ("a", "b"):
        assert_output_matches(task_view(after, prefix), expected)
    # Task b succeeded on file 1 the first time; its values there are the first run's.
    for row in task_view(after, "b").to_pylist():
        if row["id"] in ok_b_in_file_1:
            assert row == ok_b_in_file_1[row["id"]]
    # In place: the same files, and the files with no failed row are untouched.
    now = file_digests(out)
    assert set(now) == set(digests)
    touched = {n for n in now if now[n] != digests[n]}
    assert touched and len(touched) < len(digests)

    manifest = read_manifest(out)
    still_failed = sum(1 for r in expected.values() if r["error"] is not None)
    assert manifest["rows"] == {"total": len(expected), "ok": len(expected) - still_failed, "failed": still_failed}
    assert manifest["tasks"]["a"]["failed"] == manifest["tasks"]["b"]["failed"] == still_failed
    history = manifest["history"]
    assert [h["mode"] for h in history] == ["run", "retry-failed"]
    assert history[0]["rows"] == len(expected) and history[0]["failed"] == len(failed_a | failed_b)
    assert history[1]["rows"] == len(failed_a | failed_b) and history[1]["failed"] == still_failed
    assert all(h["started"] <= h["finished"] for h in history)
    assert summary.failed == still_failed
    assert not os.path.exists(os.path.join(out, "_retry"))
