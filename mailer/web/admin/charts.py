"""Charts as SVG drawn on the server (no script, no inline style: presentation attributes only, so the
dashboard's strict CSP holds). Pure functions: data in, markup out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup

__all__ = ["bar_chart", "line_chart"]

COLOURS = ("#1f6feb", "#d4a72c", "#cf222e", "#2da44e", "#8250df")


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.2f}"


def line_chart(
    starts: Sequence[datetime],
    series: Mapping[str, Sequence[int]],
    *,
    labels: Mapping[str, str] | None = None,
    title: str = "",
    width: int = 640,
    height: int = 200,
    time_format: str = "%m-%d",
) -> Markup:
    """One polyline per series over the same time buckets, with the largest value and the first and last
    bucket's time on the axes, and a legend."""
    labels = labels or {}
    left, right, top, bottom = 48, 8, 24, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    largest = max((max(values, default=0) for values in series.values()), default=0) or 1
    n = max(len(starts), 2)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#888"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" font-size="11">{_number(largest)}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    if starts:
        parts.append(
            f'<text x="{left}" y="{height - 8}" font-size="11">{starts[0].strftime(time_format)}</text>'
        )
        parts.append(
            f'<text x="{left + plot_w}" y="{height - 8}" text-anchor="end" font-size="11">'
            f"{starts[-1].strftime(time_format)}</text>"
        )
    for index, (name, values) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        points = " ".join(
            f"{left + plot_w * i / (n - 1):.1f},{top + plot_h - plot_h * v / largest:.1f}"
            for i, v in enumerate(values)
        )
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        x = left + index * 150
        parts.append(f'<rect x="{x}" y="6" width="10" height="10" fill="{colour}"/>')
        total = sum(values)
        parts.append(
            f'<text x="{x + 14}" y="15" font-size="11">{escape(labels.get(name, name))} ({total:,})</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(rows: Sequence[tuple[str, int]], *, title: str = "", width: int = 640) -> Markup:
    """Horizontal bars, one per (label, value), longest first as given."""
    bar_h, gap, label_w = 18, 6, 160
    height = max(1, len(rows)) * (bar_h + gap) + gap
    largest = max((v for _, v in rows), default=0) or 1
    plot_w = width - label_w - 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, value) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        length = plot_w * value / largest
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" font-size="12">{escape(label)}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{length:.1f}" height="{bar_h}" fill="{COLOURS[0]}"/>'
        )
        parts.append(f'<text x="{label_w + length + 4:.1f}" y="{y + 13}" font-size="12">{value:,}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
