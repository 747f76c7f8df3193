"""The new text of each file under conf/ that a set of overrides (confplan.py) changes: minimal
edits (yamledit.py) where the line allows it, ruamel's round trip where it does not."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tether.core import yamledit
from tether.core.confplan import Override


# -- editing ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileEdit:
    file: str          # relative to conf/
    before: str
    after: str
    overrides: tuple[str, ...]

    def diff(self) -> str:
        import difflib

        return "".join(difflib.unified_diff(self.before.splitlines(keepends=True),
                                            self.after.splitlines(keepends=True),
                                            f"a/conf/{self.file}", f"b/conf/{self.file}"))


def edit_plan(overrides: Sequence[Override], read: Callable[[str], str]) -> list[FileEdit]:
    """The new text of every file the overrides change: choices first, then keys, each a
    minimal edit where the line allows it, ruamel's round trip where it does not."""
    texts: dict[str, tuple[str, str, list[str]]] = {}
    for o in sorted(overrides, key=lambda o: o.kind != "choice"):
        if o.file is None:  # plan_overrides reports these as problems and never returns them
            raise ValueError(f"override {o.text} names no file under conf/")
        if o.file not in texts:
            original = read(o.file)
            texts[o.file] = (original, original, [])
        before, text, names = texts[o.file]
        if o.kind == "choice":
            text = yamledit.set_default(text, o.key, str(o.value))
        elif o.kind == "delete":
            try:
                text = yamledit.delete_value(text, o.path)
            except yamledit.EditUnsupported:
                text = yamledit.round_trip(text, o.path, yamledit.DELETE)
        else:
            edit = yamledit.add_value if o.kind == "add" else yamledit.set_value
            try:
                text = edit(text, o.path, o.value)
            except yamledit.EditUnsupported:
                text = yamledit.round_trip(text, o.path, o.value)
        texts[o.file] = (before, text, [*names, o.text])
    return [FileEdit(f, b, a, tuple(n)) for f, (b, a, n) in texts.items()]
