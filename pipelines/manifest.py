"""The `_SUCCESS` manifest and the job summary.

`_SUCCESS` is JSON, written last (after every data file is complete and checked), so its
presence means the output is whole:

    {"spec": {...}, "rows": {"total", "ok", "failed"}, "errors_by_kind": {"decode": 3, ...},
     "tasks": {"<name>": {"task", "model", "ok", "failed", "errors_by_kind",
                          "nodes": {"<ray node id>": rows forwarded there in this run},
                          "dtype": the torch dtype the model computed in ("bfloat16", ...; ", "-joined
                                   when actors on different hardware resolved `auto` differently),
                          "id2label": {"<id>": label} for labelled tasks, else null}},
     "rows_processed": rows computed in this run (less than total after a resume),
     "wall_s", "rows_per_s" (rows_processed / wall_s), "versions": {...}, "finished_at",
     "history": [{"mode": "run" | "retry-failed", "started", "finished", "rows", "failed"}, ...]}

`history` lists the runs that wrote the output, oldest first: the job itself ("run": `rows`
is the output's total, `failed` its failed rows), then each `--retry-failed` ("rows": the
rows it retried, "failed": those of them that failed again). Times are UTC, ISO 8601.
"""

from __future__ import annotations

import calendar
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Any

SUCCESS_FILE = "_SUCCESS"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass
class TaskCounts:
    task: str
    model: str
    ok: int = 0
    failed: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)
    # The torch dtype the forward actors ran the model in, as they resolved it (`auto` is bf16
    # or fp16 on CUDA, float32 on the CPU): which precision labelled the rows. None: no row
    # was forwarded in this run, or a manifest of an earlier version.
    dtype: str | None = None
    # The model's class labels by id (config.id2label, ids as JSON strings), for the tasks
    # whose results are labels: `taskray export` names COCO categories and Label Studio
    # labels from it without loading the model's config again (no hub access needed then).
    id2label: dict[str, str] | None = None


# Tasks whose results name labels of the model's config.id2label.
LABELLED_TASKS = frozenset({
    "text-classification", "token-classification", "image-classification", "object-detection",
    "image-segmentation", "audio-classification",
})


def model_id2label(task: dict[str, Any]) -> dict[str, str] | None:
    """config.id2label of a job spec's task entry (a TaskSpec as JSON), through the same
    loading code as the job, or None for a task without labels or a config that does not load
    (the manifest is still written: exports then load the config themselves)."""
    if task.get("task") not in LABELLED_TASKS:
        return None
    from operators.loading import LoadOptions, load_config

    try:
        options = LoadOptions(model=task["model"], revision=task.get("revision"), trust_remote_code=bool(task.get("trust_remote_code")))
        id2label = getattr(load_config(options), "id2label", None) or {}
    except Exception:  # never fail a finished job over its label record; see the docstring
        return None
    return {str(k): str(v) for k, v in sorted(id2label.items())} or None


@dataclass
class JobSummary:
    """What `run_job` returns and `taskray run` prints."""

    output: str
    total: int
    ok: int
    failed: int
    errors_by_kind: dict[str, int]
    wall_s: float
    rows_per_s: float
    rows_processed: int
    tasks: dict[str, TaskCounts] = field(default_factory=dict)
    already_complete: bool = False  # a --resume found a finished job and did nothing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """The short table printed at the end of a run."""
        rows = [
            ("rows total", f"{self.total}"),
            ("rows ok", f"{self.ok}"),
            ("rows failed", f"{self.failed}"),
        ]
        if self.errors_by_kind:
            rows.append(("errors by kind", ", ".join(f"{k}={v}" for k, v in sorted(self.errors_by_kind.items()))))
        rows += [
            ("rows this run", f"{self.rows_processed}"),
            ("wall time", f"{self.wall_s:.1f} s"),
            ("rows/s", f"{self.rows_per_s:.1f}"),
            ("output", self.output),
        ]
        if self.already_complete:
            rows.insert(0, ("status", "already complete (found _SUCCESS); nothing to do"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("taskray", "ray", "torch", "transformers", "pyarrow", "tokenizers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def manifest_json(spec: dict[str, Any], summary: JobSummary, history: list[dict[str, Any]] | None = None) -> str:
    """The `_SUCCESS` text. `history`: the runs so far, this one included (default: this run
    alone, as mode "run")."""
    entries = {t.get("name") or t.get("task"): t for t in spec.get("tasks", [])}
    tasks = {name: asdict(c) for name, c in summary.tasks.items()}
    for name, counts in tasks.items():
        if counts.get("id2label") is None and name in entries:
            counts["id2label"] = model_id2label(entries[name])
    data = {
        "spec": spec,
        "rows": {"total": summary.total, "ok": summary.ok, "failed": summary.failed},
        "errors_by_kind": summary.errors_by_kind,
        "tasks": tasks,
        "rows_processed": summary.rows_processed,
        "wall_s": round(summary.wall_s, 3),
        "rows_per_s": round(summary.rows_per_s, 3),
        "output": summary.output,
        "versions": versions(),
        "finished_at": time.strftime(TIME_FORMAT, time.gmtime()),
    }
    data["history"] = history if history is not None else [run_entry(data)]
    return json.dumps(data, indent=2, sort_keys=False)


def run_entry(manifest: dict[str, Any]) -> dict[str, Any]:
    """The history entry (mode "run") of the job run that wrote `manifest`."""
    finished = manifest["finished_at"]
    started = calendar.timegm(time.strptime(finished, TIME_FORMAT)) - float(manifest.get("wall_s") or 0)
    return {
        "mode": "run",
        "started": time.strftime(TIME_FORMAT, time.gmtime(started)),
        "finished": finished,
        "rows": manifest["rows"]["total"],
        "failed": manifest["rows"]["failed"],
    }


def summary_from_manifest(text: str) -> JobSummary:
    data = json.loads(text)
    return JobSummary(
        output=data["output"],
        total=data["rows"]["total"],
        ok=data["rows"]["ok"],
        failed=data["rows"]["failed"],
        errors_by_kind=data["errors_by_kind"],
        wall_s=0.0,
        rows_per_s=0.0,
        rows_processed=0,
        tasks={name: TaskCounts(**c) for name, c in data.get("tasks", {}).items()},
        already_complete=True,
    )
