"""Charts as SVG rendered on the server: the dashboard runs air-gapped, so no JavaScript
library and no CDN. Each function returns one ``<svg>`` element as a string, with
``role="img"``, an ``aria-label`` and a ``<title>``; every label from the data (a group
name, a parameter) is escaped, so a hostile name stays text.

Values that are missing or not finite (a group with no positives has no TPR) draw no
mark; bars say "n/a" instead. The plot area is a fixed frame (``WIDTH`` x ``HEIGHT``
less the margins); the page scales the whole SVG with its viewBox.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

WIDTH, HEIGHT = 560, 280
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 34, 44  # margins: y labels, -, legend, x labels
PALETTE = ("#1b6e73", "#c9822b", "#7b5ea7", "#c62828", "#2e7d32", "#1565c0")
MAX_LABEL = 18  # characters of an axis label; the full text is in the mark's tooltip
TICKS = 5


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def _num(value: Any) -> float | None:
    """A finite float, or None for a value that draws no mark."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def _r(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Frame:
    """The plot area and the value ranges mapped onto it."""

    y_lo: float = 0.0
    y_hi: float = 1.0
    x_lo: float = 0.0
    x_hi: float = 1.0

    left = LEFT
    top = TOP
    width = WIDTH - LEFT - RIGHT
    height = HEIGHT - TOP - BOTTOM

    def x(self, v: float) -> float:
        return self.left + (v - self.x_lo) / (self.x_hi - self.x_lo) * self.width

    def y(self, v: float) -> float:
        return self.top + (self.y_hi - v) / (self.y_hi - self.y_lo) * self.height


def _nice(v: float) -> float:
    """``v`` rounded up at its first significant digit (0.0712 -> 0.08), so an axis ends
    on a round number; 0 and negatives are left as they are."""
    if v <= 0:
        return v
    unit = 10 ** math.floor(math.log10(v))
    return round(math.ceil(round(v / unit, 9)) * unit, 12)


def _range(
    values: Sequence[float | None], lo: float | None, hi: float | None
) -> tuple[float, float]:
    """The y range: the given bounds, else the values' (with 0 in it for bars), never empty."""
    found = [v for v in values if v is not None]
    lo = -_nice(-min([0.0, *found])) if lo is None else lo
    hi = _nice(max([lo, *found])) if hi is None else hi
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def _svg(title: str, body: list[str], cls: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {cls}" role="img" '
        f'aria-label="{_e(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" font-family="system-ui, sans-serif" font-size="11">'
        f"<title>{_e(title)}</title>" + "".join(body) + "</svg>"
    )


def _y_axis(f: Frame, label: str = "") -> list[str]:
    out = []
    for i in range(TICKS + 1):
        v = f.y_lo + (f.y_hi - f.y_lo) * i / TICKS
        y = _r(f.y(v))
        out.append(f'<line class="grid" x1="{f.left}" x2="{f.left + f.width}" y1="{y}" '
                   f'y2="{y}" stroke="#e3ded3"/>')  # fmt: skip
        out.append(f'<text x="{f.left - 6}" y="{y}" text-anchor="end" '
                   f'dominant-baseline="middle" fill="#66737a">{v:.3g}</text>')  # fmt: skip
    if label:
        out.append(f'<text x="12" y="{_r(f.top + f.height / 2)}" fill="#66737a" '
                   f'transform="rotate(-90 12 {_r(f.top + f.height / 2)})" '
                   f'text-anchor="middle">{_e(label)}</text>')  # fmt: skip
    return out


def _legend(names: Sequence[str]) -> list[str]:
    out, x = [], LEFT
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        out.append(f'<rect class="key" x="{x}" y="10" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{x + 14}" y="19">{_e(_short(name))}</text>')  # fmt: skip
        x += 24 + 7 * len(_short(name))
    return out


def _bar(f: Frame, x: float, width: float, value: float | None, colour: str, tip: str) -> str:
    if value is None:
        return (f'<text class="na" x="{_r(x + width / 2)}" y="{_r(f.y(max(f.y_lo, 0.0)) - 4)}" '
                f'text-anchor="middle" fill="#66737a"><title>{_e(tip)}</title>n/a</text>')  # fmt: skip
    shown = min(max(value, f.y_lo), f.y_hi)  # a mark never leaves the plot
    y0, y1 = f.y(max(f.y_lo, min(0.0, f.y_hi))), f.y(shown)
    return (f'<rect class="bar" x="{_r(x)}" y="{_r(min(y0, y1))}" width="{_r(width)}" '
            f'height="{_r(abs(y1 - y0))}" fill="{colour}" data-value="{value!r}">'
            f"<title>{_e(tip)}</title></rect>")  # fmt: skip


def grouped_bars(
    groups: Sequence[str],
    series: Mapping[str, Sequence[Any]],
    *,
    title: str,
    y_lo: float | None = None,
    y_hi: float | None = None,
) -> str:
    """One band per group, one bar per series in it: the fairness chart (selection rate,
    TPR and FPR per group of the sensitive attribute)."""
    names = list(series)
    values = {s: [_num(v) for v in series[s]] for s in names}
    for s in names:
        if len(values[s]) != len(groups):
            raise ValueError(f"series {s!r} has {len(values[s])} values for {len(groups)} groups")
    f = Frame(*_range([v for vs in values.values() for v in vs], y_lo, y_hi))
    body = _y_axis(f) + _legend(names)
    band = f.width / max(len(groups), 1)
    bar = band * 0.8 / max(len(names), 1)
    for g, group in enumerate(groups):
        x0 = f.left + g * band + band * 0.1
        for s, name in enumerate(names):
            v = values[name][g]
            tip = f"{group} · {name}: {_fmt(v)}"
            body.append(_bar(f, x0 + s * bar, bar, v, PALETTE[s % len(PALETTE)], tip))
        body.append(f'<text class="group" x="{_r(f.left + (g + 0.5) * band)}" '
                    f'y="{f.top + f.height + 16}" text-anchor="middle">{_e(_short(str(group)))}'
                    f"<title>{_e(group)}</title></text>")  # fmt: skip
    return _svg(title, body, "grouped-bars")


def bars(
    items: Sequence[tuple[str, Any]],
    *,
    title: str,
    y_lo: float | None = None,
    y_hi: float | None = None,
) -> str:
    """One bar per (label, value), its value written above it: a metric compared across
    the model, the baseline and the champion."""
    values = [_num(v) for _, v in items]
    f = Frame(*_range(values, y_lo, y_hi))
    body = _y_axis(f)
    band = f.width / max(len(items), 1)
    for i, ((label, _), v) in enumerate(zip(items, values, strict=True)):
        x = f.left + i * band + band * 0.2
        body.append(_bar(f, x, band * 0.6, v, PALETTE[i % len(PALETTE)], f"{label}: {_fmt(v)}"))
        if v is not None:
            body.append(f'<text class="value" x="{_r(x + band * 0.3)}" y="{_r(f.y(v) - 4)}" '
                        f'text-anchor="middle">{_fmt(v)}</text>')  # fmt: skip
        body.append(f'<text class="group" x="{_r(f.left + (i + 0.5) * band)}" '
                    f'y="{f.top + f.height + 16}" text-anchor="middle">{_e(_short(label))}'
                    f"<title>{_e(label)}</title></text>")  # fmt: skip
    return _svg(title, body, "bars")


def reliability(bins: Sequence[Mapping[str, Any]], *, title: str) -> str:
    """The reliability diagram: each calibration bin's mean predicted probability against
    its observed rate, with the diagonal a perfectly calibrated model would follow. Bins
    with no rows draw nothing."""
    f = Frame()
    body = _y_axis(f, "observed rate")
    for i in range(TICKS + 1):
        x = _r(f.x(i / TICKS))
        body.append(f'<text x="{x}" y="{f.top + f.height + 16}" text-anchor="middle" '
                    f'fill="#66737a">{i / TICKS:.3g}</text>')  # fmt: skip
    body.append(f'<text x="{_r(f.left + f.width / 2)}" y="{HEIGHT - 6}" text-anchor="middle" '
                f'fill="#66737a">mean predicted probability</text>')  # fmt: skip
    body.append(f'<line class="diagonal" x1="{_r(f.x(0))}" y1="{_r(f.y(0))}" x2="{_r(f.x(1))}" '
                f'y2="{_r(f.y(1))}" stroke="#66737a" stroke-dasharray="4 3"/>')  # fmt: skip
    points = []
    for b in bins:
        p, o = _num(b.get("mean_predicted")), _num(b.get("observed_rate"))
        if p is None or o is None or not b.get("count"):
            continue
        points.append((f.x(p), f.y(o), f"bin {b.get('bin', '')}: predicted {_fmt(p)}, "
                       f"observed {_fmt(o)}, {b.get('count')} rows"))  # fmt: skip
    if len(points) > 1:
        path = " ".join(f"{_r(x)},{_r(y)}" for x, y, _ in points)
        body.append(f'<polyline points="{path}" fill="none" stroke="{PALETTE[0]}"/>')
    body += [f'<circle class="point" cx="{_r(x)}" cy="{_r(y)}" r="4" fill="{PALETTE[0]}">'
             f"<title>{_e(tip)}</title></circle>" for x, y, tip in points]  # fmt: skip
    return _svg(title, body, "reliability")


def trial_scores(
    scores: Sequence[Any],
    *,
    title: str,
    metric: str,
    higher_is_better: bool = True,
    labels: Sequence[str] | None = None,
    first: int = 1,
) -> str:
    """A search's trials in order: each trial's score as a point (none for a failed or
    pruned trial without one) and the best score so far as a step line. ``first`` is the
    number the axis gives the first trial (a search that counts from 0 says so)."""
    values = [_num(s) for s in scores]
    found = [v for v in values if v is not None]
    lo, hi = (min(found), max(found)) if found else (0.0, 1.0)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 0.5
    f = Frame(lo - pad, hi + pad, 0.5, max(len(values), 1) + 0.5)
    body = _y_axis(f, metric)
    step = max(1, math.ceil(len(values) / 10))
    for n in range(1, len(values) + 1, step):
        body.append(f'<text x="{_r(f.x(n))}" y="{f.top + f.height + 16}" text-anchor="middle" '
                    f'fill="#66737a">{n - 1 + first}</text>')  # fmt: skip
    body.append(f'<text x="{_r(f.left + f.width / 2)}" y="{HEIGHT - 6}" text-anchor="middle" '
                f'fill="#66737a">trial</text>')  # fmt: skip
    best, path = None, []
    for n, v in enumerate(values, start=1):
        if v is not None and (best is None or (v > best if higher_is_better else v < best)):
            if best is not None:
                path.append(f"{_r(f.x(n))},{_r(f.y(best))}")
            best = v
        if best is not None:
            path.append(f"{_r(f.x(n))},{_r(f.y(best))}")
    if path:
        body.append(f'<polyline class="best" points="{" ".join(path)}" fill="none" '
                    f'stroke="{PALETTE[1]}"/>')  # fmt: skip
    for n, v in enumerate(values, start=1):
        if v is None:
            continue
        name = labels[n - 1] if labels else f"trial {n - 1 + first}"
        body.append(f'<circle class="point" cx="{_r(f.x(n))}" cy="{_r(f.y(v))}" r="3.5" '
                    f'fill="{PALETTE[0]}"><title>{_e(name)}: {_e(metric)} {_fmt(v)}</title>'
                    f"</circle>")  # fmt: skip
    return _svg(title, body, "trial-scores")
