"""The registry report as one self-contained HTML page: inline CSS, inline SVG, no script, no
network. Pure: report data in, a string out. Every value from git (tags, approvers, reasons,
metric names) is escaped."""

from __future__ import annotations

from datetime import datetime
from html import escape

from tether.clock import parse_iso
from tether.core.gates import NOT_METRICS
from tether.core.manifest import ManifestDiff, OutputEntry

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#bab0ac")
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:19px;border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
h3{font-size:15px;margin:22px 0 6px}.muted{color:#777}code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
table{border-collapse:collapse;width:100%;margin:6px 0 14px}th,td{border:1px solid #e3e3e3;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f6f6f6;font-weight:600}tr.rollback td{background:#fff1f0}.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;background:#eee}
.badge.production{background:#d9f2d9}.badge.staging{background:#dbe9fb}.badge.archived{background:#eee;color:#777}.badge.rollback{background:#ffd6d1}
.plots{display:flex;flex-wrap:wrap;gap:14px}.plot{border:1px solid #e3e3e3;padding:6px}ul.changes{margin:4px 0 10px 18px;padding:0}
.live{display:flex;gap:18px;flex-wrap:wrap;margin:8px 0}.live div{border:1px solid #e3e3e3;padding:6px 10px;border-radius:4px}
"""


def render(reports: list, title: str, head: str | None) -> str:
    body = [f"<h1>{escape(title)}</h1>",
            f"<p class='muted'>Read from git at commit <code>{escape((head or 'none')[:12])}</code>: "
            "releases are tags, environments are branches. Static file: no script, no network.</p>"]
    for rep in reports:
        body.append(_model(rep))
    if not reports:
        body.append("<p>No models declared in dvc.yaml.</p>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _model(rep) -> str:
    colors = {r["tag"]: PALETTE[i % len(PALETTE)] for i, r in enumerate(rep.releases)}
    out = [f"<section id='model-{escape(rep.model)}'><h2>{escape(rep.model)}</h2>", _live(rep)]
    out.append("<h3>Environments</h3>")
    for env, events in rep.environments.items():
        out.append(_environment(env, events, colors))
    out.append("<h3>Releases</h3>" + _releases(rep.releases))
    out.append("<h3>Metrics across releases</h3>" + _plots(rep.releases))
    out.append("<h3>What changed between consecutive releases</h3>" + _diffs(rep.diffs))
    return "\n".join(out) + "</section>"


def _live(rep) -> str:
    cells = []
    for env, events in rep.environments.items():
        now = events[-1]["release"] if events else ""
        cells.append(f"<div><b>{escape(env)}</b>: {escape(now) if now else '<span class=muted>(empty)</span>'}</div>")
    latest = rep.releases[-1]["tag"] if rep.releases else "(no releases)"
    return f"<div class='live'><div><b>latest</b>: {escape(latest)}</div>{''.join(cells)}</div>"


# -- environments ----------------------------------------------------------------------------
def _time(text: str) -> datetime | None:
    return parse_iso(text)


def _environment(env: str, events: list[dict], colors: dict) -> str:
    head = f"<h4>{escape(env)} <span class='muted'>({len(events)} move(s))</span></h4>"
    if not events:
        return head + "<p class='muted'>No moves yet.</p>"
    rows = []
    for ev in reversed(events):  # newest first, as `tether history` prints
        action = ev.get("action") or ""
        cls = " class='rollback'" if action == "rollback" else ""
        mark = "<span class='badge rollback'>rollback</span>" if action == "rollback" else escape(action)
        rows.append(f"<tr{cls}><td class='mono'>{escape(str(ev.get('time') or ''))}</td><td>{mark}</td>"
                    f"<td>{escape(str(ev.get('previous') or 'none'))} → {escape(str(ev.get('release') or '(no release)'))}</td>"
                    f"<td>{escape(str(ev.get('approver') or ''))}</td><td>{escape(str(ev.get('reason') or ''))}</td>"
                    f"<td class='mono'>{escape(str(ev.get('commit') or '')[:12])}</td></tr>")
    table = ("<table><tr><th>time</th><th>action</th><th>release</th><th>by</th><th>why</th><th>commit</th></tr>"
             + "".join(rows) + "</table>")
    return head + _timeline(events, colors) + table


def _timeline(events: list[dict], colors: dict, width: int = 1000, height: int = 64) -> str:
    """Which release was live when: one bar per stretch of time, rollbacks marked in red."""
    times = [_time(ev.get("time") or "") for ev in events]
    known = [t for t in times if t is not None]
    if not known:
        return ""
    start, end = min(known), max(known)
    span = max((end - start).total_seconds(), 1.0)
    end_s = span * 1.12  # the live release's bar runs on past the last move
    x0, x1 = 10, width - 10

    def x(t: datetime | None) -> float:
        secs = (t - start).total_seconds() if t is not None else 0.0
        return x0 + (x1 - x0) * secs / end_s

    parts = []
    for i, ev in enumerate(events):
        a = x(times[i])
        b = x(times[i + 1]) if i + 1 < len(events) else x1
        tag = str(ev.get("release") or "")
        color = colors.get(tag, "#ccc")
        parts.append(f"<rect x='{a:.1f}' y='14' width='{max(b - a, 1.5):.1f}' height='26' fill='{color}'>"
                     f"<title>{escape(tag or '(no release)')} from {escape(str(ev.get('time')))}</title></rect>")
        if b - a > 70:
            parts.append(f"<text x='{a + 4:.1f}' y='31' font-size='11' fill='#fff'>{escape(tag.rpartition('@')[2])}</text>")
        if ev.get("action") == "rollback":
            parts.append(f"<path d='M{a - 6:.1f},2 L{a + 6:.1f},2 L{a:.1f},13 Z' fill='#d62728'>"
                         f"<title>rollback by {escape(str(ev.get('approver')))}: {escape(str(ev.get('reason')))}</title></path>")
    parts.append(f"<text x='{x0}' y='56' font-size='10' fill='#777'>{escape(start.isoformat(timespec='seconds'))}</text>")
    parts.append(f"<text x='{x1}' y='56' font-size='10' fill='#777' text-anchor='end'>"
                 f"{escape(end.isoformat(timespec='seconds'))}</text>")
    return (f"<svg width='100%' viewBox='0 0 {width} {height}' "
            f"role='img' aria-label='timeline'>{''.join(parts)}</svg>")


# -- releases ---------------------------------------------------------------------------------
def _releases(releases: list[dict]) -> str:
    rows = []
    for r in reversed(releases):
        m = r["manifest"]
        stage = escape(r["stage"])
        badges = "".join(f"<span class='badge {escape(s)}'>{escape(s)}</span> " for s in stage.split(","))
        if m is None:
            rows.append(f"<tr><td><b>{escape(r['tag'])}</b></td><td>{badges}</td><td colspan='7'>"
                        f"not a usable release: {escape(str(r['problem']))}</td></tr>")
            continue
        c = m["components"]
        metrics = " ".join(f"{escape(str(k))}={escape(str(v))}" for k, v in sorted((m.get("metrics") or {}).items())
                           if _num(v))
        rows.append(
            f"<tr><td><b>{escape(r['tag'])}</b><br><span class='mono muted'>{escape(r['commit'][:12])}</span></td>"
            f"<td>{badges}<br><span class='muted'>{escape(str(r['created_at']))} by {escape(str(r['released_by']))}</span></td>"
            f"<td>{_files(c['weights'], 'sha256')}</td><td>{_files(c['data'], 'md5')}</td>"
            f"<td>{len(c['code'])} file(s)<br><span class='mono muted'>{escape(_short(c['params'].get('sha256')))}</span></td>"
            f"<td class='mono'>{escape(_short((c['params'].get('config') or {}).get('tree')))}</td>"
            f"<td>{escape(str(c['threshold'].get('value')))}</td><td class='mono'>{metrics}</td></tr>")
    return ("<table><tr><th>release</th><th>stage, made</th><th>weights</th><th>data</th><th>code, params</th>"
            "<th>conf tree</th><th>threshold</th><th>metrics</th></tr>" + "".join(rows) + "</table>")


def _files(entries: list[OutputEntry], key: str) -> str:
    items = [f"<span class='mono' title='{escape(str(e.get(key) or e.get('md5') or e.get('git_id') or ''))}'>"
             f"{escape(e['path'])}</span>" for e in entries]
    return "<br>".join(items) or "<span class='muted'>none</span>"


def _short(value) -> str:
    return str(value)[:12] if value else "-"


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# -- metric plots -----------------------------------------------------------------------------
def _plots(releases: list[dict]) -> str:
    usable = [r for r in releases if r["manifest"] is not None]
    names = sorted({k for r in usable for k, v in (r["manifest"].get("metrics") or {}).items()
                    if _num(v) and k not in NOT_METRICS})
    if not names:
        return "<p class='muted'>No numeric metrics recorded.</p>"
    labels = [r["version"] for r in usable]
    thresholds = [r["manifest"]["components"]["threshold"].get("value") for r in usable]
    charts = []
    for name in names:
        values = [(r["manifest"].get("metrics") or {}).get(name) for r in usable]
        charts.append(f"<div class='plot'>{chart(name, labels, values, thresholds)}</div>")
    return f"<div class='plots'>{''.join(charts)}</div>"


def chart(name: str, labels: list[str], values: list, thresholds: list, w: int = 340, h: int = 200) -> str:
    """One metric across releases (solid) with the decision threshold (dashed)."""
    nums = [v for v in values + thresholds if _num(v)]
    lo, hi = (min(nums), max(nums)) if nums else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    left, right, top, bottom = 46, w - 12, 24, h - 30
    n = max(len(labels), 1)

    def px(i: int) -> float:
        return left + (right - left) * (i + 0.5) / n

    def py(v: float) -> float:
        return bottom - (bottom - top) * (v - lo) / (hi - lo)

    out = [f"<text x='{left}' y='15' font-size='12' font-weight='600'>{escape(name)}</text>",
           f"<line x1='{left}' y1='{bottom}' x2='{right}' y2='{bottom}' stroke='#999'/>",
           f"<line x1='{left}' y1='{top}' x2='{left}' y2='{bottom}' stroke='#999'/>"]
    for v in (lo + pad, hi - pad):
        out.append(f"<text x='{left - 4}' y='{py(v) + 4:.1f}' font-size='10' text-anchor='end' fill='#555'>{v:.3g}</text>")
    for i, label in enumerate(labels):
        out.append(f"<text x='{px(i):.1f}' y='{bottom + 14}' font-size='10' text-anchor='middle'>v{escape(label)}</text>")
    out.append(_series(values, px, py, "#1f77b4", "", name, labels))
    out.append(_series(thresholds, px, py, "#d62728", " stroke-dasharray='5 4'", "threshold", labels))
    out.append(f"<text x='{right}' y='15' font-size='10' text-anchor='end' fill='#d62728'>- - threshold</text>")
    return (f"<svg width='{w}' height='{h}' viewBox='0 0 {w} {h}' role='img' "
            f"aria-label='{escape(name)} across releases'>{''.join(out)}</svg>")


def _series(values: list, px, py, color: str, dash: str, name: str, labels: list[str]) -> str:
    pts = [(px(i), py(float(v)), v, labels[i]) for i, v in enumerate(values) if _num(v)]
    if not pts:
        return ""
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y, _v, _l in pts)
    dots = "".join(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{color}'><title>{escape(name)} v{escape(lab)}: "
                   f"{escape(str(v))}</title></circle>" for x, y, v, lab in pts)
    return f"<polyline points='{line}' fill='none' stroke='{color}' stroke-width='2'{dash}/>{dots}"


# -- diffs ------------------------------------------------------------------------------------
def _diffs(diffs: list[ManifestDiff]) -> str:
    if not diffs:
        return "<p class='muted'>Fewer than two releases.</p>"
    return "".join(f"<h4>{escape(d['from'])} → {escape(d['to'])}</h4><ul class='changes'>{''.join(_changes(d))}</ul>"
                   for d in reversed(diffs))


def _changes(d: ManifestDiff) -> list[str]:
    items = []
    for name, comp in d["components"].items():
        if not comp["changed"]:
            items.append(f"<li>{escape(name)}: same</li>")
            continue
        if name in ("weights", "data", "code"):
            files = [f"{k[0].upper()} {p}" for k in ("added", "removed", "modified") for p in comp[k]]
            detail = ", ".join(files)
        elif name == "params":
            detail = ", ".join(f"{k}: {v['from']!r} → {v['to']!r}" for k, v in comp["keys"].items())
        else:
            detail = f"{comp['from']} → {comp['to']}"
        items.append(f"<li><b>{escape(name)} changed</b>: <span class='mono'>{escape(detail)}</span></li>")
    if d.get("feature_schema_changed"):
        items.append("<li><b>feature schema changed</b></li>")
    deltas = [f"{k}: {v['from']} → {v['to']} ({v['delta']:+})" for k, v in d["metrics"].items() if v["delta"] is not None]
    if deltas:
        items.append(f"<li>metrics: <span class='mono'>{escape('; '.join(deltas))}</span></li>")
    return items
