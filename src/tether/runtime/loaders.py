"""How a release's model is loaded and called, inside its worker process.

The model declares it in the release's own `dvc.yaml`:

    artifacts:
      my-model:
        path: model.pkl
        meta:
          tether:
            serve:
              entrypoint: src/serve.py:Model   # FILE.py:CLASS or package.module:CLASS, in the release
              batch_size: 64                   # optional: at most this many records per predict call
              max_records: 1000                # optional: records per request (default 1000)
              schema: models/schema.json       # optional: the input schema (tether.runtime.schema)

`Model(bundle_dir: pathlib.Path)` loads; `Model.predict(records: list[dict]) -> list[dict]`
predicts, one dict per record. A class attribute `input_schema` (a dict in the feature-schema
shape) declares the input when no schema file does. The class is imported from the release's
own tree (its root and its `src/` first on sys.path), so rolling the release back rolls back
the code that runs.

Without an entrypoint there are two built-in loaders: the verifying skops loader (a bundle
directory with `manifest.json` and `model.skops`) and ONNX (`*.onnx`, or `model.onnx` in the
artifact directory; needs the `onnx` extra). A pickle is never loaded by tether itself:
unpickling runs whatever code the file names, so only the project's own entrypoint, whose code
is part of the verified release, may choose to do it.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.core import paths
from tether.runtime.bundle import read_json
from tether.errors import IntegrityError, NotFound, UsageError
from tether.extras import require

DEFAULT_MAX_RECORDS = 1000


@dataclass(frozen=True)
class ServeConfig:
    entrypoint: str | None = None
    batch_size: int | None = None
    max_records: int = DEFAULT_MAX_RECORDS
    schema: str | None = None

    @classmethod
    def from_meta(cls, raw) -> "ServeConfig":
        if raw is not None and not isinstance(raw, dict):
            raise UsageError("meta.tether.serve must be a mapping")
        raw = dict(raw or {})
        kw: dict[str, Any] = {}
        if raw.get("entrypoint") is not None:
            kw["entrypoint"] = str(raw.pop("entrypoint"))
        for key in ("batch_size", "max_records"):
            if raw.get(key) is not None:
                value = raw.pop(key)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise UsageError(f"meta.tether.serve.{key} must be a positive whole number, not {value!r}")
                kw[key] = value
        if raw.get("schema") is not None:
            kw["schema"] = str(raw.pop("schema"))
        for key in ("entrypoint", "batch_size", "max_records", "schema"):
            raw.pop(key, None)  # given as null: the default
        if raw:
            key = sorted(raw)[0]
            raise UsageError(f"unknown setting meta.tether.serve.{key} in dvc.yaml",
                             hint="known: entrypoint, batch_size, max_records, schema")
        return cls(**kw)


def release_settings(root: Path, model: str) -> dict:
    """`artifacts.<model>.meta.tether` of the release's own dvc.yaml."""
    import yaml

    try:
        doc = yaml.safe_load((root / "dvc.yaml").read_text()) or {}
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"cannot read the release's dvc.yaml: {exc}") from None
    art = ((doc.get("artifacts") or {}).get(model) or {}) if isinstance(doc, dict) else {}
    meta = (art.get("meta") or {}) if isinstance(art, dict) else {}
    return dict(meta.get("tether") or {}) if isinstance(meta, dict) else {}


class Served:
    """What a worker calls. `schema` (feature-schema shape) or None: records pass as they are."""

    loader = "?"
    schema: dict | None = None

    def predict(self, records: list[dict]) -> list[dict]:  # pragma: no cover - interface
        raise NotImplementedError


class SkopsServed(Served):
    loader = "skops"

    def __init__(self, bundle) -> None:
        self.bundle = bundle
        self.schema = bundle.feature_schema

    def predict(self, records):
        scores, decisions = self.bundle.predict(self.bundle.validate(records))
        return [{"score": float(s), "decision": bool(d)} for s, d in zip(scores, decisions)]


class OnnxServed(Served):
    """A classifier in ONNX (e.g. a scikit-learn pipeline converted with skl2onnx): one 2-D
    input in schema order, or one input per feature; the score is the positive class's
    probability, the decision `score >= threshold`."""

    loader = "onnx"

    def __init__(self, model_file: Path, schema: dict | None, threshold: float | None) -> None:
        require("onnx", f"the ONNX loader ({model_file.name} is an ONNX model)")
        import numpy as np
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise IntegrityError(f"{model_file} is not a loadable ONNX model: {exc}") from None
        self.inputs = self.session.get_inputs()
        dtypes = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
                  "tensor(int32)": np.int32, "tensor(string)": object}
        self.dtypes = [dtypes.get(i.type, np.float32) for i in self.inputs]
        if schema is None:
            if len(self.inputs) == 1:
                raise UsageError(f"{model_file.name} takes one matrix input: tether needs the column order",
                                 hint="ship feature_schema.json beside it or set meta.tether.serve.schema")
            schema = {"features": [{"name": i.name, "dtype": "string" if d is object else np.dtype(d).name}
                                   for i, d in zip(self.inputs, self.dtypes)]}
        self.schema = schema
        self.names = [f["name"] for f in schema["features"]]
        outs = self.session.get_outputs()
        probs = [o for o in outs if "prob" in o.name.lower()] or outs[-1:]
        self.output = probs[0].name
        self.threshold = 0.5 if threshold is None else float(threshold)

    def predict(self, records):
        import numpy as np

        if len(self.inputs) == 1:
            feed = {self.inputs[0].name: np.array([[r[n] for n in self.names] for r in records],
                                                  dtype=self.dtypes[0])}
        else:
            feed = {i.name: np.array([[r[i.name]] for r in records], dtype=d) for i, d in zip(self.inputs, self.dtypes)}
        (probs,) = self.session.run([self.output], feed)
        if isinstance(probs, list):  # ZipMap: a list of {label: probability}
            keys = sorted(probs[0]) if probs else []
            scores = [float(p[keys[-1]]) for p in probs]
        else:
            arr = np.asarray(probs, dtype="f8")
            scores = (arr[:, -1] if arr.ndim == 2 else arr).tolist()
        return [{"score": float(s), "decision": bool(s >= self.threshold)} for s in scores]


class EntrypointServed(Served):
    loader = "entrypoint"

    def __init__(self, instance, spec: str, schema: dict | None, batch_size: int | None) -> None:
        self.instance = instance
        self.spec = spec
        self.schema = schema
        self.batch_size = batch_size

    def predict(self, records):
        out: list = []
        step = self.batch_size or len(records) or 1
        for i in range(0, len(records), step):
            chunk = records[i:i + step]
            got = self.instance.predict(chunk)
            if not isinstance(got, (list, tuple)) or len(got) != len(chunk):
                raise TypeError(f"{self.spec}.predict returned {type(got).__name__} of "
                                f"{len(got) if hasattr(got, '__len__') else '?'} item(s) for {len(chunk)} record(s); "
                                "it must return one dict per record")
            for item in got:
                if not isinstance(item, dict):
                    raise TypeError(f"{self.spec}.predict returned a {type(item).__name__}, not a dict, for a record")
            out.extend(got)
        return out


def _confined(root: Path, rel: str, what: str) -> Path:
    why = paths.problem(rel, what)
    if why:
        raise IntegrityError(why)
    p = root / rel
    real, real_root = os.path.realpath(p), os.path.realpath(root)
    if not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise IntegrityError(f"{what} {rel!r} leads outside the release")
    return p


def import_entrypoint(root: Path, spec: str):
    """The class `spec` names (`path/to/file.py:Class` or `package.module:Class`), imported from
    the release at `root`; a module that resolves outside the release is refused."""
    target, _, attr = spec.partition(":")
    if not target or not attr:
        raise UsageError(f"meta.tether.serve.entrypoint {spec!r} must be FILE.py:CLASS or package.module:CLASS")
    for p in (root, root / "src"):
        if p.is_dir() and str(p) not in sys.path:
            sys.path.insert(0, str(p))
    real_root = os.path.realpath(root).rstrip(os.sep) + os.sep
    try:
        if target.endswith(".py"):
            path = _confined(root, target, "serve entrypoint")
            if not path.is_file():
                raise NotFound(f"the serve entrypoint {target} is not in the release")
            parts = list(Path(target).with_suffix("").parts)
            if parts[0] == "src" and len(parts) > 1:
                parts = parts[1:]
            name = ".".join(parts)
            mspec = importlib.util.spec_from_file_location(name, path)
            if mspec is None or mspec.loader is None:
                raise UsageError(f"the serve entrypoint {target} is not a Python module")
            module = importlib.util.module_from_spec(mspec)
            sys.modules[name] = module
            mspec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except (UsageError, NotFound, IntegrityError):
        raise
    except Exception as exc:
        raise UsageError(f"cannot import the serve entrypoint {spec}: {type(exc).__name__}: {exc}") from None
    where = os.path.realpath(getattr(module, "__file__", "") or "")
    if not where.startswith(real_root):
        raise IntegrityError(f"the serve entrypoint {spec} resolves to {where or 'a built-in module'}, outside the release",
                             hint="an entrypoint must be code in the release's own tree")
    cls = getattr(module, attr, None)
    if cls is None:
        raise NotFound(f"{target} has no {attr}")
    return cls


def load(root: Path, manifest: dict, bundle: Path, settings: dict) -> Served:
    """The release's model, by its entrypoint, else by a built-in loader for its format."""
    config = ServeConfig.from_meta(settings.get("serve"))
    schema = None
    if config.schema:
        schema = read_json(_confined(root, config.schema, "meta.tether.serve.schema"))
    threshold = (manifest.get("components", {}).get("threshold") or {}).get("value")
    if config.entrypoint:
        cls = import_entrypoint(root, config.entrypoint)
        try:
            instance = cls(bundle)
        except Exception as exc:
            raise UsageError(f"{config.entrypoint}({bundle.name}) failed: {type(exc).__name__}: {exc}") from None
        if not callable(getattr(instance, "predict", None)):
            raise UsageError(f"{config.entrypoint} has no predict(records) method")
        if schema is None:
            schema = getattr(instance, "input_schema", None)
        if schema is None and bundle.is_dir() and (bundle / "feature_schema.json").is_file():
            schema = read_json(bundle / "feature_schema.json")
        return EntrypointServed(instance, config.entrypoint, schema, config.batch_size)
    from tether.runtime.bundle import is_bundle, load_bundle

    if is_bundle(bundle) and (bundle / "model.skops").is_file():
        require("sklearn", f"the skops loader ({manifest.get('model')}'s weights are a skops bundle)")
        return SkopsServed(load_bundle(bundle))
    onnx = bundle if bundle.suffix == ".onnx" and bundle.is_file() else bundle / "model.onnx"
    if onnx.is_file():
        if schema is None and bundle.is_dir() and (bundle / "feature_schema.json").is_file():
            schema = read_json(bundle / "feature_schema.json")
        if bundle.is_dir() and (bundle / "threshold.json").is_file():
            threshold = read_json(bundle / "threshold.json").get("value", threshold)
        return OnnxServed(onnx, schema, threshold)
    if bundle.suffix in (".pkl", ".pickle", ".joblib") or (bundle.is_dir() and any(
            p.suffix in (".pkl", ".pickle", ".joblib") for p in bundle.iterdir())):
        raise UsageError(f"{manifest.get('model')}'s weights are a pickle, which tether never loads itself: "
                         "unpickling runs whatever code the file names",
                         hint="declare meta.tether.serve.entrypoint in dvc.yaml: your own class in the release "
                              "(e.g. src/serve.py:Model) that loads it and predicts")
    raise UsageError(f"tether has no loader for {bundle.name}",
                     hint="declare meta.tether.serve.entrypoint in dvc.yaml (docs/serving.md)")


def finite_json(obj) -> bool:
    """True when `obj` can go out as strict JSON (no NaN or infinity)."""
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(finite_json(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(finite_json(v) for v in obj)
    return True
