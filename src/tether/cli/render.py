"""Text for the terminal: key metrics, gate lines, ref notes, tables (rich on a terminal,
aligned plain text when piped) and the whole answer of each read command (`list`, `status`,
`show`, `history`), which both the typer commands and the read fast path (`tether.cli.fastread`)
print. Pure: no printing here, and no import of the CLI library."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether.core.manifest import ManifestDiff

# C0 and C1 control characters and DEL, except newline and tab: text from git (an approver, a
# reason, a tag message, an author) is printed escaped, so it cannot move the cursor, recolour
# the terminal or forge a line of tether's own output.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))}


_CONTROL_RE = re.compile("[" + "".join(re.escape(chr(c)) for c in _CONTROL) + "\n]")


def safe(text: str) -> str:
    return text.translate(_CONTROL)


def metrics_line(metrics: dict | None, keys=("roc_auc", "f1", "precision", "recall")) -> str:
    if not metrics:
        return "-"
    parts = [f"{k}={v:.3f}" for k in keys if isinstance(v := metrics.get(k), (int, float))]
    if parts:
        return " ".join(parts)
    # a project with its own metric names: the first few numeric ones
    from tether.core.gates import NOT_METRICS

    shown = [k for k in sorted(metrics) if k not in NOT_METRICS and isinstance(metrics[k], (int, float))
             and not isinstance(metrics[k], bool)][:4]
    return " ".join(f"{k}={metrics[k]:.3f}" for k in shown) or "-"


def gate_line(g) -> str:
    line = f"  gate {g.name}: {g.status} - {g.message}"
    return line + (f"\n    ({g.hint})" if g.warning and g.hint else "")



def ref_note(st: dict) -> str:
    """Which ref a command used for an environment, and how local and origin's differ."""
    rel, b = st["relation"], st["branch"]
    if rel in ("absent", "same", "local-only"):
        return ""
    if rel == "remote-only":
        return f"  (from origin/{b}; no local branch)"
    if rel == "behind":
        return f"  (from origin/{b}; local {b} is behind)"
    if rel == "ahead":
        return f"  (from local {b}; ahead of origin/{b}: not pushed)"
    return f"  (local {b} and origin/{b} have DIVERGED; showing local)"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], tty: bool | None = None,
          width: int | None = None, *, tags: Sequence[int] = (), whole: Sequence[int] = ()) -> str:
    """Rows under headers. On a terminal (stdout a TTY) a rich table, as wide as the terminal
    ($COLUMNS); piped, plain columns aligned to their widest cell (the last column is never
    padded), one row per line, so that `grep`, `awk` and `cut` work. Every cell is escaped
    (`safe`) before either renders it. On a terminal, the columns in `tags` (release tags,
    MODEL@vX.Y.Z) and `whole` (times) are never wrapped or cut by rich: when the table is too
    wide, a tag loses the end of its model name (`fraud-d…@v1.1.0`), never its version."""
    cells = [[c if type(c) is str else str(c) for c in row] for row in rows]
    if _CONTROL_RE.search("".join(c for row in cells for c in row)):  # one scan; escape only if needed
        cells = [[safe(c).replace("\n", "\\n") for c in row] for row in cells]  # one row, one line
    if tty is None:
        tty = is_tty()
    if tty:
        import io

        from rich.console import Console
        from rich.table import Table

        buf = io.StringIO()
        console = Console(file=buf, force_terminal=True, width=width, highlight=False, markup=False)
        cells = fit_tags(headers, cells, tags, whole, console.width)
        t = Table(box=None, header_style="bold", pad_edge=False)
        for i, h in enumerate(headers):
            t.add_column(h, no_wrap=i in tags or i in whole)
        for row in cells:
            t.add_row(*row)
        console.print(t)
        return buf.getvalue().rstrip("\n")
    columns = list(zip(*cells)) if cells else [()] * len(headers)
    widths = [max(len(h), max(map(len, col), default=0)) for h, col in zip(headers, columns)]
    fmt = "  ".join([f"{{:<{w}}}" for w in widths[:-1]] + ["{}"])  # the last column is never padded
    return "\n".join(fmt.format(*row) for row in [list(headers), *cells])


def is_tty() -> bool:
    return sys.stdout.isatty()


def cut_model(tag: str, keep: int) -> str:
    """MODEL@VERSION with the model name cut to `keep` characters (its last one `…`); the
    version is never cut. Text that is no tag is left as it is."""
    model, at, rest = tag.partition("@")
    if not at or len(model) <= keep:
        return tag
    return model[:max(keep - 1, 1)] + "…@" + rest


def fit_tags(headers: Sequence[str], cells: list[list[str]], tags: Sequence[int], whole: Sequence[int],
             width: int) -> list[list[str]]:
    """The cells as they fit in `width`: when the table is too wide, the model names in the
    `tags` columns cut just enough, and text there that is no tag (`matches no release`) broken
    between words; the other columns counted as rich narrows them (wrapped between words)."""
    if not tags or not cells:
        return cells
    word = lambda text: max((len(w) for w in text.split()), default=0)  # noqa: E731
    fixed = 2 * (len(headers) - 1) + sum(max(len(headers[i]), *(word(r[i]) for r in cells))
                                          for i in range(len(headers)) if i not in tags and i not in whole) \
        + sum(max(len(headers[i]), *(len(r[i]) for r in cells)) for i in whole)

    def need(rows: list[list[str]], broken: bool) -> int:
        return fixed + sum(max(len(headers[i]), *(len(r[i]) if "@" in r[i] or not broken else word(r[i]) for r in rows))
                           for i in tags)

    if need(cells, False) <= width:
        return cells
    cut = lambda keep: [[cut_model(c, keep) if i in tags else c for i, c in enumerate(r)] for r in cells]  # noqa: E731
    longest = max((len(r[i].partition("@")[0]) for r in cells for i in tags), default=0)
    rows = next((rows for keep in range(longest, 1, -1) if need(rows := cut(keep), True) <= width), cut(2))
    import textwrap

    for i in tags:
        room = max(len(headers[i]), *(len(r[i]) if "@" in r[i] else word(r[i]) for r in rows))
        for r in rows:
            if "@" not in r[i] and len(r[i]) > room:
                r[i] = textwrap.fill(r[i], room, break_long_words=False)
    return rows


def when(text: str | None) -> str:
    """A recorded time as every text answer prints it (tether.clock.shown: ISO 8601 to the
    second, in UTC, with its zone: `2026-12-05T15:40:12+00:00`)."""
    from tether.clock import shown

    return shown(text)


def version_only(tag: str, model: str) -> str:
    """`v1.1.0` for MODEL@v1.1.0 when one model is shown; any other text as it is."""
    return tag[len(model) + 1:] if model and tag.startswith(model + "@") else tag


def json_text(data) -> str:
    """`--json`: indented for a person at a terminal; piped, one line (the C encoder, ~3x faster
    on 1,000 rows). json.dumps escapes every control character itself."""
    return json.dumps(data, indent=2 if sys.stdout.isatty() else None, sort_keys=True, default=str)


def emitted(data, as_json: bool, text: str | None = None, *, escaped: bool = False) -> str | None:
    """What a command prints: its JSON, or the text (escaped here unless the caller escaped
    each cell: a table)."""
    if as_json:
        return json_text(data)
    if text is None:
        return None
    return text if escaped else safe(text)


# -- the read commands' answers ------------------------------------------------------------
# What `list`, `status`, `show` and `history` print, from their views (tether.registry.views): one function
# each, for the typer command and the fast path alike, so the two cannot print differently.
def list_output(rows: list[dict], as_json: bool, declared: bool = True) -> str:
    """`declared`: dvc.yaml declares a model (without one, the way on is `tether init`)."""
    if as_json:
        return json_text(rows)
    if not rows and not declared:
        return "no releases: dvc.yaml declares no model yet; run `tether init` to declare it"
    if not rows:
        return "no releases yet: make one with `tether release`"
    tty = is_tty()
    # on a terminal, one model's releases are its versions under its name (the version is what differs)
    one = rows[0]["model"] if tty and len({r["model"] for r in rows}) == 1 else ""
    cells = [(version_only(r["tag"], one), r["stage"], when(r["created_at"]),
              metrics_line(r["metrics"]) if r["complete"] else f"{r['kind'].upper()}: {r['problem']}") for r in rows]
    text = table(("RELEASE", "STAGE", "DATE", "METRICS"), cells, tty, tags=(0,), whole=(2,))  # every cell escaped
    return f"{safe(one)}\n{text}" if one else text


def status_output(models, as_json: bool) -> str:
    """From views.ModelStatus records."""
    if as_json:
        return json_text([st.as_dict() for st in models])
    if not models:
        return ("no models: dvc.yaml declares no model artifact (and no release tag's commit does); "
                "run `tether init` to declare one")
    lines = []
    for st in models:
        lines.append(st.model)
        lines.append(f"  latest     {st.latest or '(no releases)'}")
        for env, view in st.environments.items():
            shown = view.release or (f"{view.outside_commit[:12]} committed outside tether, matches no release"
                                     if view.outside_commit else "(empty)")
            lines.append(f"  {env:10} {shown}{ref_note(view.state.as_dict())}")
            if view.gto:
                lines.append(gto_note(st.model, env, view.gto))
        matches = ", ".join(st.matches) if st.matches else "no release"
        lines.append(f"  workspace  {st.head[:12]}{' (dirty)' if st.dirty else ''} matches {matches}")
    return safe("\n".join(lines))


def gto_note(model: str, env: str, d: dict) -> str:
    """The "gto:" line under an environment whose GTO tags disagree with its branch (the
    branch decides; docs/registry.md says how to resolve it)."""
    if d.get("problem"):
        return f"             gto: {d['tag']}: GTO cannot read this stage ({d['problem']}); the branch decides"
    said = f"puts {d['gto']} in {env}" if d["gto"] else f"leaves {env} empty"
    ways = []
    if "@" in d["gto"]:
        ways.append(f"`tether promote {d['gto']} --env {env}` to follow GTO")
    if "@v" in d["branch"]:
        ways.append(f"`gto assign {model} --version v{d['branch'].split('@v', 1)[1]} --stage {env} --force` "
                    "to re-tag GTO")
    how = f" ({', or '.join(ways)})" if ways else ""
    return f"             gto: {d['tag']} {said}; the branch decides{how}"


def show_output(shown: dict, as_json: bool) -> str:
    """From views.shown_release: `--json` is the manifest alone, as the tag attests it."""
    if as_json:
        from tether.core.manifest import dumps

        # the note (untrusted: json.dumps escapes it) beside the manifest's keys, when there is one
        return dumps({**shown["manifest"], "note": note} if (note := shown.get("note")) else shown["manifest"]).rstrip()
    m = shown["manifest"]
    c = m["components"]
    note = shown.get("note")
    return safe("\n".join([
        f"{shown['tag']}  ({shown['stage']})",
        f"  commit      {m['commit']}",
        f"  created     {when(m['created_at'])} by {m['released_by']}",
        *([f"  note        {note}".replace("\n", "\n              ")] if note else []),
        f"  threshold   {c['threshold'].get('value')}  ({c['threshold'].get('source')})",
        f"  metrics     {metrics_line(m.get('metrics'))}",
        "  weights",
        *[f"    {e['path']}  sha256:{(e.get('sha256') or '')[:16]}  {e.get('size')} B" for e in c["weights"]],
        "  data",
        *[f"    {e['path']}  md5:{(e.get('md5') or '')[:16]}  {e.get('size')} B" for e in c["data"]],
        "  code",
        *[f"    {e['path']}  {e.get('type')}:{(e.get('git_id') or '')[:12]}" for e in c["code"]],
        f"  params      {c['params'].get('path')}  sha256:{(c['params'].get('sha256') or '')[:16]}",
        f"  runtime     python {m.get('runtime', {}).get('python', '?')}  "
        f"lock:{m.get('runtime', {}).get('lock_sha256', '')[:16]}",
    ]))


def diff_output(d: ManifestDiff, as_json: bool) -> str:
    """From views.release_diff: each component changed or the same, with what changed in it."""
    if as_json:
        return json_text(d)
    lines = [f"{d['from']} → {d['to']}"]
    for name, comp in d["components"].items():
        state = "changed" if comp["changed"] else "same"
        lines.append(f"  {name:10} {state}")
        if name in ("weights", "data", "code"):
            for k in ("added", "removed", "modified"):
                lines += [f"    {k[0].upper()} {p}" for p in comp[k]]
        elif name == "params":
            lines += [f"    {k}: {v['from']!r} → {v['to']!r}" for k, v in comp["keys"].items()]
        elif name == "threshold" and comp["changed"]:
            lines.append(f"    {comp['from']} → {comp['to']}")
    lines.append(f"  {'schema':10} {'changed' if d['feature_schema_changed'] else 'same'}")
    lines.append("  metrics")
    lines += [f"    {k}: {v['from']} → {v['to']} ({v['delta']:+})" for k, v in d["metrics"].items()
              if v["delta"] is not None]
    return safe("\n".join(lines))


def check_output(report, since: str | None, as_json: bool) -> str:
    """From a check.CheckReport: how many releases were checked (and skipped, with `--since`),
    then one line per finding."""
    if as_json:
        return json_text(report.as_dict())
    skipped = report.skipped
    lines = [f"checked {len(report.checked)} release(s)"
             + (f"; skipped {len(skipped)} older than {since}: {', '.join(skipped[:5])}"
                + (" …" if len(skipped) > 5 else "") if skipped else "")]
    lines += [f"  {f.tag}: {f.kind}: {f.message}" for f in report.findings]
    return safe("\n".join(lines) if not report.ok else lines[0] + ": all complete, matching, on the remote")


def history_output(data: dict, as_json: bool) -> str:
    """From views.env_history (each part escaped here, each cell by table). On a terminal the
    moves of the one model shown name their releases by version (the heading names the model)."""
    if as_json:
        return json_text(data)
    tty = is_tty()
    model = data.get("model") or ""
    blocks = []
    for e, entry in data["environments"].items():
        head = safe(f"{e} (branch {entry['branch']}{', model ' + model if tty and model else ''})"
                    f"{ref_note(entry['ref'])}")
        if "live_at" in entry:
            live = entry["live_at"]
            blocks.append(head + "\n" + safe(f"  live at {live['at']}: {live['release'] or '(nothing)'}"))
        elif not entry["events"]:
            blocks.append(f"{head}\n  (no moves yet)")
        else:
            rows = [_event_row(ev, model if tty else "") + (_signer_note(ev.get("signature")),) for ev in entry["events"]]
            blocks.append(head + "\n" + table(("TIME", "ACTION", "FROM", "TO", "BY", "REASON", "SIGNATURE"), rows, tty,
                                              tags=(2, 3), whole=(0, 1)))
    return "\n".join(blocks)


def _signer_note(sig: dict | None) -> str:
    """Beside each move: the signer git verified, or why the policy refuses it."""
    if not sig:
        return ""
    if sig["problem"] and sig["enforced"]:
        return f"REFUSED: {sig['problem']}"
    if sig["verified"]:
        return f"signed: {sig['principal']}"
    return "unsigned" if sig["status"] == "N" else f"signature {sig['status']}: not verified"


ROLLBACK_MARK = "↩ rollback"  # a move whose Tether-Action trailer says rollback


def _event_row(ev: dict, model: str = "") -> tuple[str, ...]:
    """TIME ACTION FROM TO BY REASON of one move. A rollback is marked from the move's own
    trailer (never from its message, which anyone writes); `model`: releases of it by version."""
    tag = lambda t: version_only(t, model)  # noqa: E731
    if ev["source"] == "outside":  # a hand commit, a merge, a reset: tether recorded nothing
        return (when(ev["time"]), "outside", tag(ev["previous"]), tag(ev["release"]) or "matches no release",
                ev["approver"], f"commit {ev['commit'][:12]}: {ev['reason']}")
    from tether.core.moves import ACTION, OVERRIDE_ROLLBACK, WEIGHT

    action = ev["action"]
    if ev["source"] == "tether" and ev["trailers"].get(ACTION) == "rollback":
        action = ROLLBACK_MARK
    action += " (gto tag)" if ev["source"] == "gto" else ""
    weight = ev["trailers"].get(WEIGHT)  # a canary's traffic share (tether.canary)
    to = tag(ev["release"]) + (f" at {weight}%" if weight is not None else "")
    override = ev["trailers"].get(OVERRIDE_ROLLBACK)  # a rollback away from this release, overridden
    reason = ev["reason"] + (f" [override-rollback: {override}]" if override else "")
    return (when(ev["time"]), action, tag(ev["previous"]), to, ev["approver"], reason)
