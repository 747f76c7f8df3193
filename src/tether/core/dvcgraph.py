"""The model's slice of the DVC graph, read from dvc.yaml + dvc.lock. Pure: no I/O, no dvc import.

Starting at the model artifact's outputs we walk every upstream stage; what we find there
(outs under the artifact path, upstream data, source files, params) IS the model version.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tether.core import paths
from tether.errors import IntegrityError, NotFound, UsageError

CODE_SUFFIXES = (".py", ".pyx", ".r", ".R", ".jl", ".sh", ".sql", ".ipynb", ".toml", ".cfg")


@dataclass(frozen=True)
class FileEntry:
    path: str
    md5: str | None
    size: int | None
    stage: str
    is_dir: bool = False
    external: bool = False  # a URL, absolute or `..` dep: read by the stage, never written by tether


@dataclass(frozen=True)
class Stage:
    name: str
    cmd: str
    deps: tuple[FileEntry, ...]
    outs: tuple[FileEntry, ...]
    params: dict  # file -> {key: value}


@dataclass(frozen=True)
class Artifact:
    name: str
    path: str
    type: str
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelGraph:
    artifact: Artifact
    stages: tuple[Stage, ...]  # the closure, upstream first
    weights: tuple[FileEntry, ...]
    data: tuple[FileEntry, ...]
    code: tuple[str, ...]  # git-tracked source deps (files or directories)
    params: dict  # file -> merged {key: value} used by the closure
    producers: dict  # out path -> stage name, for the whole pipeline


def norm(path: str) -> str:
    """DVC's spelling of a path (`./a//b` is `a/b`); URLs, absolute and `..` paths keep what they
    name, so that they can be told apart and refused (see tether.paths)."""
    return paths.normalise(path)


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def artifacts(dvc_yaml: dict) -> dict[str, Artifact]:
    arts = {}
    for name, spec in (dvc_yaml.get("artifacts") or {}).items():
        if not isinstance(spec, dict) or "path" not in spec:
            raise UsageError(f"dvc.yaml: artifact '{name}' has no path")
        path = norm(spec["path"])
        arts[name] = Artifact(
            name=name,
            path=path,
            type=spec.get("type", "model"),
            meta=(spec.get("meta") or {}),
        )
    return arts


def models(dvc_yaml: dict) -> dict[str, Artifact]:
    return {n: a for n, a in artifacts(dvc_yaml).items() if a.type == "model"}


def _entry(raw: dict, stage: str) -> FileEntry:
    md5 = raw.get("md5") or raw.get("etag") or raw.get("checksum")
    path = norm(raw["path"])
    return FileEntry(
        path=path,
        md5=md5,
        size=raw.get("size"),
        stage=stage,
        is_dir=bool(isinstance(md5, str) and md5.endswith(".dir")),
        external=paths.problem(path) is not None,
    )


def lock_stages(dvc_lock: dict) -> dict[str, Stage]:
    stages = {}
    for name, raw in (dvc_lock.get("stages") or {}).items():
        stages[name] = Stage(
            name=name,
            cmd=" && ".join(raw["cmd"]) if isinstance(raw.get("cmd"), list) else str(raw.get("cmd", "")),
            deps=tuple(_entry(d, name) for d in raw.get("deps") or ()),
            outs=tuple(_entry(o, name) for o in raw.get("outs") or ()),
            params=raw.get("params") or {},
        )
    return stages


def model_graph(
    dvc_yaml: dict,
    dvc_lock: dict,
    model: str,
    params_files: frozenset[str] = frozenset({"params.yaml"}),
    config_dirs: tuple[str, ...] = ("conf",),
) -> ModelGraph:
    art = _model_artifact(dvc_yaml, model)
    stages = lock_stages(dvc_lock)
    producers = {o.path: s.name for s in stages.values() for o in s.outs}
    producer_of = _producer_finder(producers)
    roots = [s.name for s in stages.values() if any(under(o.path, art.path) for o in s.outs)]
    order = _closure_order(dvc_yaml, stages, producers, producer_of, roots, art.path)
    closure = tuple(stages[n] for n in order)
    eval_stages = set(order) - set(_upstream(stages, producer_of, producers, roots))
    # An output of a stage that produces the weights which no stage reads (model_params.json
    # beside data/model.pkl) ships with the model: it is part of the weights, not data.
    read_by_stages = [d.path for st in stages.values() for d in st.deps]
    beside = {o.path for n in roots for o in stages[n].outs
              if not under(o.path, art.path) and o.path not in params_files
              and not any(under(d, o.path) or under(o.path, d) for d in read_by_stages)}
    parts = _Parts()
    produced_weights = {o.path for st in closure for o in st.outs if under(o.path, art.path)}
    for st in closure:
        for f, values in st.params.items():
            parts.params.setdefault(norm(f), {}).update(values or {})
        parts.add_outs(st, art.path, beside, params_files, st.name in eval_stages)
        parts.add_deps(st, art.path, produced_weights, params_files, config_dirs, producer_of)
    return ModelGraph(
        artifact=art,
        stages=closure,
        weights=tuple(sorted(parts.weights, key=lambda e: e.path)),
        data=tuple(sorted(parts.data.values(), key=lambda e: e.path)),
        code=tuple(sorted(parts.code)),
        params=parts.params,
        producers=producers,
    )


def _model_artifact(dvc_yaml: dict, model: str) -> Artifact:
    """The model's artifact, refused unless it is a path inside the repository."""
    arts = models(dvc_yaml)
    if model not in arts:
        known = ", ".join(sorted(arts)) or "none"
        raise NotFound(
            f"unknown model '{model}' (models in dvc.yaml: {known})",
            hint="declare it under `artifacts:` in dvc.yaml with type: model",
        )
    art = arts[model]
    if paths.is_url(art.path):
        raise UsageError(f"dvc.yaml: model '{model}' is stored at {art.path}, outside the repository",
                         hint="tether releases models the repository tracks: a stage output, a `dvc add`ed "
                              "file or a file in git")
    why = paths.problem(art.path, f"dvc.yaml: model '{model}' path")
    if why:
        raise IntegrityError(why, hint="declare the model's path relative to the repository root")
    return art


def _producer_finder(producers: dict[str, str]) -> Callable[[str], str | None]:
    def producer_of(path: str) -> str | None:
        if path in producers:
            return producers[path]
        # A dep may name a file inside an output directory, or a directory holding outputs.
        for out, st in producers.items():
            if under(path, out):
                return st
        return None

    return producer_of


def _closure_order(dvc_yaml: dict, stages: dict[str, Stage], producers: dict[str, str],
                   producer_of: Callable[[str], str | None], roots: list[str], art_path: str) -> list[str]:
    """The model's stages, upstream first: those that produce the artifact and what they need,
    then the stages that evaluate it."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:  # depth-first, so upstream stages come first
        if name in seen:
            return
        seen.add(name)
        for dep in stages[name].deps:
            up = producer_of(dep.path)
            if up and up != name:
                visit(up)
            if not up:
                for out, st in producers.items():
                    if under(out, dep.path) and st != name:
                        visit(st)
        order.append(name)

    for r in sorted(roots):
        visit(r)
    # Stages that evaluate the model (read its weights, write metrics or plots) belong to the
    # tuple too: their code, data slice and params (often the threshold) decide whether it ships.
    weight_paths = [art_path] + [o.path for n in order for o in stages[n].outs if under(o.path, art_path)]
    evaluating = sorted(n for n, st in stages.items() if n not in seen and _reports(dvc_yaml, n, st)
                        and any(under(d.path, w) for d in st.deps for w in weight_paths))
    for n in evaluating:
        visit(n)
    return order


@dataclass
class _Parts:
    """What the closure's stages add up to, gathered stage by stage (upstream first)."""
    weights: list[FileEntry] = field(default_factory=list)
    data: dict[str, FileEntry] = field(default_factory=dict)
    code: set[str] = field(default_factory=set)
    params: dict = field(default_factory=dict)

    def add_outs(self, st: Stage, art_path: str, beside: set[str], params_files: frozenset[str],
                 evaluates: bool) -> None:
        for out in st.outs:
            if out.external:
                raise IntegrityError(paths.problem(out.path, f"dvc.lock: stage '{st.name}' output")
                                     or f"dvc.lock: stage '{st.name}' output {out.path} is outside the repository",
                                     hint="DVC outputs must be inside the repository")
            if under(out.path, art_path) or out.path in beside:
                self.weights.append(out)
            elif out.path in params_files or evaluates:
                continue  # an evaluation's report (metrics, plots) is read, not shipped
            else:
                self.data.setdefault(out.path, out)

    def add_deps(self, st: Stage, art_path: str, produced_weights: set[str], params_files: frozenset[str],
                 config_dirs: tuple[str, ...], producer_of: Callable[[str], str | None]) -> None:
        for dep in st.deps:
            if dep.path in params_files or any(under(dep.path, c) for c in config_dirs):
                continue
            if dep.external:
                self.data.setdefault(dep.path, dep)  # read where it is (a URL, a shared disk), never written
                continue
            if producer_of(dep.path):
                continue  # an upstream output, recorded where it is produced
            if under(dep.path, art_path):
                if dep.path not in produced_weights and all(w.path != dep.path for w in self.weights):
                    self.weights.append(dep)  # a model added with `dvc add` or kept in git, read by a stage
                continue
            if is_code_path(dep.path):
                self.code.add(dep.path)
            else:
                self.data.setdefault(dep.path, dep)


def param(params: dict, key: tuple[str, ...]) -> Any:
    """The value of a dotted param key (("evaluate", "threshold")) in the first params file of
    `ModelGraph.params` that holds it; None if none does."""
    for values in params.values():
        node = values
        for k in key:
            if not isinstance(node, dict) or k not in node:
                node = None
                break
            node = node[k]
        if node is not None:
            return node
    # dvc.lock stores dotted keys when a stage declares `evaluate.threshold` directly
    for values in params.values():
        if ".".join(key) in (values or {}):
            return values[".".join(key)]
    return None


def _upstream(stages: dict[str, Stage], producer_of: Callable[[str], str | None], producers: dict[str, str],
              roots: list[str]) -> list[str]:
    """The stages the artifact's producers need (without the evaluating ones)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for dep in stages[name].deps:
            up = producer_of(dep.path)
            if up and up != name:
                todo.append(up)
            elif not up:
                todo += [st for out, st in producers.items() if under(out, dep.path) and st != name]
    return list(seen)


def _reports(dvc_yaml: dict, name: str, stage: Stage) -> bool:
    """The stage writes metrics or plots: per stage in dvc.yaml, or one of its outputs is (or
    holds) a file of the top-level `metrics:`/`plots:` (where dvclive declares its files)."""
    spec = (dvc_yaml.get("stages") or {}).get(name) if isinstance(dvc_yaml.get("stages"), dict) else None
    if isinstance(spec, dict) and (spec.get("metrics") or spec.get("plots")):
        return True
    top = [m if isinstance(m, str) else next(iter(m), "") for key in ("metrics", "plots")
           for m in (dvc_yaml.get(key) or ()) if isinstance(m, (str, dict))]
    return any(under(norm(t), o.path) for t in top if isinstance(t, str) and t for o in stage.outs)


def is_code_path(path: str) -> bool:
    """Source files and source directories (a directory dep with no data suffix counts as code)."""
    base = posixpath.basename(path)
    if base.endswith(CODE_SUFFIXES):
        return True
    return "." not in base and (path.startswith("src") or "/" not in path and base in ("src", "lib", "scripts"))


_PY_MODULE = re.compile(r"^[A-Za-z_][\w.]*$")


def stage_entrypoints(cmd: str) -> list[tuple[str, str]]:
    """What a stage command runs: [("module", "pkg.mod") | ("script", "path.py")], plus the
    source roots given by PYTHONPATH=... prefixes."""
    found = []
    for part in re.split(r"&&|;|\|\|", cmd):
        try:
            words = shlex.split(part)
        except ValueError:
            continue
        i = 0
        while i < len(words) and "=" in words[i] and not words[i].startswith("-"):
            key, _, value = words[i].partition("=")
            if key == "PYTHONPATH":
                for root in value.split(":"):
                    found.append(("root", norm(root)))
            i += 1
        words = words[i:]
        if not words or not re.match(r"^(python[\d.]*|.*/python[\d.]*)$", words[0]):
            continue
        for j, w in enumerate(words[1:], start=1):
            if w == "-m" and j + 1 < len(words) and _PY_MODULE.match(words[j + 1]):
                found.append(("module", words[j + 1]))
                break
            if w.endswith(".py"):
                found.append(("script", norm(w)))
                break
            if not w.startswith("-"):
                break
    return found
