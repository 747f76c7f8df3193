"""`tether report`: one static HTML file, parsed back with the standard library's html.parser.

On a repository shaped unlike the reference one (two models, each kept as a file outside any
training stage): every release, every environment move and every metric value is in the page,
a reason with markup in it stays text, and the page needs no script and no network. By default
the file goes under the git directory, so the tree stays clean for the next release; -o inside the
work tree warns unless git ignores the path. (tests/workflow/test_report_browser.py renders it in
a real browser.)
"""

from __future__ import annotations

from datetime import timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from shapes import build_churn, retrain_churn

EVIL = "alert: <script>alert(1)</script> & <img src=x onerror=boom>"


def stamp(text: str) -> str:
    """The report's time format, the one of every text answer: ISO 8601 to the second, in UTC."""
    from tether.clock import parse_iso

    t = parse_iso(text)
    assert t is not None, text
    return t.astimezone(timezone.utc).isoformat(timespec="seconds")


def row_at(text: list[str], cells: list[str]) -> int:
    """Where `cells` run consecutively in the page's text, or -1."""
    return next((i for i in range(len(text) - len(cells) + 1) if text[i:i + len(cells)] == cells), -1)


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.svgs = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(k, v or "") for k, v in attrs]
        self.svgs += tag == "svg"

    def handle_data(self, data):
        if data.strip():
            self.text.append(data.strip())


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    from project import isolated_home

    with isolated_home(tmp_path_factory, "report"):
        p = build_churn(tmp_path_factory.mktemp("report") / "p", "dvc", second=True)
        ops = ("--approver", "ops", "--reason")

        def promote(tag, env, model, why):
            p.ok("promote", tag, "--to", env, *ops, why, "--model", model, "--allow-regression", "test")

        p.ok("release", "churn", "--push", "-m", "first churn")
        promote("churn@v1.0.0", "staging", "churn", "first candidate")
        promote("churn@v1.0.0", "production", "churn", "staging looks good")
        retrain_churn(p, 2, "dvc")
        p.ok("release", "churn", "--push")
        promote("churn@v1.1.0", "staging", "churn", "retrained")
        promote("churn@v1.1.0", "production", "churn", "ship it")
        p.ok("rollback", "--env", "production", "--approver", "sam", "--reason", EVIL, "--model", "churn")
        p.ok("release", "churn-lite", "--push")
        promote("churn-lite@v1.0.0", "staging", "churn-lite", "lite candidate")
        yield p


def test_report_holds_every_release_event_and_metric(registry, tmp_path):
    p = registry
    before = p.snapshot()
    out = tmp_path / "registry.html"
    res = p.ok("report", "-o", str(out), "--json")
    assert res.json() == {"path": str(out), "url": out.resolve().as_uri(), "models": 2, "releases": 3, "events": 6,
                          "dirties_tree": False}
    assert p.snapshot() == before  # a read command: the workspace is untouched
    page = Page()
    page.feed(out.read_text(encoding="utf-8"))
    text = "\n".join(page.text)

    releases = p.ok("list", "--json").json()
    assert {r["tag"] for r in releases} == {"churn@v1.0.0", "churn@v1.1.0", "churn-lite@v1.0.0"}
    metrics_seen = 0
    for r in releases:
        assert r["tag"] in page.text, r["tag"]  # its own table cell, not a substring of another
        m = p.ok("show", r["tag"], "--json").json()
        for key, value in m["metrics"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert f"{key}={value}" in text, (r["tag"], key)
                metrics_seen += 1
        assert str(m["components"]["threshold"]["value"]) in page.text
    assert metrics_seen >= 3

    events = 0
    for model in ("churn", "churn-lite"):
        hist = p.ok("history", "--model", model, "--json").json()
        for env, entry in hist["environments"].items():
            for ev in entry["events"]:
                # each move is one row: time (to the second), action, releases, who, why
                cells = [stamp(ev["time"]), ev["action"], f"{ev['previous']} → {ev['release']}", ev["approver"],
                         ev["reason"]]
                assert row_at(page.text, cells) >= 0, cells
                events += 1
    assert events == 6
    assert EVIL in page.text  # markup in a reason is text on the page …
    assert "script" not in page.tags and "img" not in page.tags  # … never an element
    assert not any(k.startswith("on") for k, _ in page.attrs)
    # static and self-contained: inline CSS and SVG, nothing fetched, no script at all
    assert "style" in page.tags and page.svgs >= 2  # a metric plot per model at least
    assert [v for k, v in page.attrs if k == "class"].count("tl") == 3  # a timeline per environment that moved
    assert not [v for k, v in page.attrs if k in ("src", "href") and v]
    assert "link" not in page.tags and "iframe" not in page.tags
    # the changes between consecutive releases and the rollback marker
    assert "churn@v1.0.0 → churn@v1.1.0" in page.text
    assert "weights changed" in page.text and "rollback" in page.text
    assert "first churn" in page.text  # the notes given with `release -m`
    assert "live in production" in page.text and "live in staging" in page.text


def test_by_default_the_report_is_written_outside_the_work_tree(registry):
    p = registry
    before = p.snapshot()
    res = p.ok("report")
    path = Path(p.git("rev-parse", "--path-format=absolute", "--git-common-dir")) / "tether" / "report.html"
    assert path.is_file() and f"wrote {path} " in res.out
    assert path.resolve().as_uri() in res.out and not res.err
    assert p.snapshot() == before and p.git("status", "--porcelain") == ""  # the next release is not refused
    assert p.ok("report", "--json").json()["dirties_tree"] is False


def test_a_path_inside_the_work_tree_warns_unless_git_ignores_it(registry):
    p = registry
    res = p.ok("report", "-o", "registry.html")
    try:
        assert (p.root / "registry.html").is_file()
        assert "inside the work tree" in res.err and "tether release" in res.err and ".gitignore" in res.err
        assert p.ok("report", "-o", "registry.html", "--json").json()["dirties_tree"] is True
    finally:
        (p.root / "registry.html").unlink()
    exclude = p.root / ".git" / "info" / "exclude"
    exclude.parent.mkdir(exist_ok=True)
    kept = exclude.read_text() if exclude.exists() else ""
    exclude.write_text(kept + "/ignored-report.html\n")
    try:
        res = p.ok("report", "-o", "ignored-report.html")
        assert not res.err and "ignored by git" in res.out
        assert p.git("status", "--porcelain") == ""
    finally:
        (p.root / "ignored-report.html").unlink()
        exclude.write_text(kept)


def test_a_bad_output_path_is_a_usage_error_and_writes_nothing(registry, tmp_path):
    res = registry.tether("report", "-o", str(tmp_path / "no-such-dir" / "r.html"))
    assert res.code == 2 and "does not exist" in res.err
    assert not (tmp_path / "no-such-dir").exists()
    res = registry.tether("report", "-o", str(tmp_path))
    assert res.code == 2 and "is a directory" in res.err


def test_each_metric_on_its_own_axis_with_round_ticks_and_the_live_release_marked():
    """Pure: the issue's `positives` (a count from 25 to 46) drawn with 0.25-0.5 thresholds got
    a 0.25..46 axis and fake crossings; now each metric has its own axis, the threshold its own
    chart, labels between the extremes, and a mark where an environment runs a release."""
    from tether.commands.report_charts import plots, ticks
    from tether.commands.report_fmt import size, stamp as fmt

    assert ticks(0.5125, 0.5625) == [0.5, 0.52, 0.54, 0.56, 0.58]
    assert ticks(25, 46) == [20, 30, 40, 50] and len(ticks(3.0, 3.0)) >= 3
    rels = [{"tag": f"m@v1.{i}.0", "version": f"1.{i}.0",
             "manifest": {"metrics": {"positives": p, "f1": f}, "components": {"threshold": {"value": t}}}}
            for i, (p, f, t) in enumerate([(25, 0.8, 0.25), (46, 0.82, 0.5)])]
    html = plots(rels, {"m@v1.1.0": ["production"]})
    f1, positives, threshold = html.split("<div class='plot'>")[1:]
    assert "positives" in positives and ">0.25<" not in positives and ">30<" in positives
    assert "decision threshold" in threshold and ">45<" not in threshold
    assert all("class='livemark'" in c and ">production<" in c for c in (f1, positives, threshold))
    assert fmt("2026-12-05T14:13:53.123456Z") == "2026-12-05T14:13:53+00:00"  # as every text answer (clock.shown)
    assert fmt("2026-12-05T15:13:53+01:00") == "2026-12-05T14:13:53+00:00" and fmt("not a time") == "not a time"
    assert (size(58), size(4100), size(12_300_000), size(None)) == ("58 B", "4.1 kB", "12.3 MB", "")
