"""The error budget of a job: the share of a task's rows that may fail before the job stops.

Judged twice with the same rule: while the job runs (pipelines.offline.job_stats.JobStats counts each
forwarded block, once `min_rows` rows of a task were seen) and over the whole output before
_SUCCESS is written (pipelines.offline.job). A broken setting that fails every row thus stops a job of
millions of rows after its first blocks, and a small job whose every row failed still ends
with exit 1.
"""

from __future__ import annotations

from dataclasses import dataclass

# Rows of a task seen before the running check judges it, so that a few bad first rows (a
# sorted directory of broken files) do not stop a job. The final check judges every row.
MIN_ROWS = 1000


@dataclass(frozen=True)
class ErrorBudget:
    max_failed_fraction: float
    min_rows: int

    def verdict(
        self, task: str, seen: int, failed: int, kinds: dict[str, int], example: str | None, *, final: bool
    ) -> str | None:
        """None while the task is within its budget, else the one-line reason to stop."""
        if seen == 0 or (not final and seen < self.min_rows) or failed <= self.max_failed_fraction * seen:
            return None
        when = "in the output" if final else f"after {seen} rows"
        shown = ", ".join(f"{k}={n}" for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
        line = (
            f"{task}: {failed} of {seen} rows failed {when} ({failed / seen:.0%}), more than "
            f"max_failed_fraction={self.max_failed_fraction:g} allows; error kinds: {shown or 'none'}"
        )
        if example:
            line += f"; e.g. {_short(example)!r}"
        return line


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
