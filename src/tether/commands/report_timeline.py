"""One environment in the report: a timeline of which release was live when, then every move
as a table (newest first, as `tether history` prints). The timeline is HTML, not SVG, so its
labels keep their size on a phone: one flex item per stretch, its share of the row the stretch's
share of the time, never narrower than a minimum (a bad release live for 9 s stays visible).
Pure: events in, HTML out; every value from git escaped."""

from __future__ import annotations

from html import escape

from tether.commands.report_fmt import stamp, when

TAIL = 0.12  # the live release's stretch runs on past the last move, as this share of the span


def environment(env: str, events: list[dict], colors: dict) -> str:
    head = f"<h4>{escape(env)} <span class='muted'>({len(events)} move(s))</span></h4>"
    if not events:
        return head + "<p class='muted'>No moves yet.</p>"
    return head + timeline(env, events, colors) + moves_table(events)


def moves_table(events: list[dict]) -> str:
    rows = []
    for ev in reversed(events):  # newest first, as `tether history` prints
        action = ev.get("action") or ""
        cls = " class='rollback'" if action == "rollback" else ""
        mark = "<span class='badge rollback'>rollback</span>" if action == "rollback" else escape(action)
        full = escape(str(ev.get("time") or ""))
        rows.append(f"<tr{cls}><td data-label='time' class='mono nw'><time datetime='{full}'>"
                    f"{escape(stamp(ev.get('time')))}</time></td><td data-label='action'>{mark}</td>"
                    f"<td data-label='release'>{escape(str(ev.get('previous') or 'none'))} → "
                    f"{escape(str(ev.get('release') or '(no release)'))}</td>"
                    f"<td data-label='by'>{escape(str(ev.get('approver') or ''))}</td>"
                    f"<td data-label='why' class='free'>{escape(str(ev.get('reason') or ''))}</td>"
                    f"<td data-label='commit' class='mono nw'>{escape(str(ev.get('commit') or '')[:12])}</td></tr>")
    return ("<div class='tw'><table class='stack'><thead><tr><th>time</th><th>action</th><th>release</th>"
            "<th>by</th><th>why</th><th>commit</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")


def _shares(events: list[dict]) -> list[float] | None:
    """Each stretch's length in seconds (the live one: TAIL of the span), or None without times."""
    times = [when(ev.get("time")) for ev in events]
    known = [t for t in times if t is not None]
    if not known:
        return None
    start, end = min(known), max(known)
    span = max((end - start).total_seconds(), 1.0)
    out = []
    for i, t in enumerate(times):
        nxt = times[i + 1] if i + 1 < len(times) else None
        secs = (nxt - t).total_seconds() if t is not None and nxt is not None else 0.0
        out.append(max(secs, 0.0) if i + 1 < len(times) else span * TAIL)
    return out


def timeline(env: str, events: list[dict], colors: dict) -> str:
    """Which release was live when: one bar per stretch, rollbacks marked in red, the live one
    outlined and labelled; the first and last moves' times under it."""
    shares = _shares(events)
    if shares is None:
        return ""
    segs = []
    for i, ev in enumerate(events):
        tag = str(ev.get("release") or "")
        live = i == len(events) - 1
        cls = "seg" + (" rb" if ev.get("action") == "rollback" else "") + (" now" if live else "")
        label = tag.rpartition("@")[2] or "(none)"
        until = f" to {stamp(events[i + 1].get('time'))}" if not live else ", live now"
        tip = f"{tag or '(no release)'} from {stamp(ev.get('time'))}{until}"
        if ev.get("action") == "rollback":
            tip += f"; rollback by {ev.get('approver')}: {ev.get('reason')}"
        segs.append(f"<div class='{cls}' style='flex-grow:{shares[i]:.3f};background:{colors.get(tag, '#999')}' "
                    f"title='{escape(tip)}'><span>{'↩ ' if 'rb' in cls else ''}{escape(label)}"
                    f"{' · live' if live else ''}</span></div>")
    first, last = events[0].get("time"), events[-1].get("time")
    return (f"<div class='tl' role='img' aria-label='{escape(env)}: which release was live when'>{''.join(segs)}</div>"
            f"<div class='tlaxis mono'><span>{escape(stamp(first))}</span><span>{escape(stamp(last))}</span></div>")
