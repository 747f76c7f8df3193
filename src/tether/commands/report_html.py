"""The registry report as one self-contained HTML page: inline CSS, inline SVG, no script, no
network. Pure: report data in, a string out. Every value from git (tags, approvers, reasons,
notes, metric names) is escaped. Readable from a 360 px phone to a wide screen without the page
scrolling sideways: tables turn into one card per row on narrow screens (and otherwise scroll
inside their own box), charts scale to their column. The environments' timelines are
report_timeline, the metric charts report_charts."""

from __future__ import annotations

from html import escape

from tether.commands.report_charts import plots
from tether.commands.report_fmt import num, short, size, stamp
from tether.commands.report_timeline import environment
from tether.core.manifest import ManifestDiff, OutputEntry

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#c9a227", "#e1577a", "#9c755f", "#8c8c8c")
SHOWN_FILES = 4  # more files than this: the first few, the rest folded away
# the releases table's columns (release, stage, notes, weights, data, code, conf, threshold, metrics),
# in percent: a fixed layout, so a long path or note breaks inside its column, never widens the table
COLUMNS = (13, 13, 15, 17, 13, 7, 6, 7, 9)
CSS = """
*{box-sizing:border-box}html{-webkit-text-size-adjust:100%}
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px auto;max-width:1200px;color:#222;padding:0 12px}
h1{font-size:21px;margin:0 0 4px;overflow-wrap:anywhere}h2{font-size:19px;border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px;overflow-wrap:anywhere}
h3{font-size:15px;margin:22px 0 6px}h4{margin:16px 0 6px}.muted{color:#666}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
td,th,li,p,summary{overflow-wrap:break-word}.free{overflow-wrap:anywhere}td.nw{white-space:nowrap}
.tw{max-width:100%;overflow-x:auto;margin:6px 0 14px}
table{border-collapse:collapse;width:100%}table.rel{table-layout:fixed;min-width:720px}th,td{border:1px solid #e3e3e3;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f6f6f6;font-weight:600}tr.rollback td{background:#fff1f0}
.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;background:#eee;margin:1px 2px 1px 0}
.badge.production{background:#d9f2d9}.badge.staging{background:#dbe9fb}.badge.archived{background:#eee;color:#666}
.badge.rollback{background:#ffd6d1}.badge.on{background:#2ca02c;color:#fff}
ul.files{list-style:none;margin:0;padding:0}ul.files li{margin:0 0 2px}.size{color:#666;white-space:nowrap;font-size:12px}
.notes{white-space:pre-wrap}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,290px),1fr));gap:12px}
.plot{border:1px solid #e3e3e3;padding:4px;min-width:0}.plot svg{display:block;width:100%;height:auto}
ul.changes{margin:4px 0 10px 18px;padding:0}
.current{display:flex;gap:10px;flex-wrap:wrap;margin:8px 0}.current div{border:1px solid #e3e3e3;padding:5px 9px;border-radius:4px;overflow-wrap:anywhere}
.tl{display:flex;gap:1px;overflow-x:auto;height:30px;margin:4px 0 2px}
.seg{flex:0 0 0;min-width:12px;display:flex;align-items:center;overflow:hidden;color:#fff;font-size:11px;white-space:nowrap}
.seg span{padding:0 4px;overflow:hidden;text-overflow:ellipsis}.seg.rb{box-shadow:inset 4px 0 #d62728}
.seg.now{outline:2px solid #222;outline-offset:-2px;font-weight:600;min-width:88px}
.tlaxis{display:flex;justify-content:space-between;gap:8px;flex-wrap:wrap;color:#666;font-size:11px;margin-bottom:8px}
@media (max-width:720px){
 table.stack,table.stack tbody,table.stack tr,table.stack td{display:block;width:100%;min-width:0}table.stack colgroup{display:none}
 table.stack thead{display:none}table.stack tr{border:1px solid #ddd;margin:0 0 8px;border-radius:4px}
 table.stack td{border:0;border-top:1px solid #f0f0f0;padding:3px 8px}
 table.stack td::before{content:attr(data-label);display:block;font-size:11px;color:#888;text-transform:uppercase}
}
"""


def render(reports: list, title: str, head: str | None, written_at: str = "") -> str:
    made = f" on {escape(stamp(written_at))}" if written_at else ""
    body = [f"<h1>{escape(title)}</h1>",
            f"<p class='muted'>Read from git at commit <code>{escape((head or 'none')[:12])}</code>{made}: "
            "releases are tags, environments are branches. Static file: no script, no network.</p>"]
    for rep in reports:
        body.append(_model(rep))
    if not reports:
        body.append("<p>No models declared in dvc.yaml.</p>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def live_map(rep) -> dict[str, list[str]]:
    """Release tag -> the environments that run it now."""
    out: dict[str, list[str]] = {}
    for env, events in rep.environments.items():
        if events and events[-1].get("release"):
            out.setdefault(events[-1]["release"], []).append(env)
    return out


def _model(rep) -> str:
    colors = {r["tag"]: PALETTE[i % len(PALETTE)] for i, r in enumerate(rep.releases)}
    live = live_map(rep)
    out = [f"<section id='model-{escape(rep.model)}'><h2>{escape(rep.model)}</h2>", _live(rep)]
    out.append("<h3>Environments</h3>")
    for env, events in rep.environments.items():
        out.append(environment(env, events, colors))
    out.append("<h3>Releases</h3>" + _releases(rep.releases, live))
    out.append("<h3>Metrics across releases</h3>" + plots(rep.releases, live))
    out.append("<h3>What changed between consecutive releases</h3>" + _diffs(rep.diffs))
    return "\n".join(out) + "</section>"


def _live(rep) -> str:
    cells = []
    for env, events in rep.environments.items():
        now = events[-1]["release"] if events else ""
        cells.append(f"<div><b>{escape(env)}</b>: {escape(now) if now else '<span class=muted>(empty)</span>'}</div>")
    latest = rep.releases[-1]["tag"] if rep.releases else "(no releases)"
    return f"<div class='current'><div><b>latest</b>: {escape(latest)}</div>{''.join(cells)}</div>"


# -- releases ---------------------------------------------------------------------------------
def _releases(releases: list[dict], live: dict[str, list[str]]) -> str:
    rows = [_release_row(r, live.get(r["tag"], [])) for r in reversed(releases)]
    cols = "".join(f"<col style='width:{w}%'>" for w in COLUMNS)
    return (f"<div class='tw'><table class='stack rel'><colgroup>{cols}</colgroup><thead><tr><th>release</th>"
            "<th>stage, made</th><th>notes</th>"
            "<th>weights</th><th>data</th><th>code, params</th><th>conf tree</th><th>threshold</th><th>metrics</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")


def _release_row(r: dict, envs: list[str]) -> str:
    badges = "".join(f"<span class='badge {escape(s)}'>{escape(s)}</span>" for s in str(r["stage"]).split(","))
    badges += "".join(f"<span class='badge on'>live in {escape(e)}</span>" for e in envs)
    notes = (f"<div class='notes'>{escape(r['notes'])}</div>" if r.get("notes")
             else "<span class='muted'>no notes</span>")
    head = (f"<td data-label='release'><b>{escape(r['tag'])}</b><br>"
            f"<span class='mono muted'>{escape(r['commit'][:12])}</span></td>")
    made = (f"<td data-label='stage, made'>{badges}<br><span class='muted'>{escape(stamp(r['created_at']))} by "
            f"{escape(str(r['released_by']))}</span></td><td data-label='notes' class='free'>{notes}</td>")
    m = r["manifest"]
    if m is None:
        return (f"<tr>{head}{made}<td data-label='problem' colspan='6'>"
                f"not a usable release: {escape(str(r['problem']))}</td></tr>")
    c = m["components"]
    metrics = "<br>".join(f"{escape(str(k))}={escape(str(v))}" for k, v in sorted((m.get("metrics") or {}).items())
                          if num(v))
    return (f"<tr>{head}{made}<td data-label='weights'>{_files(c['weights'])}</td>"
            f"<td data-label='data'>{_files(c['data'])}</td>"
            f"<td data-label='code, params'>{len(c['code'])} file(s)<br>"
            f"<span class='mono muted'>{escape(short(c['params'].get('sha256')))}</span></td>"
            f"<td data-label='conf tree' class='mono'>{escape(short((c['params'].get('config') or {}).get('tree')))}</td>"
            f"<td data-label='threshold'>{escape(str(c['threshold'].get('value')))}</td>"
            f"<td data-label='metrics' class='mono'>{metrics}</td></tr>")


def _files(entries: list[OutputEntry]) -> str:
    """Each path with its size (from the manifest); past SHOWN_FILES the rest folded away."""
    if not entries:
        return "<span class='muted'>none</span>"
    items = [f"<li><span class='mono' title='{escape(str(e.get('sha256') or e.get('md5') or e.get('git_id') or ''))}'>"
             f"{escape(e['path'])}</span> <span class='size'>{escape(size(e.get('size')))}</span></li>" for e in entries]
    total = sum(int(e.get("size") or 0) for e in entries if num(e.get("size")))
    if len(items) <= SHOWN_FILES:
        return f"<ul class='files'>{''.join(items)}</ul>"
    return (f"<ul class='files'>{''.join(items[:SHOWN_FILES - 1])}</ul><details><summary>{len(items) - SHOWN_FILES + 1}"
            f" more ({len(items)} files, {escape(size(total))} in all)</summary>"
            f"<ul class='files'>{''.join(items[SHOWN_FILES - 1:])}</ul></details>")


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
