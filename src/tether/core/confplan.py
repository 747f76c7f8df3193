"""Which Hydra overrides turn the composition of conf/ into params.yaml, and where each one goes.

Pure core: it is given params.yaml's values, a `compose(overrides)` function (Hydra's own
composition, from the adapter in hydraconf.py), the config groups of the defaults list with
their options, and the defaults list itself in merge order with each config's own keys. It
returns overrides in Hydra's syntax (`preprocess=robust`, `evaluate.threshold=0.7`,
`+evaluate.min_precision=0.2`, `~evaluate.target_recall`), each with the file under conf/ that would have to change, or
the reasons the difference is not an override of the existing config. Every override set is
checked by composing it with Hydra before it is offered.

`edit_plan` turns the overrides into the new text of each file (yamledit.py, minimal edits).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tether.core import yamledit

Compose = Callable[[Sequence[str]], dict]


@dataclass(frozen=True)
class Entry:
    """One config of Hydra's defaults list, in merge order (the last one that sets a key wins)."""

    config_path: str             # Hydra's name: "evaluate/fixed", "config"
    file: str | None             # relative to conf/ ("evaluate/fixed.yaml"); None if not a file there
    package: str                 # where its keys land ("" = the root)
    content: Mapping             # its own keys, without its defaults list
    override_key: str | None = None  # the group it is an option of ("evaluate"), None for config.yaml
    parent_file: str | None = None   # the file whose defaults list chooses it
    primary: bool = False


@dataclass(frozen=True)
class Group:
    name: str                    # the override key: "preprocess"
    current: str
    options: tuple[str, ...]
    package: str = ""            # where the chosen option's keys land


@dataclass(frozen=True)
class Override:
    text: str                    # Hydra syntax
    kind: str                    # "choice" | "change" | "add" | "delete"
    key: str                     # the group or the dotted key
    value: object
    file: str | None             # the file under conf/ to change
    path: tuple[str, ...] = ()   # the key inside that file (change/add)
    was: object = None           # the option or value conf/ has now

    @property
    def where(self) -> str:
        if self.kind == "choice":
            return f"conf/{self.file}: defaults list, {self.key}: {self.was} → {self.value}"
        verb = {"add": "new key", "delete": "remove key"}.get(self.kind, "key")
        return f"conf/{self.file}: {verb} {'.'.join(self.path)}"

    def as_dict(self) -> dict:
        return {"override": self.text, "kind": self.kind, "key": self.key, "value": self.value,
                "file": f"conf/{self.file}" if self.file else None, "path": ".".join(self.path),
                "was": self.was}


@dataclass(frozen=True)
class Explanation:
    differences: tuple[str, ...] = ()     # where params.yaml and conf/ disagree, key by key
    overrides: tuple[Override, ...] = ()
    problems: tuple[str, ...] = ()        # why the difference is not an override (refusal)

    @property
    def agrees(self) -> bool:
        return not self.differences

    @property
    def expressible(self) -> bool:
        return bool(self.differences) and not self.problems and bool(self.overrides)

    def as_dict(self) -> dict:
        return {"agrees": self.agrees, "expressible": self.expressible,
                "differences": list(self.differences),
                "overrides": [o.as_dict() for o in self.overrides], "problems": list(self.problems)}


# -- comparing ----------------------------------------------------------------------------
def strict_equal(a, b) -> bool:
    """Equal values of equal types: 2 is not 2.0 and True is not 1 (YAML would write them
    differently, and Hydra keeps the type)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@dataclass
class LeafDiff:
    changed: list[tuple[str, object, object]] = field(default_factory=list)  # key, conf/, params
    added: list[tuple[str, object]] = field(default_factory=list)            # only in params
    removed: list[tuple[str, object]] = field(default_factory=list)          # only in conf/
    reshaped: list[tuple[str, object, object]] = field(default_factory=list)  # mapping vs value

    @property
    def count(self) -> int:
        return len(self.changed) + len(self.added) + len(self.removed) + len(self.reshaped)


def leaf_diff(conf: Mapping, params: Mapping, prefix: str = "", out: LeafDiff | None = None) -> LeafDiff:
    out = out if out is not None else LeafDiff()
    for k in list(conf) + [k for k in params if k not in conf]:
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in params:
            out.removed.append((key, conf[k]))
        elif k not in conf:
            if isinstance(params[k], Mapping) and params[k]:
                leaf_diff({}, params[k], key, out)  # `+a.b=1`, the way one writes it after -S
            else:
                out.added.append((key, params[k]))
        else:
            a, b = conf[k], params[k]
            if isinstance(a, Mapping) and isinstance(b, Mapping) and (a or b):
                leaf_diff(a, b, key, out)
            elif isinstance(a, Mapping) != isinstance(b, Mapping):
                out.reshaped.append((key, a, b))
            elif not strict_equal(a, b):
                out.changed.append((key, a, b))
    return out


def describe(diff: LeafDiff) -> list[str]:
    lines = [f"{k}: params.yaml has {b!r}, conf/ composes {a!r}" for k, a, b in diff.changed + diff.reshaped]
    lines += [f"{k}: params.yaml has {b!r}, conf/ composes (missing)" for k, b in diff.added]
    lines += [f"{k}: params.yaml has (missing), conf/ composes {a!r}" for k, a in diff.removed]
    return sorted(lines)


# -- Hydra's override grammar -------------------------------------------------------------
def hydra_value(value) -> str:
    """`value` in Hydra's override grammar, checked by Hydra's own parser."""
    text = _hydra_value(value)
    if not strict_equal(_parse(f"k={text}").value(), value):
        text = _quote(str(value)) if isinstance(value, str) else text
        if not strict_equal(_parse(f"k={text}").value(), value):
            raise ValueError(f"cannot write {value!r} as a Hydra override value")
    return text


def _hydra_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if not (isinstance(value, float) and math.isinf(value)) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return value if value.strip() == value and value else _quote(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot write {value!r} as a Hydra override value")


def _quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parse(text: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([text])[0]


def override_text(prefix: str, key: str, value) -> str:
    text = f"{prefix}{key}={hydra_value(value)}"
    parsed = _parse(text)  # raises on a key Hydra's grammar does not take
    if parsed.key_or_group != key:
        raise ValueError(f"{key!r} is not a key Hydra's override grammar can name")
    return text


# -- explaining ---------------------------------------------------------------------------
def explain(params: Mapping, compose: Compose, groups: Callable[[], Sequence[Group]],
            entries: Callable[[Sequence[str]], Sequence[Entry]]) -> Explanation:
    """`groups` and `entries` are asked only when params.yaml and conf/ disagree."""
    base = compose([])
    if not isinstance(params, Mapping):
        return Explanation(("params.yaml is not a mapping",), (), ("params.yaml is not a mapping of keys",))
    diff0 = leaf_diff(base, params)
    if not diff0.count:
        return Explanation()
    differences = tuple(describe(diff0))

    # Group choices first: an option is chosen when composing with it leaves fewer differences
    # (so params.yaml's subtree equal to what another option composes to is always recognised);
    # a tie keeps the current choice, so no choice changes without a reason.
    # A group whose package already agrees with params.yaml is not searched (one composition per
    # option is the cost of this step).
    choices: list[str] = []
    chosen: dict[str, tuple[str, str]] = {}
    composed, best_count = base, diff0.count
    for g in groups():
        if g.package and strict_equal(_at(composed, g.package), _at(params, g.package)):
            continue
        best, best_cost, best_cfg = g.current, best_count, composed
        for option in g.options:
            if option == g.current:
                continue
            try:
                cfg = compose([*choices, f"{g.name}={option}"])
            except Exception:  # an option that does not compose with the rest is no candidate
                continue
            cost = leaf_diff(cfg, params).count
            if cost < best_cost:
                best, best_cost, best_cfg = option, cost, cfg
        if best != g.current:
            choices.append(f"{g.name}={best}")
            chosen[g.name] = (g.current, best)
            composed, best_count = best_cfg, best_cost

    diff = leaf_diff(composed, params)
    listed = entries(choices)
    packages = {e.package: e.override_key for e in listed if e.override_key}
    problems = []
    for k, a, b in diff.reshaped:
        hint = (f" (the group choice is `{packages[k]}=…`)" if k in packages else "")
        problems.append(f"{k} is {_shape(a)} in conf/ but {_shape(b)} in params.yaml: not an override of the "
                        f"existing config{hint}")
    deletions: list[Override] = []
    for k, a in diff.removed:
        if k in packages:
            problems.append(f"params.yaml has no {k}, the package of group {packages[k]}: removing a group "
                            "is not an override tether writes into conf/")
            continue
        owners = _owners(listed, k.split("."))
        if not owners or any(e.file is None for e, _ in owners):
            problems.append(f"params.yaml has no {k}, which conf/ composes ({_short(a)}) from outside conf/")
            continue
        for e, path in owners:  # every config that sets it, or an earlier one would still provide it
            deletions.append(Override(f"~{k}", "delete", k, None, e.file, tuple(path), a))
    overrides: list[Override] = []
    by_group = {e.override_key: e for e in listed if e.override_key}
    for name, (was, option) in chosen.items():
        entry = by_group.get(name)
        parent = entry.parent_file if entry else None
        if parent is None:
            problems.append(f"the choice {name}={option} is made outside conf/: cannot write it")
            continue
        overrides.append(Override(f"{name}={option}", "choice", name, option, parent, (), was))
    changes: list[tuple[str, str, list[tuple[str, object, object]]]] = [
        ("", "change", [(k, b, a) for k, a, b in diff.changed]),
        ("+", "add", [(k, b, None) for k, b in diff.added])]
    for prefix, kind, items in changes:
        for key, value, old in items:
            try:
                text = override_text(prefix, key, value)
            except Exception as exc:
                problems.append(f"{key}: {exc}")
                continue
            owner = _owner(listed, key.split("."), kind == "add")
            if owner is None or owner[0].file is None:
                where = owner[0].config_path if owner else "no config"
                problems.append(f"{key} is set by {where}, which is not a file under conf/")
                continue
            entry, path = owner
            overrides.append(Override(text, kind, key, value, entry.file, tuple(path), old))
    overrides += deletions
    if not problems:
        overrides = _keep_interpolations(overrides, listed, choices, compose, params)

    if not problems:
        try:
            final = compose([*choices, *dict.fromkeys(o.text for o in overrides if o.kind != "choice")])
        except Exception as exc:
            return Explanation(differences, tuple(overrides), (f"Hydra does not take these overrides: {exc}",))
        if not strict_equal(final, params):
            problems.append("conf/ composed with " + " ".join(o.text for o in overrides)
                            + " still differs from params.yaml: " + "; ".join(describe(leaf_diff(final, params))[:4]))
    return Explanation(differences, tuple(overrides), tuple(problems))


def _keep_interpolations(overrides: list[Override], listed: Sequence[Entry], choices: list[str],
                         compose: Compose, params: Mapping) -> list[Override]:
    """A key conf/ computes by interpolation (`report: ${evaluate.threshold}`) often differs only
    because its source does: drop its override when the rest composes to params.yaml anyway, so
    the interpolation stays in conf/ instead of being replaced by its value."""
    for o in [o for o in overrides if o.kind == "change" and _interpolated(listed, o)]:
        rest = [x for x in overrides if x is not o]
        try:
            cfg = compose([*choices, *dict.fromkeys(x.text for x in rest if x.kind != "choice")])
        except Exception:
            continue
        if strict_equal(cfg, params):
            overrides = rest
    return overrides


def _interpolated(listed: Sequence[Entry], o: Override) -> bool:
    for e in listed:
        if e.file == o.file:
            node = e.content
            for part in o.path:
                node = node.get(part, _MISSING) if isinstance(node, Mapping) else _MISSING
            if isinstance(node, str) and "${" in node:
                return True
    return False


_MISSING = object()


def _at(tree, dotted: str):
    for part in dotted.split("."):
        if not isinstance(tree, Mapping) or part not in tree:
            return _MISSING
        tree = tree[part]
    return tree


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _shape(value) -> str:
    return "a mapping" if isinstance(value, Mapping) else f"the value {_short(value)}"


def _owners(listed: Sequence[Entry], parts: list[str]) -> list[tuple[Entry, list[str]]]:
    """Every entry of the defaults list that sets the key, with the key inside its file."""
    out = []
    for e in listed:
        pkg = [p for p in e.package.split(".") if p]
        if parts[:len(pkg)] != pkg or len(parts) <= len(pkg):
            continue
        rel, node = parts[len(pkg):], e.content
        for part in rel:
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            out.append((e, rel))
    return out


def _owner(listed: Sequence[Entry], parts: list[str], new: bool) -> tuple[Entry, list[str]] | None:
    """The entry an override of `parts` changes, and the key inside its file.

    An existing key: the last entry of the defaults list that sets it (Hydra merges in list
    order, so that one wins). A new key: the last entry that holds the longest part of its
    parent path, so `+evaluate.min_precision` lands beside `evaluate.threshold`; a new top-level
    key goes to the primary config."""
    best: tuple[int, int, Entry] | None = None
    for index, e in enumerate(listed):
        pkg = [p for p in e.package.split(".") if p]
        if parts[:len(pkg)] != pkg or len(parts) <= len(pkg):
            continue
        rel = parts[len(pkg):]
        node, depth = e.content, 0
        while depth < len(rel) and isinstance(node, Mapping) and rel[depth] in node:
            node, depth = node[rel[depth]], depth + 1
        if not new:
            if depth == len(rel):
                best = (len(parts), index, e)
            continue
        held = len(pkg) + depth if (pkg or depth) else 0
        if held == 0 and not e.primary:
            continue
        if best is None or (held, index) >= best[:2]:
            best = (held, index, e)
    if best is None:
        return None
    e = best[2]
    return e, parts[len([p for p in e.package.split(".") if p]):]


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
