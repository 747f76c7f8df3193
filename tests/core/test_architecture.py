"""The layout's rules, read from the source (docs/architecture.md). import-linter (run by
`make test` before pytest) checks the layers and the pure core; these check what it does not:
no import cycle anywhere (top-level, lazy and TYPE_CHECKING imports all count), no module over
400 lines, no function over 60, empty package `__init__` files, and only `cli/` prints or exits."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "tether"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every tether module `name` imports, wherever the import statement stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tether":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "tether")
    return {m for m in found if m in MODULES and m != name and m != "tether"}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert _cycles(graph) == []


def test_no_module_over_the_limit() -> None:
    big = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert big == {}


def test_no_function_over_the_limit() -> None:
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert long == []


def test_packages_re_export_nothing() -> None:
    """An `__init__` that imports would load a whole layer on the fast read path and in the spare
    worker; only the CLI's entry point (`tether.cli:main`) and the version live in one."""
    allowed = {"tether", "tether.cli"}
    busy = [name for name, path in MODULES.items()
            if path.name == "__init__.py" and name not in allowed and path.read_text().strip()]
    assert busy == []


# The worker process's own entry point ends its process with os._exit (runtime/worker.py, and a
# worker forked by runtime/zygote.py must not run the zygote's teardown); everything else raises a TetherError.
EXITS_ALLOWED = {"tether.runtime.worker", "tether.runtime.zygote"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_only_the_cli_prints_or_exits(name: str) -> None:
    if name.startswith("tether.cli"):
        return
    calls = []
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            called = f.id if isinstance(f, ast.Name) else f"{getattr(f.value, 'id', '?')}.{f.attr}" if isinstance(f, ast.Attribute) else ""
            if called in ("print", "exit", "quit", "sys.exit") or (called == "os._exit" and name not in EXITS_ALLOWED):
                calls.append(f"{called} at line {node.lineno}")
        elif isinstance(node, ast.Raise) and isinstance(node.exc, (ast.Name, ast.Call)):
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "SystemExit":
                calls.append(f"raise SystemExit at line {node.lineno}")
    assert calls == []


ROOT = SRC.parents[1]


def test_every_module_the_architecture_page_names_exists() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`((?:[a-z_]+/)?[a-z0-9_]+\.py)", text)) - {"pyproject.py"}
    named = {n for n in named if not n.startswith("tests/")}
    assert len(named) > 60  # the page names every module, not a handful
    named = {n.removeprefix("tether/") for n in named}
    missing = sorted(n for n in named if not (SRC / n).is_file())
    assert missing == []
    unnamed = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                     if p.name not in ("__init__.py", "__main__.py") and str(p.relative_to(SRC)) not in named
                     and p.name not in named)
    assert unnamed == []


def test_every_source_and_test_path_the_docs_name_exists() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "ci" / "README.md"]
    missing = []
    for page in pages:
        for path in set(re.findall(r"\b((?:src/tether|tests|bench)/[\w/]+\.py)\b", page.read_text())):
            if not (ROOT / path).is_file():
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert missing == []
