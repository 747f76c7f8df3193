"""The report's metric charts: one SVG per numeric metric across releases, each against its OWN
axis (nice round ticks between the extremes, not only min and max); the decision threshold is a
chart of its own, since it is a cut on the model's score, not on any metric. Every chart marks
the release each environment runs. Pure: releases in, SVG out; every value from git escaped."""

from __future__ import annotations

import math
from html import escape

from tether.commands.report_fmt import num
from tether.core.gates import NOT_METRICS

W, H = 320, 214
LEFT, RIGHT, TOP, BOTTOM = 50, W - 12, 38, H - 30
LINE, LIVE = "#1f77b4", "#2ca02c"


def plots(releases: list[dict], live: dict[str, list[str]]) -> str:
    """`live`: release tag -> the environments that run it now."""
    usable = [r for r in releases if r["manifest"] is not None]
    names = sorted({k for r in usable for k, v in (r["manifest"].get("metrics") or {}).items()
                    if num(v) and k not in NOT_METRICS})
    thresholds = [r["manifest"]["components"]["threshold"].get("value") for r in usable]
    series = [(n, [(r["manifest"].get("metrics") or {}).get(n) for r in usable]) for n in names]
    if any(num(t) for t in thresholds):
        series.append(("decision threshold", thresholds))
    if not series:
        return "<p class='muted'>No numeric metrics recorded.</p>"
    labels = [r["version"] for r in usable]
    marks = [", ".join(live.get(r["tag"], [])) for r in usable]
    charts = "".join(f"<div class='plot'>{chart(name, labels, values, marks)}</div>" for name, values in series)
    return f"<div class='plots'>{charts}</div>"


def ticks(lo: float, hi: float, want: int = 5) -> list[float]:
    """Round values spanning [lo, hi]: steps of 1, 2 or 5 times a power of ten."""
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.1 or 0.5
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(want - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    out: list[float] = []
    v = first
    while v <= hi + step * 0.5 and len(out) < 12:
        out.append(round(v, 12))
        v += step
    if out[-1] < hi:
        out.append(round(out[-1] + step, 12))
    return out


def chart(name: str, labels: list[str], values: list, marks: list[str]) -> str:
    """One metric across releases: its values (solid), its own axis, each live release marked."""
    nums = [float(v) for v in values if num(v)]
    axis = ticks(min(nums), max(nums)) if nums else [0.0, 1.0]
    lo, hi = axis[0], axis[-1]
    n = max(len(labels), 1)

    def px(i: int) -> float:
        return LEFT + (RIGHT - LEFT) * (i + 0.5) / n

    def py(v: float) -> float:
        return BOTTOM - (BOTTOM - TOP) * (v - lo) / ((hi - lo) or 1.0)

    out = [f"<text x='4' y='15' font-size='13' font-weight='600'>{escape(name)}</text>"]
    out += [_grid(v, py(v)) for v in axis]
    out.append(f"<line x1='{LEFT}' y1='{BOTTOM}' x2='{RIGHT}' y2='{BOTTOM}' stroke='#999'/>")
    out.append(_live_marks(marks, px))
    step = max(1, math.ceil(n * 46 / (RIGHT - LEFT)))  # about 46 px per label
    for i, label in enumerate(labels):
        if i % step == 0 or i == n - 1 or marks[i]:
            out.append(f"<text x='{px(i):.1f}' y='{BOTTOM + 15}' font-size='10' text-anchor='middle'>"
                       f"v{escape(label)}</text>")
    out.append(_series(values, px, py, name, labels))
    return (f"<svg viewBox='0 0 {W} {H}' role='img' aria-label='{escape(name)} across releases'>"
            f"{''.join(out)}</svg>")


def _grid(v: float, y: float) -> str:
    return (f"<line x1='{LEFT}' y1='{y:.1f}' x2='{RIGHT}' y2='{y:.1f}' stroke='#eee'/>"
            f"<text x='{LEFT - 5}' y='{y + 3.5:.1f}' font-size='10' text-anchor='end' fill='#555'>{v:.4g}</text>")


def _live_marks(marks: list[str], px) -> str:
    out = []
    for i, envs in enumerate(marks):
        if envs:
            x = px(i)
            out.append(f"<g class='livemark'><line x1='{x:.1f}' y1='{TOP - 8}' x2='{x:.1f}' y2='{BOTTOM}' "
                       f"stroke='{LIVE}' stroke-width='2' stroke-dasharray='4 3'/>"
                       f"<text x='{min(max(x, LEFT + 30), RIGHT - 30):.1f}' y='{TOP - 11}' font-size='10' "
                       f"text-anchor='middle' fill='{LIVE}'>{escape(envs)}</text></g>")
    return "".join(out)


def _series(values: list, px, py, name: str, labels: list[str]) -> str:
    pts = [(px(i), py(float(v)), v, labels[i]) for i, v in enumerate(values) if num(v)]
    if not pts:
        return ""
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y, _v, _l in pts)
    dots = "".join(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3.5' fill='{LINE}'><title>{escape(name)} v{escape(lab)}: "
                   f"{escape(str(v))}</title></circle>" for x, y, v, lab in pts)
    return f"<polyline points='{line}' fill='none' stroke='{LINE}' stroke-width='2'/>{dots}"
