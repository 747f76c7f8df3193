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
        if shots := os.environ.get("TETHER_REPORT_SHOTS"):  # to look at: a directory for screenshots
            import base64

            height = browser.execute_script("return document.documentElement.scrollHeight")
            for n, top in enumerate(range(0, height, 1600)):  # in pieces a person can read
                clip = {"x": 0, "y": top, "width": width, "height": min(1600, height - top), "scale": 1}
                shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True, "clip": clip})
                (Path(shots) / f"report-{width}-{n}.png").write_bytes(base64.b64decode(shot["data"]))
        _live_marked(browser, width)
        _short_stretches_visible(browser, width)


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
