"""`tether serve` under load while `current` is swapped, against a same-run baseline: a bare
FastAPI app that loads the same bundle and calls it in-process.

Set-up (not timed): the reference project is reproduced, released twice (v1.0.0 and a
threshold-only v1.0.1), and both releases are deployed into one target. Then, from CLIENTS
concurrent keep-alive clients on 127.0.0.1, REQUESTS requests each phase:

  baseline   the bare app
  steady     tether serve, no swap
  swapping   tether serve while `current` flips between the two releases SWAPS times, SWAP_GAP s apart
             (BENCH_SWAP_GAP, default 8 s; 2 s is a swap storm, closer than a spare's start under load)
             (the clients go on until the last swap has answered, and at least REQUESTS)

Then, on the text classifier served by its own entrypoint: the time from a rollback's deploy to
its first answer while the release it rolls back from hangs at import (v2 serves; its worker is
killed with kill -9 and its restart hangs; `tether rollback` + `tether deploy` to v1). Target:
within 5 s (issue 27 item 6; tests/workflow/test_serve_faults.py asserts the bound).

The swap target (issue 34): p99 of the requests started within SWAP_WINDOW s after a switch
<= 1.1x p99 of those started between swaps, in the same phase (same load, same minute).

Every response must be a 200 whose threshold is that of the release it names (0.3 or 0.9): a
response from a half-loaded release, or a failed request, is counted and must be zero.
Bounded: REQUESTS per phase, a deadline per phase, and the servers are stopped at the end.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "helpers"))
from common import Table  # noqa: E402

CLIENTS = int(os.environ.get("BENCH_CLIENTS", 4))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", 800))
SWAPS = int(os.environ.get("BENCH_SWAPS", 6))
SWAP_GAP = float(os.environ.get("BENCH_SWAP_GAP", 8.0))
SWAP_WINDOW = float(os.environ.get("BENCH_SWAP_WINDOW", 4.0))
PHASE_DEADLINE = 60.0
RECORD = {"amount": 250.0, "hour": 3, "merchant_category": 7, "distance_from_home_km": 120.5, "card_age_days": 40,
          "txn_count_24h": 9, "foreign": 1, "online": 1, "amount_to_avg_ratio": 4.2, "device_risk_score": 0.7}
THRESHOLDS = {"fraud-detector@v1.0.0": 0.3, "fraud-detector@v1.0.1": 0.9}

BASELINE_APP = '''
import sys
from pathlib import Path
from fastapi import FastAPI
from tether.runtime.bundle import load_bundle
bundle = load_bundle(Path(sys.argv[1]))
app = FastAPI()

@app.post("/predict")
def predict(payload: dict):
    scores, decisions = bundle.predict(bundle.validate(payload["records"]))
    return {"release": "baseline", "threshold": bundle.threshold,
            "scores": [float(s) for s in scores], "decisions": [bool(d) for d in decisions]}

import uvicorn
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, path: str, timeout: float = 120, release: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path) if path != "/predict" else c.request(
                "POST", path, json.dumps({"records": [RECORD]}), {"content-type": "application/json"})
            r = c.getresponse()
            body = r.read()
            if r.status == 200 and (release is None or json.loads(body).get("release") == release):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: server on {port} not up")


def drive(port: int, n: int, swapper=None) -> dict:
    """n requests from CLIENTS keep-alive clients; latencies, failures, inconsistent answers."""
    body = json.dumps({"records": [RECORD]}).encode()
    lat: list[float] = []
    timed: list[tuple[float, float]] = []  # (start, seconds) of every answered request
    named: list[tuple[float, float, str]] = []  # (start, seconds, release) of every 200
    failed, mixed, releases = [], [], {}
    lock = threading.Lock()
    todo = iter(range(n))
    deadline = time.monotonic() + max(PHASE_DEADLINE, SWAPS * SWAP_GAP + 30 if swapper else 0)

    swapping = threading.Event()
    if swapper:
        swapping.set()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < deadline:
            with lock:  # with a swapper: until every swap is done (at least n requests)
                if next(todo, None) is None and not swapping.is_set():
                    break
            t = time.perf_counter()
            try:
                conn.request("POST", "/predict", body, {"content-type": "application/json"})
                r = conn.getresponse()
                data = r.read()
            except OSError as exc:
                with lock:
                    failed.append(repr(exc))
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            dt = time.perf_counter() - t
            with lock:
                lat.append(dt)
                timed.append((t, dt))
                if r.status != 200:
                    failed.append(r.status)
                    continue
                out = json.loads(data)
                rel = out.get("release")
                named.append((t, dt, rel))
                releases[rel] = releases.get(rel, 0) + 1
                if rel in THRESHOLDS and (THRESHOLDS[rel] != out["threshold"]
                                          or out["decisions"] != [s >= out["threshold"] for s in out["scores"]]):
                    mixed.append(out)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    if swapper:
        try:
            swapper()
        finally:
            swapping.clear()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return {"n": len(lat), "wall": wall, "rps": len(lat) / wall, "p50": statistics.median(lat),
            "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))], "failed": failed, "mixed": mixed,
            "releases": releases, "timed": timed,
            "named": named}


def p99(lat: list[float]) -> float:
    lat = sorted(lat)
    return lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def windows(timed: list[tuple[float, float]], swaps: list[float]) -> tuple[list[float], list[float]]:
    """The swapping phase's latencies split by when each request started: within SWAP_WINDOW
    seconds after a switch of `current` (the new worker's start, the old one's exit), or outside
    every such window (the same run, the same offered load, the same machine's noise)."""
    inside, outside = [], []
    for t, dt in timed:
        (inside if any(0 <= t - s < SWAP_WINDOW for s in swaps) else outside).append(dt)
    return inside, outside


def by_offset(timed: list[tuple[float, float]], swaps: list[float]) -> str:
    """p99 (and count) of the requests by when they started after the last switch: where in a
    swap the tail comes from (the new worker's start, its first answers, the old one's exit)."""
    edges = (0.0, 0.25, 0.5, 1.0, 2.0, SWAP_WINDOW, float("inf"))
    groups: list[list[float]] = [[] for _ in edges[1:]]
    for t, dt in timed:
        since = [t - s for s in swaps if t >= s]
        if since:
            off = min(since)
            groups[next(i for i, hi in enumerate(edges[1:]) if off < hi)].append(dt)
    parts = [f"{lo:g}-{hi:g} s: {p99(g) * 1e3:.1f} ms ({len(g)})" for lo, hi, g in zip(edges, edges[1:], groups) if g]
    return "p99 by time since the last switch: " + ", ".join(parts)


def first_second(named: list[tuple[float, float, str]], swaps: list[float], to: list[str]) -> str:
    """In the first second after each switch: the requests the old release answered (while the
    new worker starts) against those of the new one (its first answers, the old one's exit)."""
    old: list[float] = []
    new: list[float] = []
    for t, dt, rel in named:
        for s, rel_to in zip(swaps, to):
            if 0 <= t - s < 1.0:
                (new if rel == rel_to else old).append(dt)
    show = lambda g: f"p99 {p99(g) * 1e3:.1f} ms, max {max(g) * 1e3:.1f} ms ({len(g)})" if g else "none"  # noqa: E731
    return f"first second after a switch: answered by the old release {show(old)}; by the new one {show(new)}"


def isolate(base: Path) -> None:
    """A HOME of the bench's own under `base` (git config, DVC's site cache), as the tests have."""
    from project import ISOLATION

    home = base / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    os.environ.update({"HOME": str(home), **ISOLATION})


def setup(base: Path):
    from project import build_template, promote_to, threshold_release

    isolate(base)
    print("bench serve: reproducing the reference project and making two releases …", file=sys.stderr, flush=True)
    p = build_template(base / "t")
    target = base / "serving"
    promote_to(p, "fraud-detector@v1.0.0")
    assert p.tether("deploy", "--env", "production", "--target", str(target)).code == 0
    v2 = threshold_release(p, 0.9)
    promote_to(p, v2)
    assert p.tether("deploy", "--env", "production", "--target", str(target)).code == 0
    return p, target


def main() -> None:
    from tether.servedir.layout import switch_current

    table = Table("Serve: /predict under load, swaps of current, against a bare FastAPI app")
    with tempfile.TemporaryDirectory(prefix="tether-bench-serve-") as tmp:
        base = Path(tmp)
        p, target = setup(base)
        env = p.env()
        procs = []
        try:
            port_b = free_port()
            bundle = target / "releases" / "fraud-detector@v1.0.0" / "models/fraud-detector"
            procs.append(subprocess.Popen([sys.executable, "-c", BASELINE_APP, str(bundle), str(port_b)], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_up(port_b, "/predict")
            drive(port_b, 100)  # warm-up
            baseline = drive(port_b, REQUESTS)
            procs[0].terminate()
            procs[0].wait()

            switch_current(target, "fraud-detector@v1.0.0")
            port = free_port()
            procs.append(subprocess.Popen([sys.executable, "-m", "tether.cli", "serve", "--target", str(target),
                                           "--port", str(port), "--watch-interval", "0.1"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_up(port, "/version", release="fraud-detector@v1.0.0")
            drive(port, 100)
            steady = drive(port, REQUESTS)

            swap_times: list[float] = []
            swap_at: list[float] = []
            swap_to: list[str] = []

            def swapper():
                for i in range(SWAPS):
                    time.sleep(SWAP_GAP)
                    rel = "fraud-detector@v1.0.1" if i % 2 == 0 else "fraud-detector@v1.0.0"
                    t = time.perf_counter()
                    swap_at.append(t)
                    swap_to.append(rel)
                    switch_current(target, rel)
                    wait_up(port, "/version", release=rel, timeout=120)
                    swap_times.append(time.perf_counter() - t)

            swapping = drive(port, REQUESTS, swapper)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(20)
    for name, r in (("baseline (bare FastAPI, in-process)", baseline), ("tether serve, steady", steady),
                    ("tether serve, swapping", swapping)):
        print(f"  {name:38} {r['n']} req in {r['wall']:.2f} s: {r['rps']:.0f} req/s, p50 {r['p50'] * 1e3:.2f} ms, "
              f"p99 {r['p99'] * 1e3:.2f} ms, failed {len(r['failed'])}, mixed {len(r['mixed'])} {r['releases']}")
    print(f"  offered load: {CLIENTS} closed-loop keep-alive clients, one record per request, no think time; "
          f"swaps {SWAP_GAP:g} s apart")
    inside, outside = windows(swapping["timed"], swap_at)
    print(f"  requests started within {SWAP_WINDOW:g} s of a swap: {len(inside)}, "
          f"p99 {p99(inside) * 1e3 if inside else float('nan'):.2f} ms; between swaps: {len(outside)}, "
          f"p99 {p99(outside) * 1e3 if outside else float('nan'):.2f} ms")
    print(f"  {by_offset(swapping['timed'], swap_at)}")
    print(f"  {first_second(swapping['named'], swap_at, swap_to)}")
    print(f"  swaps: {len(swap_times)}, until the new release answered: median {statistics.median(swap_times):.2f} s, "
          f"max {max(swap_times):.2f} s")
    table.add("throughput, steady (req/s)", steady["rps"], "", "bare app", baseline["rps"],
              ">= 80% of the baseline", steady["rps"] >= 0.8 * baseline["rps"])
    table.rows[-1]["ratio"] = steady["rps"] / baseline["rps"]
    table.add("throughput, swapping (req/s)", swapping["rps"], "", "bare app", baseline["rps"],
              ">= 80% of the baseline", swapping["rps"] >= 0.8 * baseline["rps"])
    table.rows[-1]["ratio"] = swapping["rps"] / baseline["rps"]
    table.add("p50 steady (ms)", steady["p50"] * 1e3, "", "bare app", baseline["p50"] * 1e3)
    table.add("p99 steady (ms)", steady["p99"] * 1e3, "", "bare app", baseline["p99"] * 1e3)
    table.add("p99 swapping, whole phase (ms)", swapping["p99"] * 1e3, "", "steady p99", steady["p99"] * 1e3,
              "(phases minutes apart: the machine's load moves)")
    table.rows[-1]["ratio"] = swapping["p99"] / steady["p99"]
    inside, outside = windows(swapping["timed"], swap_at)
    if inside and outside:
        table.add(f"p99 within {SWAP_WINDOW:g} s of a swap (ms)", p99(inside) * 1e3, "",
                  "p99 between swaps", p99(outside) * 1e3, "<= 1.1x p99 without a swap (same phase)",
                  p99(inside) <= 1.1 * p99(outside))
        table.rows[-1]["ratio"] = p99(inside) / p99(outside)
    table.add("failed + half-loaded responses", len(swapping["failed"]) + len(swapping["mixed"])
              + len(steady["failed"]) + len(steady["mixed"]), "", target="0",
              ok=not (swapping["failed"] or swapping["mixed"] or steady["failed"] or steady["mixed"]))
    table.print()
    rollback_behind_hang()


def rollback_behind_hang() -> None:
    """Deploy-to-first-answer of a rollback while the release it leaves hangs at import."""
    import signal

    from servehelp import OPS, call, serve_proc, serving, until
    from textserve import build_textserve, hang_when, promote, release

    table = Table("Serve: a rollback deployed while another release hangs at import")
    with tempfile.TemporaryDirectory(prefix="tether-bench-hang-") as tmp:
        base = Path(tmp)
        isolate(base)
        print("bench serve: building the text classifier and a release that hangs at import …", file=sys.stderr,
              flush=True)
        p = build_textserve(base / "p")
        v1 = p.ok("release", "--push", "--json").json()["tag"]
        promote(p, v1)
        marker = base / "hang"
        hang_when(p, marker)
        v2 = release(p, "serving code that hangs at import on a bad host")
        promote(p, v2)
        target = base / "serving"
        p.ok("deploy", "--env", "production", "--target", str(target))
        with serve_proc(p, target, base / "serve.log") as (url, _proc):
            pid = serving(url, v2)["pid"]
            marker.touch()
            os.kill(pid, signal.SIGKILL)
            until(lambda: call(url, "/ready")[1].get("starting") == v2, "the restart of v2 (hanging)")
            p.ok("rollback", "--env", "production", *OPS, "--push")
            assert p.tether("deploy", "--env", "production", "--target", str(target)).code == 0
            t0 = time.perf_counter()
            until(lambda: (lambda r: r[0] == 200 and r[1].get("release") == v1)(
                call(url, "/predict", {"records": [{"text": "a fine film"}]}, timeout=5)), "v1's first answer", 120)
            took = time.perf_counter() - t0
    print(f"  rollback behind a hanging release: first answer {took:.2f} s after its deploy returned")
    table.add("rollback deploy to first answer (s)", took, "s", target="<= 5 s", ok=took <= 5.0)
    table.print()


if __name__ == "__main__":
    main()
