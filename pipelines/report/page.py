"""The report page: one self-contained HTML document (inline CSS and SVG, media as data URIs).

It carries no script. Its Content-Security-Policy allows nothing to load from anywhere but
the page itself and data: URIs, so it stays offline when opened, and should an escaping bug
ever let markup from an output through, no script in it could run.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

from pipelines.report import charts, drawing

CSP = "default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d2430;background:#f5f6f8}
header,main{max-width:1280px;margin:0 auto;padding:0 20px}
header{padding-top:16px}
h1{font-size:22px;margin:8px 0}
h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid #d0d5dd;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
h4{margin:0 0 6px;font-size:12px;color:#555;font-family:ui-monospace,"DejaVu Sans Mono",monospace;word-break:break-all}
h5{margin:0 0 4px;font-size:12px;color:#555}
nav a{margin-right:12px}
table{border-collapse:collapse}
td,th{padding:3px 8px;border-bottom:1px solid #e2e5ea;text-align:left;vertical-align:top}
.num{font-variant-numeric:tabular-nums;color:#444}
.summary td:first-child{color:#555}
.charts{display:flex;flex-wrap:wrap;gap:24px}
.chart text{font-size:11px;fill:#333}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:14px}
.card{background:#fff;border:1px solid #d9dde3;border-radius:6px;padding:10px;overflow:hidden}
.card img{max-width:100%;height:auto;display:block;border-radius:3px}
figure{margin:0 0 6px}
figcaption{font-size:11px;color:#666}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:8px}
audio{width:100%}
.note{color:#8a5a00;font-size:12px;margin:4px 0}
.source,.output,.transcript,.question{white-space:pre-wrap;margin:4px 0;word-break:break-word}
.output{background:#eef6ee;padding:4px;border-radius:3px}
.source{background:#f3f4f6;padding:4px;border-radius:3px}
mark{border-bottom:2px solid;padding:0 1px;border-radius:2px;color:inherit}
mark sub{color:#fff;font-size:9px;padding:0 2px;margin-left:2px;border-radius:2px;vertical-align:baseline}
.swatch{display:inline-block;width:10px;height:10px;margin-right:5px;border-radius:2px;vertical-align:middle}
.legend,.scores{padding-left:0;list-style:none;margin:4px 0}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;margin:6px 0}
.facts dt{color:#555}.facts dd{margin:0}
.depth-legend{display:flex;align-items:center;gap:6px;font-size:11px;color:#555}
.depth-legend .gradient{flex:0 0 120px;height:10px;border-radius:2px;background:linear-gradient(to right,GRADIENT)}
.failed td.error{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;white-space:pre-wrap;word-break:break-word;color:#a11}
footer{max-width:1280px;margin:30px auto;padding:0 20px;color:#666;font-size:12px}
""".replace("GRADIENT", ",".join(drawing.css_colour(c) for c in drawing.VIRIDIS_ANCHORS))


def facts_table(pairs: list[tuple[str, Any]], css_class: str = "summary") -> str:
    rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>" for k, v in pairs)
    return f'<table class="{css_class}">{rows}</table>'


def kinds_text(kinds: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())) or "none"


def job_summary(manifest: dict[str, Any], uri: str) -> str:
    rows = manifest.get("rows", {})
    spec = manifest.get("spec", {})
    pairs = [
        ("output", uri),
        ("input", ", ".join(spec.get("input", []))),
        ("rows total", rows.get("total")),
        ("rows ok (every task)", rows.get("ok")),
        ("rows failed (any task)", rows.get("failed")),
        ("errors by kind", kinds_text(manifest.get("errors_by_kind", {}))),
        ("rows computed in the last run", manifest.get("rows_processed")),
        ("wall time", f"{manifest.get('wall_s', 0):.1f} s"),
        ("rows/s", f"{manifest.get('rows_per_s', 0):.2f}"),
        ("finished at", manifest.get("finished_at")),
        ("kept input columns", ", ".join(spec.get("keep_columns", [])) or "none"),
    ]
    versions = manifest.get("versions", {})
    pairs.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return facts_table(pairs)


def task_summary(task, counts: dict[str, Any], manifest: dict[str, Any]) -> str:
    ok, failed = counts.get("ok", 0), counts.get("failed", 0)
    pairs = [
        ("task", task.task),
        ("model", task.model),
        # As the forward actors resolved it; manifests before 2026-12-07 did not record it.
        ("dtype", counts.get("dtype") or "not recorded"),
        ("rows", ok + failed),
        ("ok", ok),
        ("failed", failed),
        ("error kinds", kinds_text(counts.get("errors_by_kind", {}))),
        ("rows/s (job)", f"{manifest.get('rows_per_s', 0):.2f}"),
        ("nodes", len(counts.get("nodes", {}))),
        ("options", ", ".join(f"{k}={v}" for k, v in task.options.items()) or "defaults"),
        ("result columns", ", ".join(task.results.values())),
    ]
    return facts_table(pairs)


def task_charts(dist, colours) -> str:
    if dist is None:
        return ""
    parts = []
    if dist.labels:
        parts.append(f"<div><h3>labels ({escape(dist.unit)})</h3>{charts.bar_chart(dist.labels, dist.unit, colours)}</div>")
    if dist.scores:
        parts.append(f"<div><h3>scores ({escape(dist.unit)})</h3>{charts.histogram(dist.scores)}</div>")
    return f'<div class="charts">{"".join(parts)}</div>' if parts else ""


def failed_table(failed: list[tuple[Any, str]], total: int) -> str:
    if not total:
        return '<p class="note">no failed rows</p>'
    rows = "".join(f'<tr><td class="row-id">{escape(str(i))}</td><td class="error">{escape(str(e))}</td></tr>' for i, e in failed)
    shown = f"{len(failed)} of {total}, first by id" if len(failed) < total else f"all {total}"
    return f'<p class="note">{escape(shown)}</p><table class="failed"><tr><th>id</th><th>error</th></tr>{rows}</table>'


def document(title: str, nav: list[tuple[str, str]], sections: list[str], limits: str) -> str:
    links = "".join(f'<a href="#{escape(anchor)}">{escape(text)}</a>' for anchor, text in nav)
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><nav>{links}</nav></header>"
        f"<main>{''.join(sections)}</main>"
        f"<footer>Generated by taskray report at {escape(generated)}. {escape(limits)}</footer>"
        "</body></html>\n"
    )
