"""`tether report`: one static HTML file, parsed back with the standard library's html.parser.

On a repository shaped unlike the reference one (two models, each kept as a file outside any
training stage): every release, every environment move and every metric value is in the page,
a reason with markup in it stays text, and the page needs no script and no network.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from shapes import build_churn, retrain_churn

EVIL = "alert: <script>alert(1)</script> & <img src=x onerror=boom>"


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
    assert res.json() == {"path": str(out), "models": 2, "releases": 3, "events": 6}
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
                row = page.text.index(ev["time"])  # each move is one row: time, action, releases, who, why
                assert page.text[row + 1] == ev["action"]
                assert page.text[row + 2] == f"{ev['previous']} → {ev['release']}"
                assert page.text[row + 3] == ev["approver"] and page.text[row + 4] == ev["reason"]
                events += 1
    assert events == 6
    assert EVIL in page.text  # markup in a reason is text on the page …
    assert "script" not in page.tags and "img" not in page.tags  # … never an element
    assert not any(k.startswith("on") for k, _ in page.attrs)
    # static and self-contained: inline CSS and SVG, nothing fetched, no script at all
    assert "style" in page.tags and page.svgs >= 4  # 3 timelines + a metric plot per model
    assert not [v for k, v in page.attrs if k in ("src", "href") and v]
    assert "link" not in page.tags and "iframe" not in page.tags
    # the changes between consecutive releases and the rollback marker
    assert "churn@v1.0.0 → churn@v1.1.0" in page.text
    assert "weights changed" in page.text and "rollback" in page.text


def test_a_bad_output_path_is_a_usage_error_and_writes_nothing(registry, tmp_path):
    res = registry.tether("report", "-o", str(tmp_path / "no-such-dir" / "r.html"))
    assert res.code == 2 and "does not exist" in res.err
    assert not (tmp_path / "no-such-dir").exists()
    res = registry.tether("report", "-o", str(tmp_path))
    assert res.code == 2 and "is a directory" in res.err
