"""What verifying signatures costs a read: `tether history` over an environment of N signed
moves, verified against a policy that requires them (cold: git verifies every move; warm: the
verdicts remembered per allowed signers file), against the same history unsigned with no
policy (the baseline), all measured in this run."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, ENV, Table, wall  # noqa: E402

MOVES = 200
DVC_YAML = "artifacts:\n  m:\n    path: model.bin\n    type: model\n    meta:\n      tether:\n        smoke: false\n"
POLICY = "        signing:\n          environments:\n            production: {require_signed: true}\n"


def git(root: Path, *args: str, input: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=root, env=ENV, input=input, capture_output=True, text=True,
                          check=True).stdout.strip()


def build(root: Path, key: Path | None) -> None:
    """A repository with one release and MOVES environment moves shaped as tether writes them."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "model.bin").write_bytes(b"weights")
    (root / "dvc.yaml").write_text(DVC_YAML + (POLICY if key else ""))
    if key:
        (root / ".tether").mkdir()
        pub = key.with_suffix(".pub").read_text().split()[:2]
        (root / ".tether/allowed_signers").write_text(f"bench@example.com {' '.join(pub)}\n")
        git(root, "config", "gpg.format", "ssh")
        git(root, "config", "user.signingkey", str(key))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "model")
    git(root, "tag", "-a", "-m", "release", "m@v1.0.0")
    tag, commit, tree = (git(root, "rev-parse", r) for r in ("m@v1.0.0", "HEAD", "HEAD^{tree}"))
    head = None
    for i in range(MOVES):
        msg = (f"promote production to m@v1.0.0\n\nbench {i}\n\nTether-Action: promote\nTether-Release: m@v1.0.0\n"
               f"Tether-Tag-Object: {tag}\nTether-Previous: m@v1.0.0\nTether-Approver: bench@example.com\n"
               f"Tether-Reason: bench {i}\nTether-Time: 2026-12-01T00:{i // 60:02d}:{i % 60:02d}.000000Z\n")
        parents = (["-p", head] if head else []) + ["-p", commit]
        head = git(root, "commit-tree", *(["-S"] if key else []), tree, *parents, input=msg)
    git(root, "update-ref", "refs/heads/production", head)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tether-bench-signing-") as tmp:
        base = Path(tmp)
        key = base / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        build(base / "plain", None)
        build(base / "signed", key)
        tether = [str(BIN / "tether"), "history", "--env", "production"]
        # what is measured must be right: every move verified, read from --json (never from the table's text)
        out = subprocess.run([*tether, "--json"], cwd=base / "signed", env=ENV, capture_output=True, text=True,
                             check=True).stdout
        sigs = [ev["signature"] for ev in json.loads(out)["environments"]["production"]["events"]]
        verified = sum(1 for s in sigs if s and s["verified"] and s["principal"] == "bench@example.com")
        assert len(sigs) == MOVES and verified == MOVES, (len(sigs), verified, sigs[:2])
        import shutil

        verdicts = base / "signed/.git/tether/signatures"
        t_plain = wall(tether, base / "plain")
        t_cold = wall(tether, base / "signed", repeat=3, setup=lambda: shutil.rmtree(verdicts, ignore_errors=True))
        t_warm = wall(tether, base / "signed")
        t = Table(f"Signing: tether history over {MOVES} moves")
        t.add("history, all verified by git (s)", t_cold, "s", "unsigned, no policy", t_plain)
        t.add("history, verdicts remembered (s)", t_warm, "s", "unsigned, no policy", t_plain)
        t.add("git verification per move (ms)", (t_cold - t_plain) / MOVES * 1000, "ms")
        t.print()


if __name__ == "__main__":
    main()
