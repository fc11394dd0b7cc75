"""The job's stats actor: forwarded rows per task and node, error kinds and dtypes, and the
error budget judged as blocks arrive (pipelines/offline/error_budget.py).

Its own module, apart from pipelines/offline/stages.py, because the actor's process imports the
module of its class: pipelines.offline.stages imports the operators (numpy, pydantic, the task
registry), 2.5 s of a 2-core machine's start-up spent in a process that only counts
(benchmarks/RESULTS.md, cold start). This one imports nothing but the standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.offline.error_budget import ErrorBudget


class JobStats:
    """A tiny Ray actor that counts forward rows per task and node, and error kinds, for
    this run, and judges the error budget as blocks arrive. Used as
    `ray.remote(num_cpus=0)(JobStats)`."""

    def __init__(self, budget: "ErrorBudget | None" = None) -> None:
        self._nodes: dict[str, dict[str, int]] = {}
        self._dtypes: dict[str, set[str]] = {}
        self._errors: dict[str, dict[str, int]] = {}
        self._examples: dict[str, dict[str, str]] = {}
        self._budget = budget
        self._verdict: str | None = None

    def add(
        self, task: str, node: str, rows: int, errors: dict[str, int], examples: dict[str, str] | None = None,
        dtype: str | None = None,
    ) -> str | None:
        """Count one forwarded block (computed in `dtype`). Returns why the job must stop once a
        task has failed more rows than the budget allows (and from then on, to every caller), else None."""
        if dtype is not None:
            self._dtypes.setdefault(task, set()).add(dtype)
        nodes = self._nodes.setdefault(task, {})
        nodes[node] = nodes.get(node, 0) + rows
        kinds = self._errors.setdefault(task, {})
        for kind, n in errors.items():
            kinds[kind] = kinds.get(kind, 0) + n
        for kind, text in (examples or {}).items():
            self._examples.setdefault(task, {}).setdefault(kind, text)
        if self._verdict is None and self._budget is not None:
            failed = sum(kinds.values())
            worst = max(kinds, key=kinds.get) if kinds else None
            example = self._examples.get(task, {}).get(worst) if worst else None
            self._verdict = self._budget.verdict(task, sum(nodes.values()), failed, kinds, example, final=False)
        return self._verdict

    def snapshot(self) -> dict[str, Any]:
        dtypes = {task: sorted(names) for task, names in self._dtypes.items()}
        return {"nodes": self._nodes, "dtypes": dtypes, "errors": self._errors, "verdict": self._verdict}
