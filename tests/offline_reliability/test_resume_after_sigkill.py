"""Resume after the driver is SIGKILLed mid-job: `taskray run` in its own process (with its own
local Ray) is killed once some blocks are committed; `taskray run --resume` then finishes the
job with every input id exactly once and recomputes only the rows that were not committed."""

from __future__ import annotations

import os

import pytest

from tests.offline_reliability.harness import (
    TASK,
    assert_output_matches,
    checkpoint_state,
    driver_job,
    committed_ids,
    expected_rows,
    read_manifest,
    read_output,
    text_shards,
    wait_until,
    write_shards,
)

N_FILES, ROWS_PER_FILE, BLOCK_ROWS = 8, 40, 10  # 32 blocks, one output file each


# Generous bounds: they only catch hangs. On a quiet 2-core machine the test takes about a
# minute; with the CPU shared by many processes Ray startup alone can take minutes.
@pytest.mark.timeout(1200)
def test_resume_after_driver_sigkill(tmp_path, tiny_model, spawn_driver):
    model_dir = tiny_model(TASK)
    shards = text_shards(N_FILES, ROWS_PER_FILE)
    write_shards(shards, str(tmp_path / "in"))
    expected = expected_rows(model_dir, shards)
    out = str(tmp_path / "out")
    # `taskray run` on a fresh local Ray of the driver's own (see driver.py).
    argv = driver_job(tmp_path, model_dir, BLOCK_ROWS, out)
    env = {"RAY_ADDRESS": "local"}

    first = spawn_driver(argv, env=env)
    wait_until(
        lambda: not first.alive() or len(checkpoint_state(out)["committed"]) >= 2,
        480,
        "two committed blocks from the first run",
    )
    assert first.alive(), f"first run ended before the kill (rc={first.proc.returncode}):\n{first.output()[-3000:]}"
    killed = first.kill()
    assert len(killed) > 1, "the driver had started no Ray processes; was it running the job?"

    state = checkpoint_state(out)
    done_before = committed_ids(out)
    assert read_manifest(out) is None, "a killed run must not leave _SUCCESS"
    assert 0 < len(done_before) < len(expected), f"kill was not mid-job: {len(done_before)} of {len(expected)} committed"
    print(f"after SIGKILL: {len(state['data'])} data files, {len(state['committed'])} committed and "
          f"{len(state['pending'])} pending checkpoints, {len(done_before)} rows committed")

    second = spawn_driver([*argv, "--resume"], env=env)
    rc = second.wait(600)
    assert rc == 0, f"resumed run failed (rc={rc}):\n{second.output()[-3000:]}"

    assert_output_matches(read_output(out), expected)
    manifest = read_manifest(out)
    assert manifest["rows"]["total"] == len(expected)
    # Less work than a full run, and exactly the rows that were not committed before the kill:
    # Ray Data's checkpoint filter skips committed ids and data files whose checkpoint was
    # still pending are deleted and recomputed.
    assert manifest["rows_processed"] == len(expected) - len(done_before)
    assert not os.path.exists(os.path.join(out, "_checkpoint")), "checkpoint left after success"
