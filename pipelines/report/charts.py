"""Charts as inline SVG: horizontal bars per label and a score histogram. Plain SVG needs no
script and no library at view time, and its text is escaped like the rest of the page."""

from __future__ import annotations

import bisect
import math
from html import escape
from typing import Callable, Sequence

from pipelines.report.drawing import css_colour, label_colour

HISTOGRAM_BINS = 20
BAR_HEIGHT = 18
LABEL_WIDTH = 160
CHART_WIDTH = 460


def bar_chart(counts: Sequence[tuple[str, int]], unit: str, colours: Callable[[str], tuple[int, int, int]] = label_colour) -> str:
    """One bar per label, longest first, coloured as the label is in the drawings."""
    if not counts:
        return f'<p class="note">no labels in any row ({escape(unit)})</p>'
    top = max(c for _, c in counts) or 1
    bar_space = CHART_WIDTH - LABEL_WIDTH - 60
    height = BAR_HEIGHT * len(counts) + 4
    parts = [f'<svg class="chart" role="img" width="{CHART_WIDTH}" height="{height}" viewBox="0 0 {CHART_WIDTH} {height}">']
    parts.append(f"<title>{escape(unit)} per label</title>")
    for i, (label, count) in enumerate(counts):
        y = i * BAR_HEIGHT + 2
        width = max(1.0, bar_space * count / top)
        shown = label if len(label) <= 24 else label[:23] + "…"
        parts.append(
            f'<g class="bar" data-label="{escape(label)}" data-count="{count}"><title>{escape(label)}: {count} {escape(unit)}</title>'
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 13}" text-anchor="end">{escape(shown)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y + 2}" width="{width:.1f}" height="{BAR_HEIGHT - 4}" fill="{css_colour(colours(label))}"/>'
            f'<text x="{LABEL_WIDTH + width + 4:.1f}" y="{y + 13}">{count}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram(values: Sequence[float], what: str = "score") -> str:
    """Counts of `values` in HISTOGRAM_BINS equal bins over [0, 1] (or their range when they
    leave it). Each bar carries its edges and count (data-low, data-high, data-count)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return f'<p class="note">no {escape(what)}s to plot</p>'
    low, high = min(finite), max(finite)
    if low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    elif high == low:
        low, high = low - 0.5, high + 0.5
    span = high - low
    # Each value is counted in the bin whose shown edges hold it ([low edge, high edge), the
    # last bin closed): binning by int((v - low) / span * bins) can disagree with the edges
    # the page states for a value on an edge.
    edges = [low + span * i / HISTOGRAM_BINS for i in range(HISTOGRAM_BINS)] + [high]
    bins = [0] * HISTOGRAM_BINS
    for v in finite:
        bins[min(HISTOGRAM_BINS - 1, bisect.bisect_right(edges, v) - 1)] += 1
    width, height, pad = CHART_WIDTH, 150, 24
    bin_width = (width - 2 * pad) / HISTOGRAM_BINS
    top = max(bins)
    parts = [f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    parts.append(f"<title>{escape(what)} histogram of {len(finite)} values</title>")
    for i, count in enumerate(bins):
        bar = (height - 2 * pad) * count / top
        lo, hi = edges[i], edges[i + 1]
        parts.append(
            f'<rect class="bin" data-low="{lo!r}" data-high="{hi!r}" data-count="{count}" x="{pad + i * bin_width:.1f}" '
            f'y="{height - pad - bar:.1f}" width="{bin_width - 1:.1f}" '
            f'height="{bar:.1f}" fill="#4c78a8"><title>{lo:.3g}–{hi:.3g}: {count}</title></rect>'
        )
    parts.append(f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#555"/>')
    for x, text in ((pad, f"{low:.3g}"), (width / 2, f"{(low + high) / 2:.3g}"), (width - pad, f"{high:.3g}")):
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle">{escape(text)}</text>')
    parts.append(f'<text x="{pad}" y="14">{escape(what)} (n={len(finite)}, highest bin {top})</text>')
    parts.append("</svg>")
    return "".join(parts)
