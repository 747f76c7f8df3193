"""The ref index: what git already fixes by object id, kept between commands, so a read of a
registry with 13,000 tags asks git only for the names and ids of its refs (`for-each-ref
%(objectname)`, which reads packed-refs and nothing else) instead of re-opening every tag
object and commit to peel it.

What is kept can never go stale, because each entry is keyed by what determines it:
- an object id fixes its type, peeled commit, tree, creator, date and first message line;
- a tag name fixes its parse as a release name and as a GTO tag (pure functions of the string,
  kept per tether version);
- a commit fixes its first-parent history, so a branch's log is extended from the tip it was
  last read at, after checking that tip is on the new tip's first-parent chain.

Only read commands use it (`Registry(cached=True)`: list, status, history, show, diff, report);
every command that moves a ref or writes a file reads git afresh. A missing, foreign or corrupt
file is rebuilt from git: the index can save work, never change an answer.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tether import __version__
from tether.adapters.gitlog import LogEntry
from tether.adapters.gitrepo import Git, RefRecord

SCHEMA = 1
PATTERNS = ("refs/tags/", "refs/heads/", "refs/remotes/origin/")  # every ref the registry reads
# Past this many unknown objects one full `for-each-ref` beats naming each ref.
BY_NAME_MAX = 400
KEEP_LOGS = 16  # branches whose first-parent log is kept
KEEP_VIEWS = 4  # answers kept per view (e.g. `list` and `list --model a`)
VIEW_SCHEMA = "views-3"  # bump when a view's shape or meaning changes


def _common(git: Git) -> Path:
    return git.common_dir() / "tether"


def _load(path: Path, salt: str) -> dict:
    """A JSON payload written by _save, or {} if the file is missing, foreign or damaged."""
    try:
        raw = path.read_bytes()
    except OSError:
        return {}
    head, sep, body = raw.partition(b"\n")
    try:
        meta = json.loads(head)
        if not sep or meta.get("schema") != SCHEMA or meta.get("salt") != salt:
            return {}
        if meta.get("sha256") != hashlib.sha256(body).hexdigest():
            return {}
        data = json.loads(body)
    except (ValueError, AttributeError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(path: Path, salt: str, data: dict) -> None:
    body = json.dumps(data, separators=(",", ":")).encode()
    head = json.dumps({"schema": SCHEMA, "salt": salt, "sha256": hashlib.sha256(body).hexdigest()}).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(head + b"\n" + body)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only clone still answers, from git


class RefIndex:
    def __init__(self, git: Git) -> None:
        self.git = git
        self.dir = _common(git)
        self.path = self.dir / "refindex.json"
        self._data: dict | None = None  # read on first use: a view answered whole never needs it
        self.dirty = False
        self._listing: tuple[tuple[str, ...], str] | None = None
        self._logs: dict | None = None
        # a shallow clone's history is truncated where `.git/shallow` says; `git fetch --unshallow`
        # changes it without moving a ref. Its bytes are part of every view's key, and no
        # first-parent log is kept or reused while the clone is shallow.
        try:
            self.shallow: bytes = (self.dir.parent / "shallow").read_bytes()
        except OSError:
            self.shallow = b""

    def _facts(self) -> dict:
        if self._data is None:
            data = _load(self.path, __version__)
            objects, names = data.get("objects"), data.get("names")
            self._data = {"objects": objects if isinstance(objects, dict) else {},
                          "names": names if isinstance(names, dict) else {}}  # names: 0 = not such a name
        return self._data

    @property
    def objects(self) -> dict[str, list]:
        return self._facts()["objects"]

    @property
    def names(self) -> dict[str, list | int]:
        return self._facts()["names"]

    # -- views ----------------------------------------------------------------------------
    # A read command's whole answer, kept under the digest of every input it was computed from:
    # the ref state (snapshot) and the bytes of the files it read (dvc.yaml, allowed signers).
    # The same inputs give the same answer, so a hit is the answer; anything else recomputes.
    def view_key(self, *inputs: str | bytes) -> str:
        h = hashlib.sha256(f"{VIEW_SCHEMA} {__version__}".encode())
        for x in (self.shallow, *inputs):
            b = x.encode() if isinstance(x, str) else x
            h.update(len(b).to_bytes(8, "big") + b)
        return h.hexdigest()

    def view(self, name: str, key: str):
        """What `keep_view(name, key, …)` stored, or None."""
        hit = _load(self.dir / "views" / name / f"{key}.json", key)
        return hit.get("value") if isinstance(hit, dict) else None

    def keep_view(self, name: str, key: str, value) -> None:
        """One file per answer (a hit reads only its own), the newest KEEP_VIEWS per view."""
        folder = self.dir / "views" / name
        _save(folder / f"{key}.json", key, {"value": value})
        try:
            kept = sorted(folder.glob("*.json"), key=lambda f: f.stat().st_mtime_ns, reverse=True)
            for old in kept[KEEP_VIEWS:]:
                old.unlink()
        except OSError:
            pass  # another reader pruned it first

    # -- ref targets ----------------------------------------------------------------------
    def snapshot(self, *patterns: str) -> str:
        """Read the listing of these refs (once per index: records() answers from the same
        reading) and return its digest, which names the whole ref state a view is computed from."""
        if self._listing is None or self._listing[0] != patterns:
            self._listing = (patterns, self.git.ref_listing(*patterns))
        return hashlib.sha256(self._listing[1].encode()).hexdigest()

    def records(self, *patterns: str) -> list[RefRecord]:
        """Every matching ref as `Git.for_each_ref(messages=False)` gives it, plus each
        annotated tag's first message line, from one cheap listing and the index; the objects
        the index lacks are read from git in one more process."""
        self.snapshot(*patterns)
        assert self._listing is not None
        pairs = self.git.ref_targets(listing=self._listing[1])
        missing = [name for name, oid in pairs if not _fact_ok(self.objects.get(oid))]
        if missing:
            wanted = patterns if len(missing) > BY_NAME_MAX else tuple(missing)
            for rec in self.git.for_each_ref(*wanted, messages=False, first_line=True):
                self.objects[rec.objectname] = [rec.objecttype, rec.commit, rec.tree, rec.creator_date,
                                                rec.creator, rec.message]
            self.dirty = True
            self.save()
        out = []
        for name, oid in pairs:
            f = self.objects.get(oid)
            if f is None or not _fact_ok(f):  # deleted between the two reads: as if listed a moment later
                continue
            out.append(RefRecord(name=name, objecttype=f[0], objectname=oid, commit=f[1], tree=f[2],
                                 creator_date=f[3], creator=f[4], message=f[5] if f[0] == "tag" else ""))
        return out

    # -- parsed names ---------------------------------------------------------------------
    def parsed(self, kind: str, name: str, parse, encode, decode):
        """parse(name), memoised in the index as encode(value) (None: not such a name)."""
        key = f"{kind}:{name}"
        hit = self.names.get(key)
        if hit is not None:
            try:
                return decode(hit) if hit else None
            except (TypeError, ValueError, IndexError):
                pass
        value = parse(name)
        self.names[key] = encode(value) if value is not None else 0
        self.dirty = True
        return value

    # -- first-parent logs ----------------------------------------------------------------
    def first_parent_log(self, branch: str, tip: str) -> list[LogEntry]:
        """`Git.log_first_parent(tip)`, extended from where `branch` was last read (read whole,
        and not kept, in a shallow clone)."""
        if self.shallow:
            return self.git.log_first_parent(tip)
        path = self.dir / "logs.json"
        if self._logs is None:
            self._logs = _load(path, "logs")  # once per index, however many branches are read
        logs = self._logs
        entry = logs.get(branch)
        cached: list[LogEntry] | None = None
        old_tip = entry.get("tip") if isinstance(entry, dict) else None
        if isinstance(old_tip, str) and isinstance(entry.get("entries"), list):  # type: ignore[union-attr]
            try:
                cached = [_entry(e) for e in entry["entries"]]  # type: ignore[index]
            except (TypeError, ValueError, IndexError):
                cached = None
        if cached and old_tip == tip:
            return cached
        entries: list[LogEntry]
        if cached and isinstance(old_tip, str):
            new = self.git.log_first_parent(tip, stop_at=old_tip)
            if new and new[-1].parents[:1] == (old_tip,):
                entries = new + cached
            else:  # the branch was reset or rewritten: read it whole
                entries = self.git.log_first_parent(tip)
        else:
            entries = self.git.log_first_parent(tip)
        logs.pop(branch, None)
        logs[branch] = {"tip": tip, "entries": [_row(e) for e in entries]}
        while len(logs) > KEEP_LOGS:
            logs.pop(next(iter(logs)))
        _save(path, "logs", logs)
        return entries

    def save(self) -> None:
        if self.dirty:
            _save(self.path, __version__, {"objects": self.objects, "names": self.names})
            self.dirty = False


def _fact_ok(f) -> bool:
    # Shape only: the file's checksum (see _load) already vouches for what tether wrote.
    return type(f) is list and len(f) == 6


def _row(e: LogEntry) -> list:
    return [e.commit, list(e.parents), e.tree, e.date, e.message, e.trailers, e.author]


def _entry(r: list) -> LogEntry:
    commit, parents, tree, date, message, trailers, author = r
    if not (isinstance(trailers, dict) and isinstance(parents, list)
            and all(isinstance(x, str) for x in (commit, tree, date, message, author, *parents, *trailers.values()))):
        raise TypeError("not a log entry")
    return LogEntry(commit=commit, parents=tuple(parents), tree=tree, date=date, message=message,
                    trailers=trailers, author=author)

