"""What an attestation costs a deploy, and what verifying one costs, measured in this run:
`tether deploy` of a raw-bytes model of TETHER_BENCH_ATTEST_MB MiB (default 2048, issue 31's
size) into a fresh DIR, with and without `--require-attestation` (runs interleaved, medians; the
target: at most 5 % more), the attestation check itself inside that deploy (the signature before
the build, the subjects against the placed files after it, timed in this process), and
`tether attest --verify` offline (the digests the release pins; target under 2 s) and with
`--rehash` (every byte fetched and hashed again)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bigmodel import build, promote  # noqa: E402
from common import BIN, ENV, Table, wall  # noqa: E402

SIZE_MB = int(os.environ.get("TETHER_BENCH_ATTEST_MB", "2048"))
ROUNDS = 3


def run(args: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} failed: {proc.stderr[-500:]}")
    return time.perf_counter() - t


def check_cost(repo: Path, target: Path, pub: Path) -> float:
    """The attestation check of a deploy, in this process: the record verified, then the
    deployed artifact compared with its subjects (what deploy/attestcheck.py adds to a deploy)."""
    from tether.adapters.workspace import Workspace
    from tether.deploy import attestcheck
    from tether.registry.registry import Registry
    from tether.core.refs import parse_ref

    ws = Workspace(repo)
    rel = Registry(ws, messages=False).resolve(parse_ref("big@v1.0.0"), None)
    t = time.perf_counter()
    key = attestcheck.host_key(pub, repo)
    assert key is not None
    verified = attestcheck.require(ws, rel, key)
    attestcheck.check_built(target / "releases" / "big@v1.0.0", verified)
    return time.perf_counter() - t


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tether-bench-attest-") as tmp:
        base = Path(tmp)
        repo = build(base, SIZE_MB)
        promote(repo, "big@v1.0.0")
        key, pub = base / "attest.key", base / "attest.pub"
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)], check=True)
        subprocess.run(["openssl", "ec", "-in", str(key), "-pubout", "-out", str(pub)], check=True,
                       capture_output=True)
        tether = str(BIN / "tether")
        t_attest = run([tether, "attest", "big@v1.0.0", "--key", str(key)], repo)
        target = base / "serve"
        deploy = [tether, "deploy", "--env", "production", "--target", str(target)]
        plain, required = [], []
        for _ in range(ROUNDS):  # interleaved: the disk's and the neighbours' drift hits both alike
            shutil.rmtree(target, ignore_errors=True)
            plain.append(run(deploy, repo))
            shutil.rmtree(target, ignore_errors=True)
            required.append(run(deploy + ["--require-attestation", str(pub)], repo))
        t_plain, t_required = statistics.median(plain), statistics.median(required)
        t_check = statistics.median(check_cost(repo, target, pub) for _ in range(5))
        t_verify = wall([tether, "attest", "big@v1.0.0", "--verify", "--public-key", str(pub)], repo, repeat=3)
        t_rehash = wall([tether, "attest", "big@v1.0.0", "--verify", "--rehash", "--public-key", str(pub)], repo,
                        repeat=1)
        t = Table(f"Attestation: a {SIZE_MB} MiB model")
        t.add("tether attest (s)", t_attest, "s")
        t.add("deploy --require-attestation, fresh DIR (s)", t_required, "s", "deploy", t_plain)
        t.add("  the attestation check in it (s)", t_check, "s", "deploy", t_plain,
              target="<= 5 % of the deploy", ok=t_check <= 0.05 * t_plain)
        t.add("  whole command, added (%)", (t_required - t_plain) / t_plain * 100, "%")
        t.add("attest --verify, offline (s)", t_verify, "s", target="< 2 s", ok=t_verify < 2)
        t.add("attest --verify --rehash (s)", t_rehash, "s")
        t.print()


if __name__ == "__main__":
    main()
