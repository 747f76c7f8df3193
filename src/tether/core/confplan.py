"""Which Hydra overrides turn the composition of conf/ into params.yaml, and where each one goes.

Pure core: it is given params.yaml's values, a `compose(overrides)` function (Hydra's own
composition, from the adapter in hydraconf.py), the config groups of the defaults list with
their options, and the defaults list itself in merge order with each config's own keys. It
returns overrides in Hydra's syntax (`preprocess=robust`, `evaluate.threshold=0.7`,
`+evaluate.min_precision=0.2`, `~evaluate.target_recall`), each with the file under conf/ that would have to change, or
the reasons the difference is not an override of the existing config. Every override set is
checked by composing it with Hydra before it is offered.

`confedit.edit_plan` turns the overrides into the new text of each file (yamledit.py, minimal
edits); confvalues.py compares values and writes them in Hydra's grammar.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tether.core.confvalues import LeafDiff, describe, leaf_diff, strict_equal

Compose = Callable[[Sequence[str]], dict]
WriteOverride = Callable[[str, str, Any], str]


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


# -- explaining ---------------------------------------------------------------------------
def explain(params: Mapping, compose: Compose, groups: Callable[[], Sequence[Group]],
            entries: Callable[[Sequence[str]], Sequence[Entry]], write: WriteOverride) -> Explanation:
    """`groups` and `entries` are asked only when params.yaml and conf/ disagree. `write(prefix,
    key, value)` spells one override in Hydra's grammar (adapters/hydraconf.override_text, which
    checks it with Hydra's own parser: the core never imports Hydra)."""
    base = compose([])
    if not isinstance(params, Mapping):
        return Explanation(("params.yaml is not a mapping",), (), ("params.yaml is not a mapping of keys",))
    diff0 = leaf_diff(base, params)
    if not diff0.count:
        return Explanation()
    differences = tuple(describe(diff0))
    choices, chosen, composed = _choose_options(params, compose, groups(), base, diff0.count)
    diff = leaf_diff(composed, params)
    listed = entries(choices)
    packages = {e.package: e.override_key for e in listed if e.override_key}
    problems = _reshaped(diff, packages)
    deletions, why = _deletions(diff, listed, packages)
    problems += why
    overrides, why = _choice_overrides(chosen, listed)
    problems += why
    changes, why = _value_overrides(diff, listed, write)
    problems += why
    overrides += changes + deletions
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


def _choose_options(params: Mapping, compose: Compose, groups: Sequence[Group], base: dict,
                    base_count: int) -> tuple[list[str], dict[str, tuple[str, str]], dict]:
    """(choices as overrides, {group: (was, option)}, conf/ composed with them).

    Group choices first: an option is chosen when composing with it leaves fewer differences
    (so params.yaml's subtree equal to what another option composes to is always recognised);
    a tie keeps the current choice, so no choice changes without a reason.
    A group whose package already agrees with params.yaml is not searched (one composition per
    option is the cost of this step)."""
    choices: list[str] = []
    chosen: dict[str, tuple[str, str]] = {}
    composed, best_count = base, base_count
    for g in groups:
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
    return choices, chosen, composed


def _reshaped(diff: LeafDiff, packages: dict[str, str]) -> list[str]:
    """A key that is a mapping on one side and a value on the other is no override."""
    problems = []
    for k, a, b in diff.reshaped:
        hint = (f" (the group choice is `{packages[k]}=…`)" if k in packages else "")
        problems.append(f"{k} is {_shape(a)} in conf/ but {_shape(b)} in params.yaml: not an override of the "
                        f"existing config{hint}")
    return problems


def _deletions(diff: LeafDiff, listed: Sequence[Entry],
               packages: dict[str, str]) -> tuple[list[Override], list[str]]:
    """(`~key` overrides, problems) for the keys conf/ composes and params.yaml lacks."""
    problems = []
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
    return deletions, problems


def _choice_overrides(chosen: dict[str, tuple[str, str]],
                      listed: Sequence[Entry]) -> tuple[list[Override], list[str]]:
    """(group choices, problems): each written into the defaults list that makes it."""
    problems = []
    overrides: list[Override] = []
    by_group = {e.override_key: e for e in listed if e.override_key}
    for name, (was, option) in chosen.items():
        entry = by_group.get(name)
        parent = entry.parent_file if entry else None
        if parent is None:
            problems.append(f"the choice {name}={option} is made outside conf/: cannot write it")
            continue
        overrides.append(Override(f"{name}={option}", "choice", name, option, parent, (), was))
    return overrides, problems


def _value_overrides(diff: LeafDiff, listed: Sequence[Entry], write: WriteOverride) -> tuple[list[Override], list[str]]:
    """(changed and added keys, problems): each into the config of the defaults list that owns it."""
    problems = []
    overrides: list[Override] = []
    changes: list[tuple[str, str, list[tuple[str, object, object]]]] = [
        ("", "change", [(k, b, a) for k, a, b in diff.changed]),
        ("+", "add", [(k, b, None) for k, b in diff.added])]
    for prefix, kind, items in changes:
        for key, value, old in items:
            try:
                text = write(prefix, key, value)
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
    return overrides, problems


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


def _at(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, Mapping) or part not in tree:
            return _MISSING
        tree = tree[part]
    return tree


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _shape(value: Any) -> str:
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
