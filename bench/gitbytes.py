"""A host's git traffic per deploy at 13,000 refs (issue 29 item 6; TETHER_BENCH_REFS): bytes
that cross the wire from origin for one `tether deploy --repo` of a host that is already
serving, before (the fetches deploy used to make: every branch, then every tag with the
environment's branch, `refs/tags/*`) and after (today's narrow fetch: the environment's
branch, then the one release tag its head names), in the same run, on the same origin.

Bytes are counted where they leave origin: the host's clone runs origin's `git upload-pack`
through a wrapper (`remote.origin.uploadpack`) that counts what upload-pack writes: the ref
advertisement (protocol v2's ls-refs answer) and the pack. The before side runs the old fetch
commands in a copy of the host's clone that, as an old host did, already holds every tag; the
after side is the real `tether deploy`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import BIN, ENV, Table  # noqa: E402
from rollback import DVC_YAML, MAKE_MODEL, sh  # noqa: E402

REFS = int(os.environ.get("TETHER_BENCH_REFS", "13000"))

COUNTER = '''#!{python}
import os, subprocess, sys
proc = subprocess.Popen(["git", "upload-pack", *sys.argv[1:]], stdout=subprocess.PIPE)
n = 0
while chunk := proc.stdout.read1(1 << 16):
    n += len(chunk)
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
code = proc.wait()
with open({log!r}, "a") as f:
    f.write(f"{{n}}\\n")
sys.exit(code)
'''


def build(root: Path) -> Path:
    """A one-model project (local DVC remote), v1 live in production, on a bare origin."""
    repo, origin = root / "repo", root / "origin.git"
    repo.mkdir(parents=True)
    (repo / "make_model.py").write_text(MAKE_MODEL)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "data").mkdir()
    (repo / "data/input.csv").write_text("a,b\n1,2\n")
    (repo / "params.yaml").write_text("seed: 1\nsize_mb: 1\n")
    dvc, tether = str(BIN / "dvc"), str(BIN / "tether")
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    sh(dvc, "init", "-q", cwd=repo)
    sh(dvc, "remote", "add", "-d", "store", str(root / "store"), cwd=repo)
    sh("git", "init", "-q", "--bare", str(origin), cwd=root)
    sh("git", "remote", "add", "origin", str(origin), cwd=repo)
    sh(dvc, "repro", "-q", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", "v1", cwd=repo)
    sh(dvc, "push", "-q", cwd=repo)
    sh(tether, "release", "--version", "1.0.0", "--push", cwd=repo)
    sh(tether, "promote", "big@v1.0.0", "--env", "production", "--approver", "b", "--reason", "b", "--push", cwd=repo)
    sh("git", "push", "-q", "origin", "main", cwd=repo)
    return origin


def grow(origin: Path, refs: int) -> None:
    """`refs` more tags on origin, as a big registry has (other models' releases, GTO
    assignments, snapshots): lightweight, on main's commit; only their names and ids differ."""
    head = sh("git", "rev-parse", "main", cwd=origin).strip()
    names = [f"refs/tags/model-{i % 40:02d}@v{i // 1000}.{i % 1000}.0" if i % 3 else f"refs/tags/model-{i % 40:02d}#prod#{i}"
             for i in range(refs)]
    subprocess.run(["git", "update-ref", "--stdin"], cwd=origin, env=ENV, check=True, text=True,
                   input="".join(f"create {n} {head}\n" for n in names))


def counted(log: Path) -> int:
    total = sum(int(x) for x in log.read_text().split()) if log.exists() else 0
    log.unlink(missing_ok=True)
    return total


def main() -> None:
    table = Table(f"Git bytes: per deploy at {REFS} refs")
    with tempfile.TemporaryDirectory(prefix="tether-bench-gitbytes-") as tmp:
        root = Path(tmp)
        origin = build(root)
        target = root / "serving"
        deploy = [str(BIN / "tether"), "deploy", "--env", "production", "--target", str(target), "--repo", str(origin)]
        sh(*deploy, cwd=root)  # the host serves v1
        grow(origin, REFS)
        log = root / "upload-pack.log"
        counter = root / "upload-pack-counter"
        counter.write_text(COUNTER.format(python=sys.executable, log=str(log)))
        counter.chmod(0o755)
        clone = target / ".tether" / "repo"
        old = root / "old-host"
        shutil.copytree(clone, old, symlinks=True)
        for repo in (clone, old):
            sh("git", "config", "remote.origin.uploadpack", str(counter), cwd=repo)
        # before: the fetches deploy made, on a host that (as then) already holds every tag
        before_cmds = [["git", "fetch", "--quiet", "--no-tags", "origin", "+refs/heads/*:refs/remotes/origin/*"],
                       ["git", "fetch", "--quiet", "--no-tags", "origin", "refs/tags/*:refs/tags/*",
                        "+refs/heads/production:refs/remotes/origin/production"]]
        for cmd in before_cmds:  # bring the old host up to date: every tag, once
            sh(*cmd, cwd=old)
        counted(log)
        for cmd in before_cmds:
            sh(*cmd, cwd=old)
        before = counted(log)
        # after: the real deploy (already serving v1: a no-op, as most of a host's deploys are)
        sh(*deploy, cwd=root)
        after = counted(log)
        tags_here = len(sh("git", "tag", cwd=clone).split())
        table.add("one deploy: KB from origin", after / 1024, "KB", "all tags (KB)", before / 1024,
                  target="does not grow with the registry", ok=after * 10 < before)
        table.add("tags the host's clone holds after it", tags_here, "", "refs on origin", REFS + 2)
    table.print()


if __name__ == "__main__":
    main()
