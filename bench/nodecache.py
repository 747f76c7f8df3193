"""One download per node (issue 29 item 5): bytes fetched from the DVC remote when 1, 3 and 10
serving directories on one host deploy the same release, each with its own `--repo` clone,
with a shared node cache (`--node-cache`) against without it, measured in the same run. The
remote is S3 (moto's server behind a request log, tests/helpers/s3count.py): the bytes are
counted where they leave the remote, not by tether. Deploys of one batch run concurrently (at
most TETHER_BENCH_PARALLEL at a time, default 5), as pods starting on one node do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "helpers"))
from common import BIN, ENV, Table  # noqa: E402
from rollback import DVC_YAML, MAKE_MODEL, sh  # noqa: E402
from s3count import counting_s3, object_gets  # noqa: E402
from s3server import CREDENTIALS, make_bucket  # noqa: E402

SIZE_MB = int(os.environ.get("TETHER_BENCH_NODE_MB", "8"))
PARALLEL = int(os.environ.get("TETHER_BENCH_PARALLEL", "5"))
RUN_ENV = {**ENV, **CREDENTIALS}


def build(root: Path, endpoint: str) -> Path:
    """A one-model project whose release names the S3 remote, live in production, on a bare origin."""
    repo, origin = root / "repo", root / "origin.git"
    repo.mkdir(parents=True)
    (repo / "make_model.py").write_text(MAKE_MODEL)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "data").mkdir()
    (repo / "data/input.csv").write_text("a,b\n1,2\n")
    (repo / "params.yaml").write_text(f"seed: 1\nsize_mb: {SIZE_MB}\n")
    dvc = str(BIN / "dvc")
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    sh(dvc, "init", "-q", cwd=repo)
    sh(dvc, "remote", "add", "-d", "s3", "s3://bench/store", cwd=repo)
    sh(dvc, "remote", "modify", "s3", "endpointurl", endpoint, cwd=repo)
    sh("git", "init", "-q", "--bare", str(origin), cwd=root)
    sh("git", "remote", "add", "origin", str(origin), cwd=repo)
    for cmd in ([dvc, "repro", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "v1"], [dvc, "push", "-q"],
                [str(BIN / "tether"), "release", "--version", "1.0.0", "--push"],
                [str(BIN / "tether"), "promote", "big@v1.0.0", "--env", "production", "--approver", "b",
                 "--reason", "b", "--push"]):
        proc = subprocess.run(cmd, cwd=repo, env=RUN_ENV, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"bench: {' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    sh("git", "push", "-q", "origin", "main", cwd=repo)
    return origin


def deploy_batch(origin: Path, targets: list[Path], cache: Path | None) -> None:
    for i in range(0, len(targets), PARALLEL):
        procs = [subprocess.Popen([str(BIN / "tether"), "deploy", "--env", "production", "--target", str(t),
                                   "--repo", str(origin)] + (["--node-cache", str(cache)] if cache else []),
                                  cwd=origin.parent, env=RUN_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True) for t in targets[i:i + PARALLEL]]
        for p in procs:
            _out, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"bench: deploy failed:\n{err[-800:]}")


def fetched(log: Path) -> int:
    return object_gets(log)[1]


def main() -> None:
    table = Table("Node cache: bytes fetched from the DVC remote per host")
    with tempfile.TemporaryDirectory(prefix="tether-bench-nodecache-") as tmp:
        root = Path(tmp)
        log = root / "gets.log"
        with counting_s3(log) as endpoint:
            make_bucket(endpoint, "bench")
            origin = build(root, endpoint)
            for n in (1, 3, 10):
                sides = {}
                for side in ("without", "with"):
                    run = root / f"{side}-{n}"
                    before = fetched(log)
                    deploy_batch(origin, [run / f"t{i}" for i in range(n)], run / "cache" if side == "with" else None)
                    sides[side] = (fetched(log) - before) / (1 << 20)
                    shutil.rmtree(run)
                table.add(f"{n} target(s): MB fetched with the node cache", sides["with"], "MB",
                          "without (MB)", sides["without"], target="each object once per host",
                          ok=abs(sides["with"] - sides["without"] / n) < 0.01 * sides["without"] + 0.01)
    table.print()


if __name__ == "__main__":
    main()
