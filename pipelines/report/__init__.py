"""`taskray report`: one static HTML page about a finished job's output.

    from pipelines.report import write_report
    result = write_report("s3://bucket/labels/", "report.html", sample=12, seed=0)

The page holds a summary per task (rows, ok, failed, error kinds, rows/s, model, versions,
from `_SUCCESS`), label and score charts over every row, a gallery of `sample` rows per
task drawn as each task's result is usually looked at (boxes, masks, depth colours, audio
players, highlighted entities and answers, outputs beside their source), and the failed rows
with their errors. Everything is inline (media as data URIs within media.py's limits), so
the file opens offline and loads nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from html import escape
from typing import Any

from pipelines.job_output import FILE_COLUMN, ROW_COLUMN, ReportInputError, open_output, read_index

DEFAULT_SAMPLE = 12
DEFAULT_FAILED = 50
__all__ = ["DEFAULT_FAILED", "DEFAULT_SAMPLE", "ReportInputError", "ReportResult", "write_report"]


@dataclass
class ReportResult:
    path: str
    sampled: dict[str, list[Any]] = field(default_factory=dict)  # task name -> row ids in its gallery
    failed_shown: dict[str, list[Any]] = field(default_factory=dict)  # task name -> failed row ids listed
    bytes: int = 0


def write_report(output: str, path: str, sample: int = DEFAULT_SAMPLE, seed: int = 0, failed: int = DEFAULT_FAILED) -> ReportResult:
    """Write the report of the finished job output at `output` (local or s3://) to the local
    file `path`. Raises ReportInputError when `output` is not a finished taskray output."""
    import pyarrow.compute as pc

    from pipelines.report import page, views
    from pipelines.report.drawing import Palette
    from pipelines.report.distributions import distribution, index_paths
    from pipelines.job_output import fetch_rows
    from pipelines.report.limits import describe
    from pipelines.report.sampling import sample_indices

    if sample < 0 or failed < 0:
        raise ValueError(f"sample and failed must be >= 0, got sample={sample}, failed={failed}")
    job = open_output(output)
    extra = [p for t in job.tasks for p in index_paths(job, t)]
    index = read_index(job, extra)
    ids = index.column(job.id_column).to_pylist()
    files = index.column(FILE_COLUMN).to_pylist()
    rows = index.column(ROW_COLUMN).to_pylist()

    result = ReportResult(os.path.abspath(path))
    chosen: dict[str, list[int]] = {}
    failures: dict[str, tuple[list[tuple[Any, str]], int]] = {}
    for t in job.tasks:
        errors = index.column(t.error)
        ok = pc.is_null(errors).to_pylist()
        ok_positions = [i for i, good in enumerate(ok) if good]
        picked = [ok_positions[i] for i in sample_indices([ids[i] for i in ok_positions], sample, seed)]
        chosen[t.name] = picked
        result.sampled[t.name] = [ids[i] for i in picked]
        bad = sorted(((ids[i], e) for i, e in enumerate(errors.to_pylist()) if e is not None), key=lambda x: str(x[0]))
        failures[t.name] = (bad[:failed], len(bad))
        result.failed_shown[t.name] = [i for i, _ in bad[:failed]]

    fetched = fetch_rows(job, sorted({(files[i], rows[i]) for picked in chosen.values() for i in picked}))
    sections = [f'<section id="job"><h2>Job</h2>{page.job_summary(job.manifest, job.uri)}</section>']
    nav = [("job", "job")]
    for t in job.tasks:
        anchor = f"task-{t.name}"
        nav.append((anchor, t.name))
        counts = job.manifest.get("tasks", {}).get(t.name, {})
        dist = distribution(index, t)
        colours = Palette(label for label, _ in (dist.labels if dist else []))
        cards = "".join(views.render_card(t, fetched[(files[i], rows[i])], ids[i], colours) for i in chosen[t.name])
        shown, total = failures[t.name]
        gallery_note = f"{len(chosen[t.name])} of {counts.get('ok', len(chosen[t.name]))} ok rows, sampled with seed {seed}"
        sections.append(
            f'<section id="{escape(anchor)}" class="task"><h2>{escape(t.name)}</h2>'
            f"{page.task_summary(t, counts, job.manifest)}"
            f"{page.task_charts(dist, colours)}"
            f'<h3>sample</h3><p class="note">{escape(gallery_note)}</p><div class="gallery">{cards}</div>'
            f'<h3>failed rows</h3>{page.failed_table(shown, total)}</section>'
        )
    html = page.document(f"taskray report: {job.uri}", nav, sections, describe())
    os.makedirs(os.path.dirname(result.path) or ".", exist_ok=True)
    tmp = f"{result.path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(html)
    os.replace(tmp, result.path)
    result.bytes = len(html.encode("utf-8"))
    return result
