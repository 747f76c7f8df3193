"""Canary split accuracy and breach-to-rollback time, on a real `tether serve` on 127.0.0.1.

Set-up (not timed): the canary test project (tests/helpers/canaryhelp.py: a text classifier served by its
own entrypoint, `canaries: {canary: production}`), v1 in production, v2 in the canary.

  split      for each weight W in WEIGHTS: `tether canary weight W`, deploy, then REQUESTS
             requests with distinct keys; the share the canary answered against W, and against
             the share the key hash predicts for those very keys (must be exact)
  rollback   a canary that fails on some inputs, `tether guard` running (interval 0.2 s,
             min_samples 40): the time from the first failed answer a client saw to the server
             reporting weight 0 for the canary; baseline, measured in the same run: a human's
             `tether canary weight 0` + `tether deploy` (the move and the deploy alone)

Bounded: REQUESTS per weight, a deadline for the rollback, servers stopped at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "helpers"))

from canaryhelp import build_canary_project, make_failing, release, set_alpha, texts  # noqa: E402
from servehelp import OPS, call, serve, until  # noqa: E402

from tether.serve.app import to_canary  # noqa: E402

REQUESTS = int(os.environ.get("BENCH_REQUESTS", 1000))
WEIGHTS = (5, 10, 25, 50)
DEADLINE = 120.0


def ready_weight(url: str) -> tuple:
    body = call(url, "/ready")[1]
    return body.get("canary", {}).get("release"), body.get("canary", {}).get("weight")


def set_weight(p, url: str, target: Path, rid: str, w: int) -> float:
    t0 = time.perf_counter()
    p.ok("canary", "weight", str(w), "--env", "canary", "--approver", "bench", "--reason", f"bench weight {w}")
    p.ok("deploy", "--env", "canary", "--target", str(target))
    until(lambda: ready_weight(url) == (rid, w), f"weight {w} live", 60)
    return time.perf_counter() - t0


def split(p, url: str, target: Path, rid: str) -> list[tuple]:
    rows = []
    for w in WEIGHTS:
        set_weight(p, url, target, rid, w)
        hits = predicted = 0
        for i in range(REQUESTS):
            key = f"bench-{w}-{i}"
            code, _body, headers = call(url, "/predict", {"key": key, "records": [{"text": "a fine film"}]})
            hit, want = headers.get("x-tether-release") == rid, to_canary(key, w)
            hits += hit
            predicted += want
            if hit != want:  # say what answered instead, so a mismatch can be explained
                print(f"  weight {w}: {key} hash says {'canary' if want else 'stable'}, answered by "
                      f"{headers.get('x-tether-release')} ({headers.get('x-tether-arm')}, HTTP {code}, "
                      f"/ready {ready_weight(url)})", flush=True)
        rows.append((w, hits / REQUESTS, predicted / REQUESTS, hits == predicted))
    return rows


def breach_to_rollback(p, url: str, stable: Path, target: Path, pool: list[str]) -> float:
    make_failing(p)
    bad = release(p, "failing canary")
    p.ok("promote", bad, "--env", "canary", *OPS, "--allow-regression", "bench")
    p.ok("deploy", "--env", "canary", "--target", str(target))
    rid = bad.replace("/", "--")
    until(lambda: ready_weight(url) == (rid, 10), "the failing canary live", 60)
    guard = subprocess.Popen([sys.executable, "-m", "tether.cli", "guard", "--env", "canary", "--url", url,
                              "--interval", "0.2", "--deploy", str(target), "--deploy-stable", str(stable)],
                             cwd=p.root, env=p.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_fail: list[float] = []
    stop = threading.Event()

    def traffic():
        i = 0
        while not stop.is_set():
            code = call(url, "/predict", {"key": f"u{i}", "records": [{"text": pool[i % len(pool)]}]})[0]
            if code >= 500 and not first_fail:
                first_fail.append(time.perf_counter())
            i += 1

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    try:
        until(lambda: first_fail and ready_weight(url)[1] == 0, "the rollback live", DEADLINE)
        live = time.perf_counter()
    finally:
        stop.set()
        t.join(30)
        guard.terminate()
        guard.wait(30)
    return live - first_fail[0]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tether-bench-canary-") as tmp:
        base = Path(tmp)
        p = build_canary_project(base / "p")
        v1 = p.ok("release", "--push", "--json").json()["tag"]
        p.ok("promote", v1, "--env", "production", *OPS, "--skip-staging", "bench")
        stable, target = base / "stable", base / "canary"
        p.ok("deploy", "--env", "production", "--target", str(stable), "--smoke")
        set_alpha(p, 0.9)
        v2 = release(p, "alpha 0.9")
        p.ok("promote", v2, "--env", "canary", *OPS, "--allow-regression", "bench")
        p.ok("deploy", "--env", "canary", "--target", str(target), "--smoke")
        rid = v2.replace("/", "--")
        with serve(p, stable, base / "serve.log", "--canary-target", str(target)) as url:
            until(lambda: ready_weight(url) == (rid, 10), "v2 in the canary arm", 90)
            rows = split(p, url, target, rid)
            manual = set_weight(p, url, target, rid, 0)
            took = breach_to_rollback(p, url, stable, target, texts(p))
            hist = p.ok("history").out
    print(f"split accuracy over {REQUESTS} keyed requests per weight:")
    print(f"  {'weight':>6} {'canary share':>13} {'key-hash predicts':>18} {'exact':>6} {'share/weight':>13}")
    for w, got, pred, exact in rows:
        print(f"  {w:>5}% {got:>12.1%} {pred:>17.1%} {'yes' if exact else 'NO':>6} {got / (w / 100):>13.3f}")
    print(f"breach to rollback live: {took:.2f} s (the guard: samples every 0.2 s, 40 canary requests "
          f"minimum, 1 failed sample tolerated; then the move and the deploy)")
    print(f"baseline, a human's `canary weight 0` + `deploy` until live: {manual:.2f} s "
          f"(ratio {took / manual:.2f})")
    print("\n$ tether history")
    print(hist)


if __name__ == "__main__":
    main()
