"""`tether report` in a real browser: Debian's chromium, headless, driven by selenium through
Debian's chromedriver (`make browser` installs both when missing; `make test` runs it first).

On a registry with two models, a rollback after a few seconds live, notes and reasons that are
one long unbreakable word: at 360, 600 and 1,400 px the page never scrolls sideways, every release
and every environment is in the rendered text, the live releases are marked (in the releases
table, on every metric chart, on every timeline), the notes are shown, and a stretch live for
seconds keeps a visible width. No skip: without the browser this test fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from shapes import build_churn, retrain_churn

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WIDTHS = (360, 600, 1400)
NOTES = "first churn model: tenure and spend, scored on the March window"
LONG = "see-" + "x" * 60 + "/incident/" + "y" * 60  # no place to break it but anywhere


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from project import isolated_home

    with isolated_home(tmp_path_factory, "report-browser"):
        p = build_churn(tmp_path_factory.mktemp("report-browser") / "p", "dvc", second=True)
        ops = ("--approver", "ops", "--reason")

        def promote(tag, env, model, why):
            p.ok("promote", tag, "--to", env, *ops, why, "--model", model, "--allow-regression", "test")

        p.ok("release", "churn", "--push", "-m", NOTES)
        promote("churn@v1.0.0", "staging", "churn", "first candidate")
        promote("churn@v1.0.0", "production", "churn", "staging looks good")
        retrain_churn(p, 2, "dvc")
        p.ok("release", "churn", "--push", "-m", LONG)
        promote("churn@v1.1.0", "staging", "churn", "retrained")
        promote("churn@v1.1.0", "production", "churn", "ship it")
        p.ok("rollback", "--env", "production", "--approver", "sam", "--reason", LONG, "--model", "churn")
        p.ok("release", "churn-lite", "--push")
        promote("churn-lite@v1.0.0", "staging", "churn-lite", "lite candidate")
        p.ok("report")  # the default place: outside the work tree
        path = Path(p.git("rev-parse", "--path-format=absolute", "--git-common-dir")) / "tether" / "report.html"
        releases = [r["tag"] for r in p.ok("list", "--json").json()]
        envs = {m: p.ok("history", "--model", m, "--json").json()["environments"] for m in ("churn", "churn-lite")}
        yield path, releases, envs


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file(), (
        "chromium and chromium-driver are missing: `make browser` installs them (apt-get, as root or with sudo)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def at_width(driver, width: int) -> None:
    """The viewport exactly `width` CSS pixels wide, whatever the window manager allows."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    assert driver.execute_script("return window.innerWidth") == width


def test_the_report_reads_at_every_width_without_sideways_scroll(report, browser):
    path, releases, envs = report
    assert shutil.which("chromium") or Path(CHROMIUM).is_file()
    browser.get(path.as_uri())
    for width in WIDTHS:
        at_width(browser, width)
        scroll, inner = browser.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert scroll <= inner <= width, f"the page scrolls sideways at {width} px ({scroll} px wide, {inner} px shown)"
        text = browser.execute_script("return document.body.innerText")
        for tag in releases:
            assert tag in text, (width, tag)
        for model, by_env in envs.items():
            for env, entry in by_env.items():
                assert env in text, (width, model, env)
                if entry["events"]:  # newest first: the first is what the environment runs now
                    live = entry["events"][0]["release"]
                    assert f"{live}\n" in text and f"live in {env}" in text, (width, env, live)
        assert NOTES in text, width  # the notes given with `release -m`
        _shots(browser, "report", width)
        _live_marked(browser, width)
        _short_stretches_visible(browser, width)


def _shots(driver, name: str, width: int) -> None:
    """With TETHER_REPORT_SHOTS=DIR, the page as a person sees it, in pieces 1,600 px tall."""
    if not (shots := os.environ.get("TETHER_REPORT_SHOTS")):
        return
    import base64

    height = driver.execute_script("return document.documentElement.scrollHeight")
    for n, top in enumerate(range(0, height, 1600)):
        clip = {"x": 0, "y": top, "width": width, "height": min(1600, height - top), "scale": 1}
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True, "clip": clip})
        (Path(shots) / f"{name}-{width}-{n}.png").write_bytes(base64.b64decode(shot["data"]))


def _live_marked(driver, width: int) -> None:
    """Every chart marks the release an environment runs; every timeline outlines its live stretch."""
    charts = driver.execute_script(
        "return [...document.querySelectorAll('.plot svg')].map(s => s.querySelectorAll('.livemark').length)")
    assert charts and all(n >= 1 for n in charts), (width, charts)
    timelines = driver.execute_script(
        "return [...document.querySelectorAll('.tl')].map(t => t.querySelectorAll('.seg.now').length)")
    assert len(timelines) == 3 and all(n == 1 for n in timelines), (width, timelines)
    marks = driver.execute_script(
        "return [...document.querySelectorAll('.seg.now')].map(s => s.innerText)")
    assert all("live" in m for m in marks), marks


def _short_stretches_visible(driver, width: int) -> None:
    """A release live for seconds (v1.1.0 in production before its rollback) keeps a width a
    person can see; each chart and timeline fits its column."""
    segs = driver.execute_script(
        "return [...document.querySelectorAll('.seg')].map(s => s.getBoundingClientRect().width)")
    assert segs and min(segs) >= 10, (width, segs)
    wide = driver.execute_script(
        "return [...document.querySelectorAll('.plot svg, .tl')]"
        ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5).length")
    assert wide == 0, width


def _synthetic(n: int = 40):
    """A long-lived registry rendered without git: `n` releases with many long weight paths, a
    month of production moves of which one release was live for 9 s, a long environment name."""
    from datetime import datetime, timedelta, timezone

    from tether.commands.report import ModelReport

    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    rep = ModelReport("fraud-detector-with-a-rather-long-model-name")
    for i in range(n):
        files = [{"path": f"models/fraud-detector/shards/part-{k:05d}-of-00012.safetensors", "md5": "0" * 32,
                  "size": 1_234_567 * (k + 1), "sha256": None, "stage": "train"} for k in range(12)]
        rep.releases.append({
            "tag": f"fraud-detector-with-a-rather-long-model-name@v1.{i}.0", "version": f"1.{i}.0",
            "commit": f"{i:040x}", "created_at": (t0 + timedelta(hours=18 * i)).isoformat(),
            "released_by": "someone-with-a-long-address@example.com", "stage": "archived", "notes": LONG,
            "problem": None,
            "manifest": {"metrics": {"positives": 25 + i, "f1": 0.8 + i / 1000, "n_eval": 5000},
                         "components": {"weights": files, "data": files[:2], "code": [],
                                        "params": {"sha256": "a" * 64, "config": {"tree": None}},
                                        "threshold": {"value": 0.25 + i / 100}}}})
    env = "production-eu-west-1-primary-cluster"
    times = [t0 + timedelta(days=d) for d in range(0, 30, 3)] + [t0 + timedelta(days=30)]
    times.insert(5, times[4] + timedelta(seconds=9))  # live for 9 s, then rolled back
    rep.environments[env] = [
        {"time": t.isoformat(), "action": "rollback" if k == 5 else "promote", "previous": "none",
         "release": rep.releases[k]["tag"], "approver": "ops", "reason": LONG, "commit": f"{k:040x}"}
        for k, t in enumerate(times)]
    return rep, env


def test_a_long_history_stays_readable_at_every_width(browser, tmp_path):
    from tether.commands import report_html

    rep, env = _synthetic()
    page = tmp_path / "long.html"
    page.write_text(report_html.render([rep], "tether registry: " + "x" * 80, "0" * 40), encoding="utf-8")
    browser.get(page.as_uri())
    for width in WIDTHS:
        at_width(browser, width)
        scroll, inner = browser.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert scroll <= inner <= width, f"the page scrolls sideways at {width} px ({scroll} px wide, {inner} px shown)"
        text = browser.execute_script("return document.body.innerText")
        assert all(r["tag"] in text for r in rep.releases) and env in text
        segs = browser.execute_script(
            "return [...document.querySelectorAll('.seg')].map(s => s.getBoundingClientRect().width)")
        assert len(segs) == 12 and min(segs) >= 10, (width, segs)  # the 9 s stretch among 30 days
        marks = browser.execute_script("return document.querySelectorAll('.plot .livemark').length")
        assert marks == 3, (width, marks)  # positives, f1, the threshold: each marks the live release
        _shots(browser, "long", width)
