"""A release directory's stamp (`releases/<id>/.tether/`): the manifest deploy derived from git,
the entries it verified, and the size and mtime of every file it placed. Deploy writes it; deploy,
`verify --target` and every worker read it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tether.clock import now_iso
from tether.digest import sha256_bytes
from tether.core.manifest import dumps

STAMP = ".tether/stamp.json"
# What tether itself keeps in a release directory's `.tether/`: never part of the release's git
# tree. Anything else there (a committed `.tether/allowed_signers`) is the release's own file.
RECORDS = frozenset({".tether/manifest.json", ".tether/entries.json", ".tether/stamp.json",
                     ".tether/attestation.json"})


def manifest_digest(manifest: dict) -> str:
    return sha256_bytes(dumps(manifest).encode())


def read_stamp(release_dir: Path) -> dict | None:
    try:
        return json.loads((release_dir / STAMP).read_text())
    except (OSError, ValueError):
        return None


def stamp_ok(release_dir: Path, manifest: dict) -> bool:
    """A cheap re-check before re-using a materialised release: same manifest, and every file
    has the size and mtime it had when it was verified. `tether verify --target` re-hashes."""
    stamp = read_stamp(release_dir)
    if not stamp or stamp.get("manifest_sha256") != manifest_digest(manifest):
        return False
    for path, (size, mtime_ns) in stamp.get("files", {}).items():
        try:
            st = (release_dir / path).stat()
        except OSError:
            return False
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            return False
    return True


def write_stamp(release_dir: Path, manifest: dict, entries: list[dict], tag_object: str) -> None:
    files = {}
    for e in entries:  # a directory output file by file: what a later patch deploy may link
        p = release_dir / e["path"]
        if p.is_file():
            st = p.stat()
            files[e["path"]] = (st.st_size, st.st_mtime_ns)
        elif p.is_dir() and not p.is_symlink():
            for rel in files_under(p):
                st = (p / rel).stat()
                files[f"{e['path']}/{rel}"] = (st.st_size, st.st_mtime_ns)
    (release_dir / ".tether").mkdir(exist_ok=True)
    records = {
        "manifest.json": dumps(manifest),
        "entries.json": json.dumps(entries, indent=1),
        "stamp.json": json.dumps({
            "release": f"{manifest['model']}@v{manifest['version']}",
            "tag_object": tag_object,
            "manifest_sha256": manifest_digest(manifest),
            "verified_at": now_iso(),
            "files": files,
        }, indent=1),
    }
    for name, text in records.items():  # read-only, like every file deploy places
        path = release_dir / ".tether" / name
        path.write_text(text)
        os.chmod(path, 0o444)


def files_under(root: Path) -> list[str]:
    found = []
    for dirpath, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            found.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return found
