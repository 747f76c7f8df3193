"""Minimal edits of YAML text: change one value, add one key, change one defaults-list choice.

Pure (text in, text out). ruamel.yaml's round-trip loader only *locates* the node (line and
column); the edit replaces that one scalar on its line or inserts the new lines, so every
comment, blank line, quote and key order of the file stays as the user wrote it. Where a value
is not a one-line scalar (a block scalar, a multi-line list, a flow mapping), the file is
re-emitted by ruamel's round-trip dumper instead, which still keeps comments.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any, cast

import yaml


class EditUnsupported(Exception):
    """The edit cannot be done line by line; the caller may fall back to a round trip."""


def render(value) -> str:
    """`value` as one line of YAML that loads back to exactly `value`."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20, allow_unicode=True)
    text = text[:-len("\n...\n")] if text.endswith("\n...\n") else text.rstrip("\n")
    if "\n" in text or yaml.safe_load(text) != value or type(yaml.safe_load(text)) is not type(value):
        raise EditUnsupported(f"cannot write {value!r} on one line")
    return text


def _load(text: str) -> Any:
    from ruamel.yaml import YAML

    return YAML(typ="rt").load(text)


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _scalar_end(line: str, col: int) -> int:
    """Where the one-line scalar (or balanced flow collection) starting at `col` ends."""
    rest = line[col:].rstrip("\r\n")
    if not rest:
        raise EditUnsupported("value is not on the key's line")
    first = rest[0]
    if first in "|>&*!":
        raise EditUnsupported("block scalar, anchor, alias or tag")
    if first == "'":
        i = 1
        while i < len(rest):
            if rest[i] == "'":
                if i + 1 < len(rest) and rest[i + 1] == "'":
                    i += 2
                    continue
                return col + i + 1
            i += 1
        raise EditUnsupported("multi-line quoted scalar")
    if first == '"':
        i = 1
        while i < len(rest):
            if rest[i] == "\\":
                i += 2
                continue
            if rest[i] == '"':
                return col + i + 1
            i += 1
        raise EditUnsupported("multi-line quoted scalar")
    if first in "[{":
        depth, i, quote = 0, 0, None
        while i < len(rest):
            ch = rest[i]
            if quote:
                quote = None if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch in "[{":
                depth += 1
            elif ch in "]}":
                depth -= 1
                if depth == 0:
                    return col + i + 1
            i += 1
        raise EditUnsupported("multi-line flow collection")
    m = re.search(r"\s+#", rest)
    end = m.start() if m else len(rest.rstrip())
    return col + len(rest[:end].rstrip())


def _replace_at(text: str, line_no: int, col: int, value) -> str:
    lines = _lines(text)
    line = lines[line_no]
    end = _scalar_end(line, col)
    lines[line_no] = line[:col] + render(value) + line[end:]
    return "".join(lines)


def _node(doc, path: Sequence[str]):
    node = doc
    for part in path:
        if not isinstance(node, dict) or part not in node:
            raise KeyError(".".join(path))
        node = node[part]
    return node


def set_value(text: str, path: Sequence[str], value) -> str:
    """Change the value at `path` (which exists) and nothing else."""
    doc = _load(text)
    parent = _node(doc, path[:-1])
    key = path[-1]
    if not hasattr(parent, "lc") or key not in parent:
        raise KeyError(".".join(path))
    if isinstance(parent[key], (dict, list)) and not _is_flow(parent[key]):
        raise EditUnsupported("block collection")
    if _is_flow(parent):
        raise EditUnsupported("flow mapping")
    line, col = parent.lc.value(key)
    key_line = parent.lc.key(key)[0]
    if line != key_line:
        raise EditUnsupported("value is not on the key's line")
    return _replace_at(text, line, col, value)


def _is_flow(node) -> bool:
    fa = getattr(node, "fa", None)
    return bool(fa is not None and fa.flow_style())


def add_value(text: str, path: Sequence[str], value) -> str:
    """Add the key at `path` (absent) under the deepest mapping of `path` the file has."""
    doc = _load(text)
    if doc is not None and not isinstance(doc, dict):
        raise EditUnsupported("the file is not a mapping")
    depth, node = 0, cast(Any, doc or {})
    while depth < len(path) - 1 and isinstance(node.get(path[depth]), dict):
        node = node[path[depth]]
        depth += 1
    if path[depth] in node:
        raise EditUnsupported(f"{'.'.join(path[:depth + 1])} exists and is not a mapping")
    missing = list(path[depth:])
    lines = _lines(text)
    if depth == 0:
        indent, insert_at = 0, len(lines)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
    else:
        if _is_flow(node) or not node:
            raise EditUnsupported("flow or empty mapping")
        first = next(iter(node))
        start, indent = node.lc.key(first)
        insert_at = start + 1
        for i in range(start + 1, len(lines)):
            stripped = lines[i].strip()
            if not stripped:
                continue
            if len(lines[i]) - len(lines[i].lstrip(" ")) < indent:
                break
            insert_at = i + 1
    new = []
    for i, part in enumerate(missing[:-1]):
        new.append(f"{' ' * (indent + 2 * i)}{render_key(part)}:\n")
    new += _block(missing[-1], value, indent + 2 * (len(missing) - 1))
    return "".join(lines[:insert_at] + new + lines[insert_at:])


def _block(key: str, value, indent: int) -> list[str]:
    """`key: value` as block YAML lines; a mapping becomes nested keys, not a flow mapping."""
    pad = " " * indent
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        out = [f"{pad}{render_key(key)}:\n"]
        for k, v in value.items():
            out += _block(k, v, indent + 2)
        return out
    return [f"{pad}{render_key(key)}: {render(value)}\n"]


def delete_value(text: str, path: Sequence[str]) -> str:
    """Remove the key at `path` with its whole block (and the comment on its line)."""
    doc = _load(text)
    parent = _node(doc, path[:-1])
    key = path[-1]
    if not hasattr(parent, "lc") or key not in parent:
        raise KeyError(".".join(path))
    if _is_flow(parent) or (len(parent) == 1 and len(path) > 1):
        raise EditUnsupported("flow mapping, or the parent would be left empty")
    lines = _lines(text)
    start, indent = parent.lc.key(key)
    if lines[start][:indent].strip():
        raise EditUnsupported("key does not start its line")
    end = start + 1
    for i in range(start + 1, len(lines)):
        stripped = lines[i].strip()
        if not stripped:
            continue
        if len(lines[i]) - len(lines[i].lstrip(" ")) <= indent:
            break
        end = i + 1
    return "".join(lines[:start] + lines[end:])


def render_key(key: str) -> str:
    text = render(key)
    if yaml.safe_load(f"{text}: 1") != {key: 1}:
        raise EditUnsupported(f"cannot write key {key!r}")
    return text


def _default_key(raw: str) -> str:
    """`override /preprocess@pre` → `preprocess@pre`: the group (and package) a defaults-list
    item names, as Hydra's override key spells it."""
    key = raw.strip()
    if key.startswith("override "):
        key = key[len("override "):].strip()
    return key.lstrip("/")


def set_default(text: str, group: str, option: str) -> str:
    """Change the option chosen for `group` in this file's defaults list."""
    doc = _load(text)
    defaults = doc.get("defaults") if isinstance(doc, dict) else None
    if not isinstance(defaults, list):
        raise EditUnsupported("no defaults list")
    hits: list[Any] = []
    for item in defaults:
        if isinstance(item, dict) and len(item) == 1:
            (raw,) = item.keys()
            key = _default_key(str(raw))
            if key == group or group.endswith("/" + key):
                hits.append(item)
    if len(hits) != 1:
        raise EditUnsupported(f"{len(hits)} defaults-list entries choose {group}")
    item = hits[0]
    (raw,) = item.keys()
    line, col = item.lc.value(raw)
    if line != item.lc.key(raw)[0]:
        raise EditUnsupported("defaults choice is not on its key's line")
    return _replace_at(text, line, col, option)


DELETE = object()


def round_trip(text: str, path: Sequence[str], value) -> str:
    """Fallback: set `path` to `value` (or remove it: DELETE) and re-emit the file with
    ruamel's round-trip dumper."""
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 1 << 20
    y.indent(mapping=2, sequence=4, offset=2)
    doc = y.load(text)
    if doc is None:
        from ruamel.yaml.comments import CommentedMap

        doc = CommentedMap()
    node = doc
    for part in path[:-1]:
        if part not in node:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise EditUnsupported(f"{'.'.join(path)}: a parent is not a mapping")
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()
