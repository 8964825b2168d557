"""Charts drawn on the server as inline SVG: no script, no CDN, readable by screen readers
(a <title>, a <desc> and an aria-label summing the chart up; the page adds the figures as a
table). Colours come from classes (reports.css, dark mode included) with presentation
attributes as the fallback; every text drawn is escaped."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 12, 30
FILLS = {"total": "#a5b4fc", "human": "#4f46e5"}


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[int]
    kind: str  # "total" (drawn full width) or "human" (narrower, in front)


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^n at or above value (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover (the loop always returns)


def _when(at: dt.datetime, tz: ZoneInfo, bucket: dt.timedelta) -> str:
    local = at.astimezone(tz)
    text = f"{local:%a} {local.day} {local:%b}, {local:%H:%M}"
    if bucket > dt.timedelta(hours=1):
        text += f" to {(local + bucket):%H:%M}"
    return text


def timeline_svg(
    *,
    title: str,
    starts: Sequence[dt.datetime],
    bucket: dt.timedelta,
    series: Sequence[Series],
    tz: ZoneInfo,
) -> SafeString:
    """Bars per time bucket, a series in front of the other (people in front of all)."""
    count = len(starts)
    peak = max((max(s.values, default=0) for s in series), default=0)
    top = nice_ceiling(peak)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(count, 1)
    totals = {s.label: sum(s.values) for s in series}
    per = (
        "hour"
        if bucket == dt.timedelta(hours=1)
        else f"{int(bucket.total_seconds() // 3600)} hours"
    )
    summary = f"{title} per {per}, " + "; ".join(
        f"{label}: {total:,}" for label, total in totals.items()
    )
    if peak and starts:
        first = series[0]
        at = max(range(count), key=lambda n: first.values[n])
        summary += f". Busiest: {_when(starts[at], tz, bucket)} ({first.values[at]:,})"
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(summary)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(summary)}</desc>",
    ]
    # Grid lines and the y axis' labels: 0, half and the top.
    for value in (0, top // 2 if top > 1 else None, top):
        if value is None:
            continue
        y = TOP + plot_h - plot_h * value / top
        parts.append(
            f'<line class="chart-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="#e3e6ee" stroke-width="1"/>'
        )
        parts.append(
            f'<text class="chart-label" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="#5d667a">{value:,}</text>'
        )
    # A tick and a date at each day from the start.
    per_day = max(1, round(dt.timedelta(days=1) / bucket))
    for n in range(0, count, per_day):
        x = LEFT + n * step
        local = starts[n].astimezone(tz)
        parts.append(
            f'<line class="chart-axis" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + plot_h}" '
            f'y2="{TOP + plot_h + 4}" stroke="#5d667a" stroke-width="1"/>'
        )
        parts.append(
            f'<text class="chart-label" x="{x:.1f}" y="{HEIGHT - 10}" font-size="11" '
            f'fill="#5d667a">{escape(f"{local.day} {local:%b} {local:%H:%M}")}</text>'
        )
    ordered = sorted(series, key=lambda s: s.kind != "total")
    for s in ordered:
        inset = 0.12 if s.kind == "total" else 0.3
        width = max(step * (1 - 2 * inset), 1)
        fill = FILLS.get(s.kind, FILLS["total"])
        for n, value in enumerate(s.values):
            if not value:
                continue
            height = plot_h * value / top
            x = LEFT + n * step + step * inset
            parts.append(
                f'<rect class="chart-bar chart-{escape(s.kind)}" x="{x:.1f}" '
                f'y="{TOP + plot_h - height:.1f}" width="{width:.1f}" height="{height:.1f}" '
                f'fill="{fill}"/>'
            )
    # A transparent column per bucket: hovering shows its figures.
    for n, at in enumerate(starts):
        figures = ", ".join(f"{s.label}: {s.values[n]:,}" for s in series)
        parts.append(
            f'<rect class="chart-hit" x="{LEFT + n * step:.1f}" y="{TOP}" width="{step:.1f}" '
            f'height="{plot_h}" fill="transparent"><title>{escape(_when(at, tz, bucket))}: '
            f"{escape(figures)}</title></rect>"
        )
    parts.append(
        f'<line class="chart-axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" '
        f'y2="{TOP + plot_h}" stroke="#5d667a" stroke-width="1"/>'
    )
    parts.append("</svg>")
    # Every value interpolated above is a number or passed through escape().
    return mark_safe("".join(parts))  # noqa: S308
