"""Inline SVG charts for the dataset report: a page that opens from disk needs no script
library, and a few hundred lines of markup draw faster than any charting bundle loads.

Each function returns one ``<svg>`` element as a string; every text in it is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

#: Colours for series and classes, distinguishable in colour and in grey.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 56, 12, 12, 36


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten)."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    return [first + i * step for i in range(int(math.ceil((hi - first) / step)) + 1)]


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.2g}"


@dataclass(frozen=True, slots=True)
class _Frame:
    """Data-to-pixel mapping of one plot area."""

    width: int
    height: int
    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, v: float) -> float:
        return _PAD_L + (v - self.x0) / (self.x1 - self.x0) * (self.width - _PAD_L - _PAD_R)

    def y(self, v: float) -> float:
        inner = self.height - _PAD_T - _PAD_B
        return self.height - _PAD_B - (v - self.y0) / (self.y1 - self.y0) * inner

    def axes(self, x_label: str, y_label: str) -> list[str]:
        out = [f'<line x1="{_PAD_L}" y1="{self.y(self.y0):.1f}" x2="{self.width - _PAD_R}" '
               f'y2="{self.y(self.y0):.1f}" class="axis"/>',
               f'<line x1="{_PAD_L}" y1="{_PAD_T}" x2="{_PAD_L}" '
               f'y2="{self.y(self.y0):.1f}" class="axis"/>']
        for t in nice_ticks(self.x0, self.x1):
            if self.x0 <= t <= self.x1:
                out.append(f'<text x="{self.x(t):.1f}" y="{self.height - _PAD_B + 14}" '
                           f'class="tick" text-anchor="middle">{_fmt(t)}</text>')
        for t in nice_ticks(self.y0, self.y1):
            if self.y0 <= t <= self.y1:
                out.append(f'<text x="{_PAD_L - 4}" y="{self.y(t) + 4:.1f}" class="tick" '
                           f'text-anchor="end">{_fmt(t)}</text>')
                out.append(f'<line x1="{_PAD_L}" y1="{self.y(t):.1f}" x2="{self.width - _PAD_R}"'
                           f' y2="{self.y(t):.1f}" class="grid"/>')
        out.append(f'<text x="{(self.width + _PAD_L) / 2:.0f}" y="{self.height - 4}" '
                   f'class="label" text-anchor="middle">{escape(x_label)}</text>')
        out.append(f'<text x="12" y="{self.height / 2:.0f}" class="label" text-anchor="middle" '
                   f'transform="rotate(-90 12 {self.height / 2:.0f})">{escape(y_label)}</text>')
        return out


def _bounds(values: Sequence[float], zero: bool) -> tuple[float, float]:
    lo = min(values, default=0.0)
    hi = max(values, default=1.0)
    if zero:
        lo = min(lo, 0.0)
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _legend(names: Sequence[str], width: int) -> str:
    items = "".join(f'<span class="key"><i style="background:{colour(i)}"></i>{escape(n)}</span>'
                    for i, n in enumerate(names))
    return f'<div class="legend" style="max-width:{width}px">{items}</div>'


def line_chart(series: dict[str, Sequence[tuple[float, float]]], *, x_label: str, y_label: str,
               title: str, width: int = 640, height: int = 260, step: bool = False) -> str:
    """One polyline per series (in the order given), with a legend under the plot.
    ``step`` draws a staircase: right for cumulative counts that change at events."""
    points = [p for s in series.values() for p in s]
    if not points:
        return ""
    frame = _Frame(width, height, *_bounds([p[0] for p in points], False),
                   *_bounds([p[1] for p in points], True))
    body = frame.axes(x_label, y_label)
    for i, (name, pts) in enumerate(series.items()):
        coords: list[str] = []
        last_y: float | None = None
        for x, y in sorted(pts):
            if step and last_y is not None:
                coords.append(f"{frame.x(x):.1f},{frame.y(last_y):.1f}")
            coords.append(f"{frame.x(x):.1f},{frame.y(y):.1f}")
            last_y = y
        body.append(f'<polyline fill="none" stroke="{colour(i)}" stroke-width="1.6" '
                    f'points="{" ".join(coords)}"><title>{escape(name)}</title></polyline>')
    return (f'<figure><svg role="img" aria-label="{escape(title)}" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}">{"".join(body)}</svg>'
            f'<figcaption>{escape(title)}</figcaption>{_legend(list(series), width)}</figure>')


@dataclass(frozen=True, slots=True)
class MapPoint:
    """One sample on the embedding map: position, class index, and what hovering shows."""

    x: float
    y: float
    group: int
    caption: str
    thumb: str | None = None


def scatter(points: Sequence[MapPoint], groups: Sequence[str], *, title: str,
            width: int = 640, height: int = 480) -> str:
    """A scatter plot whose points carry their caption and thumbnail in data attributes,
    for the report's hover box (no axes: a projection's units mean nothing)."""
    if not points:
        return ""
    pad = 10
    xs = [p.x for p in points]
    ys = [p.y for p in points]
    x0, x1 = _bounds(xs, False)
    y0, y1 = _bounds(ys, False)
    body = []
    for p in points:
        cx = pad + (p.x - x0) / (x1 - x0) * (width - 2 * pad)
        cy = height - pad - (p.y - y0) / (y1 - y0) * (height - 2 * pad)
        thumb = f' data-thumb="{escape(p.thumb)}"' if p.thumb else ""
        body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{colour(p.group)}" '
                    f'data-caption="{escape(p.caption)}"{thumb}/>')
    return (f'<figure><svg class="map" role="img" aria-label="{escape(title)}" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}">{"".join(body)}</svg>'
            f'<figcaption>{escape(title)}</figcaption>{_legend(groups, width)}</figure>')
