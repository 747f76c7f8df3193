"""What an attestation costs a deploy, and what verifying one costs, measured in this run:
`tether deploy` of a raw-bytes model of TETHER_BENCH_ATTEST_MB MiB (default 512) into a fresh
DIR, with and without `--require-attestation` (issue 31: at most 5 % more), and `tether attest
--verify` (both signatures, the release's commit and tree, the artifact rehashed) against it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bigmodel import build, promote  # noqa: E402
from common import BIN, ENV, Table, wall  # noqa: E402

SIZE_MB = int(os.environ.get("TETHER_BENCH_ATTEST_MB", "512"))


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
        t_attest = wall([tether, "attest", "big@v1.0.0", "--key", str(key)], repo, repeat=1)
        target = base / "serve"

        def fresh() -> None:
            shutil.rmtree(target, ignore_errors=True)

        deploy = [tether, "deploy", "--env", "production", "--target", str(target)]
        t_plain = wall(deploy, repo, repeat=3, setup=fresh)
        t_required = wall(deploy + ["--require-attestation", str(pub)], repo, repeat=3, setup=fresh)
        t_verify = wall([tether, "attest", "big@v1.0.0", "--verify", "--public-key", str(pub)], repo, repeat=3)
        t_noop = wall(deploy, repo, repeat=3)
        t_noop_req = wall(deploy + ["--require-attestation", str(pub)], repo, repeat=3)
        extra = (t_required - t_plain) / t_plain * 100
        t = Table(f"Attestation: a {SIZE_MB} MiB model")
        t.add("tether attest (s)", t_attest, "s")
        t.add("deploy --require-attestation, fresh DIR (s)", t_required, "s", "deploy", t_plain,
              target="<= 5 % more", ok=extra <= 5)
        t.add("  added to the deploy (%)", extra, "%")
        t.add("deploy --require-attestation, already live (s)", t_noop_req, "s", "deploy, already live", t_noop)
        t.add("attest --verify, offline, artifact rehashed (s)", t_verify, "s", target="< 2 s", ok=t_verify < 2)
        t.print()
        _ = ENV


if __name__ == "__main__":
    main()
