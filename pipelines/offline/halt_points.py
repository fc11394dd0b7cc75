"""Named steps where a test can stop taskray to kill it there: a TEST-ONLY hook.

    halt_point("retry:replaced:1")      # no-op unless the environment names this step

The crash tests (tests/offline_reliability) must kill a job at an exact step of a multi-step
write (between two file replacements of `--retry-failed`, inside one, while compacting) rather
than after a guessed delay. With `TASKRAY_TEST_HALT_AT=<step>` set, the process that reaches
that step writes the step's name to the file named by `TASKRAY_TEST_HALT_FILE` and then
sleeps for good; the test waits for that file and SIGKILLs the process together with the Ray
it started (a process that killed itself would orphan its raylet and GCS). Without the
variable, `halt_point` is one dictionary lookup. Users never set it.
"""

from __future__ import annotations

import os
import time

HALT_AT = "TASKRAY_TEST_HALT_AT"
HALT_FILE = "TASKRAY_TEST_HALT_FILE"


def halt_point(step: str) -> None:
    """Stop here for good when the test-only `TASKRAY_TEST_HALT_AT` names `step`."""
    if os.environ.get(HALT_AT) != step:
        return
    path = os.environ.get(HALT_FILE)
    if path:
        with open(path + ".tmp", "w") as f:
            f.write(step)
        os.replace(path + ".tmp", path)
    while True:  # the test kills this process; nothing after this step may run
        time.sleep(60)
