"""The main job: the whole lifecycle of the reference model, with tether, in a sandbox.

    retrain -> release v1.0.0 -> staging -> production -> deploy + serve
    -> change preprocessing, params, threshold and data window -> retrain -> release v1.1.0
    -> promote -> deploy (hot swap) -> roll back -> deploy (symlink switch)
    -> reproduce v1.0.0 bit for bit from its commit -> a static HTML report of the registry

Everything happens under ./sandbox (git-ignored): its own bare git origin, DVC remote, the ML
engineer's clone and a serving directory, so your own clone gets no tags, branches or commits.
At each step it prints what is live and the score for the same transaction.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = ROOT / "sandbox"
PROJECT = SANDBOX / "project"
ORIGIN = SANDBOX / "origin.git"
STORE = SANDBOX / "dvc-remote"
SERVING = SANDBOX / "serving"
FILES = ["dvc.yaml", "params.yaml", "conf", "src/fraud_detector", ".dvc/config", ".dvc/.gitignore", ".dvcignore",
         ".gitignore", "data/raw/.gitignore", "data/split/.gitignore", "models/fraud-detector/.gitignore"]
RECORD = {"amount": 180.0, "hour": 2, "merchant_category": 7, "distance_from_home_km": 45.0, "card_age_days": 200,
          "txn_count_24h": 5, "foreign": 1, "online": 1, "amount_to_avg_ratio": 2.1, "device_risk_score": 0.45}
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
       "GIT_AUTHOR_NAME": "Dana Demo", "GIT_AUTHOR_EMAIL": "dana@example.com",
       "GIT_COMMITTER_NAME": "Dana Demo", "GIT_COMMITTER_EMAIL": "dana@example.com"}
ENV.pop("PYTHONPATH", None)


def step(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def sh(*args: str, cwd: Path = PROJECT, show: bool = True, quiet: bool = False) -> str:
    if show:
        print("$ " + " ".join(a if " " not in a else f'"{a}"' for a in args), flush=True)
    proc = subprocess.run(list(args), cwd=cwd, env=ENV, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    out = (proc.stderr + proc.stdout).strip()
    if proc.returncode != 0:
        print(out)
        raise SystemExit(f"demo: `{' '.join(args)}` failed with exit {proc.returncode}")
    if show and out and not quiet:
        print("  " + out.replace("\n", "\n  "), flush=True)
    return proc.stdout


def tether(*args: str, quiet: bool = False) -> str:
    return sh("tether", *args, quiet=quiet)


def set_conf(rel: str, key: str, value) -> None:
    path = PROJECT / "conf" / rel
    text = path.read_text()
    new = re.sub(rf"^(\s*(?:- )?{re.escape(key)}:[ \t]*)[^\s#]+", lambda m: f"{m.group(1)}{value}", text, count=1, flags=re.M)
    assert new != text, (rel, key)
    path.write_text(new)
    print(f"  edit conf/{rel}: {key} = {value}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body else None,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def wait_for_version(base: str, version: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = http(base + "/version")
            if info["version"] == version:
                return info
        except (urllib.error.URLError, OSError, KeyError):
            pass
        time.sleep(0.25)
    raise SystemExit(f"demo: the server never served {version}")


def live(base: str, label: str) -> dict:
    info = http(base + "/version")
    pred = http(base + "/predict", {"records": [RECORD]})
    verdict = "FRAUD" if pred["decisions"][0] else "ok"
    print(f"  LIVE {label}: {info['model']}@v{info['version']} (commit {info['commit'][:10]}) "
          f"score={pred['scores'][0]:.4f} threshold={pred['threshold']} -> {verdict}", flush=True)
    return {"version": info["version"], "score": pred["scores"][0], "threshold": pred["threshold"],
            "decision": pred["decisions"][0]}


def setup() -> None:
    shutil.rmtree(SANDBOX, ignore_errors=True)
    PROJECT.mkdir(parents=True)
    for rel in FILES:
        src, dst = ROOT / rel, PROJECT / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "demo.py"))
        else:
            shutil.copy2(src, dst)
    sh("git", "init", "-q", "--bare", str(ORIGIN), cwd=SANDBOX, show=False)
    sh("git", "init", "-q", "-b", "main", show=False)
    sh("git", "remote", "add", "origin", str(ORIGIN), show=False)
    # The DVC remote is committed, as a team would: the serving host finds it in the repo.
    sh("dvc", "remote", "add", "-f", "-d", "local", str(STORE), show=False)
    print(f"sandbox: {SANDBOX}\n  project/ (your clone)  origin.git/ (git remote)  dvc-remote/ (DVC remote)  serving/ (host)")


def main() -> int:
    t0 = time.monotonic()
    step("0. A fresh sandbox with the reference fraud detector")
    setup()

    step("1. Retrain: dvc repro runs compose -> snapshot -> split -> train -> evaluate -> bundle")
    sh("dvc", "repro", quiet=True)
    print("  " + (PROJECT / "models/fraud-detector/metrics.json").read_text().replace("\n", "\n  "))
    sh("git", "add", "-A", show=False)
    sh("git", "commit", "-q", "-m", "Reference fraud detector", show=False)
    sh("git", "push", "-q", "origin", "main", show=False)

    step("2. Release v1.0.0: gates, manifest in an annotated tag, DVC objects pushed before the tag")
    tether("release", "--push", "-m", "First fraud detector")
    tether("show", "fraud-detector@v1.0.0")

    step("3. Promote to staging, then production (check, regression and smoke gates; compare-and-swap push)")
    tether("promote", "fraud-detector@v1.0.0", "--env", "staging", "--approver", "dana", "--reason", "first candidate", "--push")
    tether("promote", "fraud-detector@v1.0.0", "--env", "production", "--approver", "sam", "--reason", "staging looks good", "--push")

    step("4. Deploy production to a serving host, and serve it")
    tether("deploy", "--env", "production", "--target", str(SERVING), "--repo", str(ORIGIN))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(BIN / "tether"), "serve", "--target", str(SERVING), "--port", str(port),
                               "--watch-interval", "0.5"], cwd=SANDBOX, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_version(base, "1.0.0")
        first = live(base, "after deploy")

        step("5. Change the preprocessing, the params, the threshold and the data window; retrain")
        set_conf("config.yaml", "preprocess", "robust")
        set_conf("model/random_forest.yaml", "n_estimators", 120)
        set_conf("evaluate/fixed.yaml", "threshold", 0.25)
        set_conf("data/fraud_stream.yaml", "window", 2)
        sh("dvc", "repro", quiet=True)
        print("  " + (PROJECT / "models/fraud-detector/metrics.json").read_text().replace("\n", "\n  "))
        sh("git", "commit", "-q", "-am", "robust preprocessing, 120 trees, threshold 0.25, window 2", show=False)
        sh("git", "push", "-q", "origin", "main", show=False)

        step("6. Release v1.1.0 (tether proposes the bump), promote, deploy: the server hot-swaps")
        tether("release", "--push", "--dry-run", quiet=False)
        tether("release", "--push", "-m", "Window 2 with robust preprocessing")
        tether("diff", "fraud-detector@v1.0.0", "fraud-detector@v1.1.0")
        tether("promote", "fraud-detector@v1.1.0", "--env", "staging", "--approver", "dana", "--reason", "window 2",
               "--push")
        tether("promote", "fraud-detector@v1.1.0", "--env", "production", "--approver", "sam", "--reason", "ship window 2",
               "--push")
        tether("deploy", "--env", "production", "--target", str(SERVING), "--repo", str(ORIGIN))
        wait_for_version(base, "1.1.0")
        second = live(base, "after v1.1.0")

        step("7. Roll back production, deploy again: the whole tuple comes back")
        tether("rollback", "--env", "production", "--approver", "sam", "--reason", "alert: false positives up", "--push")
        tether("deploy", "--env", "production", "--target", str(SERVING), "--repo", str(ORIGIN))
        wait_for_version(base, "1.0.0")
        third = live(base, "after rollback")
    finally:
        server.terminate()
        server.wait(timeout=10)

    step("8. The audit trail and the registry")
    tether("history")
    tether("list")
    tether("verify", "--target", str(SERVING))

    step("9. Reproduce v1.0.0 from scratch in a temporary clone (dvc repro --force), bit for bit; the report")
    tether("reproduce", "fraud-detector@v1.0.0")
    tether("report", "-o", str(SANDBOX / "report.html"))
    same = third == first
    print(f"\nrollback restored v1.0.0's tuple exactly: {'yes' if same else 'NO'} "
          f"(score {first['score']:.4f} @ {first['threshold']} -> {second['score']:.4f} @ {second['threshold']} "
          f"-> {third['score']:.4f} @ {third['threshold']})")
    print(f"demo finished in {time.monotonic() - t0:.0f} s; explore it in {SANDBOX}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
