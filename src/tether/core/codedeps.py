"""Which source files a stage really runs: its entry point plus every project module it
imports, transitively. A stage that runs code it does not declare as a dep is incomplete:
`dvc repro` would not notice a change there, and the release would not pin it.

Pure: files are read through a callback, so this works on a workspace or on a git tree.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from tether.core.dvcgraph import Stage, stage_entrypoints, under

Reader = Callable[[str], "str | None"]


def _module_files(module: str, roots: list[str], read: Reader) -> str | None:
    rel = module.replace(".", "/")
    for root in roots:
        prefix = "" if root in (".", "") else root.rstrip("/") + "/"
        for cand in (f"{prefix}{rel}.py", f"{prefix}{rel}/__init__.py", f"{prefix}{rel}/__main__.py"):
            if read(cand) is not None:
                return cand
    return None


def _imports(source: str, this_module: str | None) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    pkg = this_module.rsplit(".", 1)[0] if this_module and "." in this_module else (this_module or "")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".") if pkg else []
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return {n for n in names if n}


def stage_sources(stage: Stage, read: Reader, default_roots: tuple[str, ...] = (".", "src")) -> dict[str, str]:
    """{source file: why it is needed} for everything the stage's command runs."""
    entries = stage_entrypoints(stage.cmd)
    roots = [r for kind, r in entries if kind == "root"] + list(default_roots)
    needed: dict[str, str] = {}
    todo: list[tuple[str, str | None, str]] = []
    for kind, name in entries:
        if kind == "module":
            path = _module_files(name, roots, read)
            if path:
                todo.append((path, name, f"run by `{stage.cmd}`"))
                # Running a.b.c imports the packages a and a.b first.
                parts = name.split(".")
                for i in range(1, len(parts)):
                    init = _module_files(".".join(parts[:i]), roots, read)
                    if init:
                        todo.append((init, ".".join(parts[:i]), f"package of {name}"))
        elif kind == "script" and read(name) is not None:
            todo.append((name, None, f"run by `{stage.cmd}`"))
    while todo:
        path, module, why = todo.pop()
        if path in needed:
            continue
        src = read(path) or ""
        if path.endswith("__init__.py") and _only_docstring(src):
            continue  # a bare package marker changes nothing the stage computes
        needed[path] = why
        for imported in _imports(src, module if not path.endswith("__init__.py") else f"{module}.__init__"):
            dep = _module_files(imported, roots, read)
            if dep and dep not in needed:
                todo.append((dep, imported, f"imported by {path}"))
    return needed


def undeclared_sources(stage: Stage, read: Reader) -> dict[str, str]:
    declared = [d.path for d in stage.deps]
    return {
        path: why
        for path, why in stage_sources(stage, read).items()
        if not any(under(path, d) for d in declared)
    }


def _only_docstring(source: str) -> bool:
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def serving_sources(entrypoint: str | None, read: Reader) -> dict[str, str]:
    """{source file: why} for the serving entrypoint (`FILE.py:CLASS` or `package.module:CLASS`)
    and every project module it imports, resolved the way the worker imports it (the release's
    root and its src/). Part of the release like a stage's code: a change there is a code change."""
    target = (entrypoint or "").partition(":")[0]
    if not target:
        return {}
    cmd = f"python {target}" if target.endswith(".py") else f"python -m {target}"
    found = stage_sources(Stage(name="serve", cmd=cmd, deps=(), outs=(), params={}), read)
    return {path: why.replace(f"run by `{cmd}`", f"the serving entrypoint {entrypoint}") for path, why in found.items()}
