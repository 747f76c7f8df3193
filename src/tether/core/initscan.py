"""`tether init`'s reading of a pipeline: which outputs look like models, and the `artifacts:`
entry that declares one. Pure: dvc.yaml and dvc.yaml's text in, proposals and text out.

A model is what a stage writes (or reads without any stage writing it: a model added with
`dvc add` or kept in git) whose name says so: a model file's suffix (.pkl, .onnx, .pt, …) or a
path segment starting with "model" or "checkpoint". A model file alone in a directory of its own
(`models/fraud-detector/model.skops`) proposes that directory: its threshold, metrics and schema
files live beside it and ship with it.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from tether.core import dvcgraph, yamledit
from tether.core.refs import MODEL_RE
from tether.errors import UsageError

MODEL_SUFFIXES = (".pkl", ".pickle", ".joblib", ".onnx", ".pt", ".pth", ".h5", ".keras", ".skops",
                  ".safetensors", ".ckpt", ".pb", ".cbm", ".bst", ".ubj", ".model", ".tflite", ".gguf")
MODEL_WORDS = ("model", "checkpoint")
# A directory named like these holds many things: a model file in it is proposed alone.
GENERIC_DIRS = ("", ".", "models", "model", "artifacts", "artifact", "out", "outputs", "output", "checkpoints")


@dataclass(frozen=True)
class Candidate:
    name: str  # the artifact name proposed (the tag grammar's)
    path: str  # the artifact path proposed
    found: str  # where it was found: "output of stage train", "read by stage evaluate"

    def as_dict(self) -> dict:
        return {"name": self.name, "path": self.path, "found": self.found}


def looks_like_model(path: str) -> bool:
    segments = [s.lower() for s in path.split("/")]
    return path.lower().endswith(MODEL_SUFFIXES) or any(s.startswith(MODEL_WORDS) for s in segments)


def artifact_path(path: str) -> str:
    """The path to declare for a model output: its own directory when it has one."""
    parent = posixpath.dirname(path)
    if path.lower().endswith(MODEL_SUFFIXES) and posixpath.basename(parent).lower() not in GENERIC_DIRS:
        return parent
    return path


def model_name(path: str) -> str:
    """A name the tag grammar carries, from the path's last part (without a file suffix)."""
    base = posixpath.basename(path)
    stem = base.rsplit(".", 1)[0] if "." in base[1:] else base
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-_") or "model"
    return name if MODEL_RE.fullmatch(name) else "model"


def _paths(items) -> list[str]:
    """The paths of a stage's `outs:` or `deps:` list (a string, or a one-key mapping with options)."""
    out = []
    for item in items or ():
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and len(item) == 1:
            out.append(str(next(iter(item))))
    return [dvcgraph.norm(p) for p in out]


def candidates(dvc_yaml: dict) -> list[Candidate]:
    """The model outputs of the pipeline not declared yet, outermost first, one per path."""
    raw = dvc_yaml.get("stages")
    stages: dict = raw if isinstance(raw, dict) else {}
    declared = [a.path for a in _declared(dvc_yaml)]
    outs = {p: name for name, spec in stages.items() if isinstance(spec, dict) for p in _paths(spec.get("outs"))}
    found: dict[str, str] = {}
    for p, stage in sorted(outs.items()):
        if looks_like_model(p) and p != "params.yaml":
            found.setdefault(artifact_path(p), f"output of stage {stage}")
    for name, spec in stages.items():
        for p in _paths(spec.get("deps") if isinstance(spec, dict) else ()):
            made = any(dvcgraph.under(p, o) or dvcgraph.under(o, p) for o in outs)
            if not made and p.lower().endswith(MODEL_SUFFIXES):  # added with `dvc add`, or kept in git
                found.setdefault(artifact_path(p), f"read by stage {name} (no stage writes it)")
    paths = [p for p in sorted(found) if not any(dvcgraph.under(p, d) or dvcgraph.under(d, p) for d in declared)]
    outer = [p for p in paths if not any(q != p and dvcgraph.under(p, q) for q in paths)]
    names: set[str] = set()
    result = []
    for p in outer:
        name = model_name(p)
        if name in names:
            name = model_name(posixpath.dirname(p) + "-" + name) if posixpath.dirname(p) else name
        names.add(name)
        result.append(Candidate(name, p, found[p]))
    return result


def _declared(dvc_yaml: dict) -> list[dvcgraph.Artifact]:
    try:
        return list(dvcgraph.models(dvc_yaml).values())
    except UsageError:
        return []


def declared(dvc_yaml: dict) -> dict[str, str]:
    """{name: path} of the models dvc.yaml declares already."""
    return {a.name: a.path for a in _declared(dvc_yaml)}


def add_artifacts(text: str, chosen: list[Candidate]) -> str:
    """dvc.yaml's text with an `artifacts:` entry for each chosen model, every other line as it
    was. UsageError if the file cannot be edited that way (nothing is written then)."""
    from tether.core.settings import load_yaml

    before = load_yaml(text) if text.strip() else {}
    new = text
    try:
        for c in chosen:
            new = yamledit.add_value(new, ["artifacts", c.name], {"path": c.path, "type": "model"})
    except (yamledit.EditUnsupported, KeyError, ValueError) as exc:
        raise UsageError(f"dvc.yaml cannot be edited safely ({exc}); nothing was written",
                         hint="declare the model by hand: artifacts: {NAME: {path: PATH, type: model}}") from None
    after = load_yaml(new)
    expected = dict(before or {})
    expected["artifacts"] = {**(expected.get("artifacts") or {}),
                             **{c.name: {"path": c.path, "type": "model"} for c in chosen}}
    if after != expected:
        raise UsageError("dvc.yaml cannot be edited safely (the edit would change more than the new "
                         "artifacts); nothing was written",
                         hint="declare the model by hand: artifacts: {NAME: {path: PATH, type: model}}")
    return new
