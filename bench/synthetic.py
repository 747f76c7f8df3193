"""Build registries at scale quickly: N release tags and M environment moves on a repository
whose every release commit is a real DVC project state, through `git fast-import`.

Each release commit carries the reference project (this repository's dvc.yaml, conf/, the
fraud_detector sources), a params.yaml and a dvc.lock whose md5s are what DVC would record for
that state: code and params by their bytes, `conf` as a `.dir` listing, stage outputs as a
function of their stage's inputs. The small outputs tether reads by md5 (threshold.json,
metrics.json, feature_schema.json, runtime.json, and the bundle's manifest.json) are real JSON
whose objects are written into the local DVC cache (`.dvc/cache/files/md5/ab/cdef…`); the large
ones (parquet, model.skops) exist only as md5s, as in a clone that never pulled them.

Between releases the project changes as a team's would: patches (threshold, code), minor
releases (hyperparameters, a new data window), majors (a new feature), release candidates
(experiments), and commits that are no release at all.

The tags are a mix, as in a real repository:
  * most release tags are `tether release`'s: annotated, the message holds the manifest tether
    attests, built by tether's own code (derive.derive_many on the commit, then what
    release.plan_release adds), so `tether list`/`check` find them complete and matching;
  * some `model@vX.Y.Z` tags were made by hand (`git tag -a -m …`, no manifest), some are
    lightweight, some are `gto register`'s (annotated, GTO's message);
  * every environment move is tether's (a commit whose tree is the release's tree, with
    tether's trailers) plus the GTO assignment tag tether writes with it (`model#env#N`);
  * a team also runs `gto assign … --stage dev` (GTO tags tether did not write), and there are
    unrelated tags (project milestones, data snapshots).

`years=0` (the default) makes every release in the same second (test_registry_scale checks
that order never comes from clocks); `years>0` spreads them over that many years and spreads
the promotions over the whole history, with some rollbacks.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import random
import re
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = "fraud-detector"
ISOLATED = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
PEOPLE = ["Bench <bench@example.com>", "Ana Ops <ana@example.com>", "Raj Ml <raj@example.com>",
          "Mei Data <mei@example.com>", "Tom Review <tom@example.com>"]
END = 1764000000  # the newest release (and, with years=0, every release)
STATIC = [".dvc/config", ".dvc/.gitignore", ".dvcignore", ".gitignore"]
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def versions(n: int) -> list[str]:
    """n distinct versions that stress SemVer order: 1.9.0 < 1.10.0, pre-releases, big numbers."""
    out = []
    major = 1
    while len(out) < n:
        for minor in range(0, 12):
            for patch in range(0, 9):
                out.append(f"{major}.{minor}.{patch}")
                if patch == 0 and minor % 3 == 0:
                    out.append(f"{major}.{minor}.{patch}-rc.1")
                    out.append(f"{major}.{minor}.{patch}-rc.10")
                    out.append(f"{major}.{minor}.{patch}-rc.2")
        major += 1
    return out[:n]


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def _jdump(data) -> bytes:
    """The reference project's write_json: sorted keys, indent 2, newline."""
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _dig(values: dict, dotted: str):
    node = values
    for k in dotted.split("."):
        node = node[k]
    return node


_SCALARS: dict = {}


def _scalar(v) -> str:
    key = (type(v), v)
    if key not in _SCALARS:
        _SCALARS[key] = yaml.dump(v, Dumper=_Dumper).removesuffix("\n...\n").rstrip("\n")
    return _SCALARS[key]


def _emit(obj, lines: list[str], pad: str = "", sort: bool = False) -> list[str]:
    """Block-style YAML, byte for byte what yaml.dump(default_flow_style=False) writes for
    mappings of scalars, mappings and lists of mappings (dvc.lock, params.yaml), 10x faster."""
    items = sorted(obj.items()) if sort else obj.items()
    for k, v in items:
        if isinstance(v, dict) and v:
            lines.append(f"{pad}{_scalar(k)}:")
            _emit(v, lines, pad + "  ", sort)
        elif isinstance(v, list) and v:
            lines.append(f"{pad}{_scalar(k)}:")
            for item in v:
                if isinstance(item, dict) and item:
                    sub = _emit(item, [], pad + "  ", sort)
                    lines.append(f"{pad}- {sub[0][len(pad) + 2:]}")
                    lines.extend(sub[1:])
                else:
                    lines.append(f"{pad}- {_scalar(item)}")
        else:
            lines.append(f"{pad}{_scalar(k)}: {_scalar(v)}")
    return lines


def _yaml(obj, sort: bool = False) -> bytes:
    return ("\n".join(_emit(obj, [], "", sort)) + "\n").encode()


def _path_of(item) -> str:
    return item if isinstance(item, str) else next(iter(item))


def _norm(p: str) -> str:
    return posixpath.normpath(p).lstrip("./")


# -- the project, as it evolves -------------------------------------------------------------------
@dataclass
class State:
    params: dict
    code: dict[str, bytes]  # src/... -> bytes
    conf: dict[str, str]  # conf/... -> text
    features: list[tuple[str, str]]  # (name, dtype): the feature schema's contract
    runtime: dict  # python + packages
    notes: int = 0  # a non-release file that changes in between releases
    code_rev: dict[str, int] = field(default_factory=dict)


class Reference:
    """The reference project's files, read once from this repository."""

    def __init__(self, root: Path = REPO_ROOT, dir_files: int = 0) -> None:
        self.dvc_yaml_text = (root / "dvc.yaml").read_text()
        self.dir_files = dir_files
        self.landing: dict[int, bytes] = {}  # data window -> the landing directory's .dir listing
        if dir_files:  # the raw slice lands as a directory of many files (`dvc add data/landing`)
            self.dvc_yaml_text = self.dvc_yaml_text.replace(
                "src/fraud_detector/snapshot.py\n", "src/fraud_detector/snapshot.py\n      - data/landing\n", 1)
            assert "data/landing" in self.dvc_yaml_text
        self.dvc_yaml = yaml.load(self.dvc_yaml_text, Loader=_Loader)
        self.params = yaml.load((root / "params.yaml").read_text(), Loader=_Loader)
        self.conf = {p.relative_to(root).as_posix(): p.read_text() for p in sorted((root / "conf").rglob("*.yaml"))}
        self.code = {p.relative_to(root).as_posix(): p.read_bytes()
                     for p in sorted((root / "src" / "fraud_detector").glob("*.py")) if p.name != "demo.py"}
        self.static = {rel: (root / rel).read_bytes() for rel in STATIC if (root / rel).is_file()}
        self.static[".dvc/.gitignore"] = b"/config.local\n/tmp\n/cache\n"
        if dir_files:
            self.static["data/.gitignore"] = b"/landing\n"
        self.stages = self.dvc_yaml.get("stages") or {}
        # DVC writes a .gitignore beside every cached output
        ignores: dict[str, list[str]] = {}
        for spec in self.stages.values():
            for o in list(spec.get("outs") or []) + list(spec.get("metrics") or []):
                p = _norm(_path_of(o))
                opts = o[p] if isinstance(o, dict) and isinstance(o.get(p), dict) else {}
                if opts.get("cache", True) is False:
                    continue
                d, _, name = p.rpartition("/")
                ignores.setdefault(f"{d}/.gitignore" if d else ".gitignore", []).append(f"/{name}")
        for path, names in ignores.items():
            if path != ".gitignore":
                self.static[path] = ("\n".join(names) + "\n").encode()

    def initial_state(self) -> State:
        return State(params=json.loads(json.dumps(self.params)), code=dict(self.code), conf=dict(self.conf),
                     features=[("amount", "float64"), ("hour", "int64"), ("merchant_category", "int64"),
                               ("distance_km", "float64"), ("card_age_days", "int64"), ("n_prev_24h", "int64")],
                     runtime={"python": "3.11.7", "packages": {"numpy": "2.4.6", "pandas": "3.1.1",
                              "pyarrow": "26.0.1", "scikit-learn": "1.9.1", "scipy": "1.17.1", "skops": "0.16.0"}})


def _set_conf(text: str, key: str, value) -> str:
    return re.sub(rf"(?m)^(\s*{re.escape(key)}:\s*)[^#\n]*?(\s*(#.*)?)$", lambda m: f"{m.group(1)}{value}{m.group(2)}",
                  text, count=1)


def evolve(state: State, version: str, rng: random.Random) -> str:
    """Change the project the way the release `version` would; returns the commit subject."""
    p = state.params
    major, minor, rest = version.split(".", 2)
    patch = rest.split("-")[0]
    if "-" in version:  # a release candidate: an experiment in the training code
        return _code_change(state, "src/fraud_detector/train.py", rng, "experiment")
    if minor == "0" and patch == "0" and major != "1":  # major: a new feature
        state.features.append((f"f{len(state.features)}", rng.choice(["float64", "int64"])))
        _code_change(state, "src/fraud_detector/data.py", rng, "feature")
        p["data"]["window"] += 1
        _sync_conf(state)
        return f"add feature {state.features[-1][0]}, data window {p['data']['window']}"
    if patch == "0":  # minor: hyperparameters, sometimes new data
        mp = p["model"]["params"]
        mp["n_estimators"] = max(20, mp["n_estimators"] + rng.choice([-20, -10, 10, 20, 40]))
        mp["max_depth"] = max(3, min(30, mp["max_depth"] + rng.choice([-2, -1, 1, 2])))
        what = f"n_estimators={mp['n_estimators']} max_depth={mp['max_depth']}"
        if rng.random() < 0.3:
            p["data"]["window"] += 1
            what += f", data window {p['data']['window']}"
        if rng.random() < 0.1:  # a dependency upgrade, recorded in runtime.json by the bundle stage
            pk = state.runtime["packages"]
            name = rng.choice(sorted(pk))
            parts = pk[name].split(".")
            pk[name] = ".".join(parts[:-1] + [str(int(parts[-1]) + 1)])
            what += f", {name} {pk[name]}"
        _sync_conf(state)
        return what
    if rng.random() < 0.5:  # patch: a new threshold
        e = p["evaluate"]
        e["threshold"] = round(min(0.9, max(0.05, e["threshold"] + rng.choice([-0.03, -0.02, -0.01, 0.01, 0.02, 0.03]))), 2)
        _sync_conf(state)
        return f"threshold {e['threshold']}"
    return _code_change(state, rng.choice(["src/fraud_detector/bundle.py", "src/fraud_detector/evaluate.py",
                                           "src/fraud_detector/preprocess.py"]), rng, "fix")


def _code_change(state: State, path: str, rng: random.Random, what: str) -> str:
    n = state.code_rev.get(path, 0) + 1
    state.code_rev[path] = n
    state.code[path] = state.code[path] + f"\n# {what} {n}: {rng.getrandbits(32):08x}\n".encode()
    return f"{posixpath.basename(path)}: {what} {n}"


def _sync_conf(state: State) -> None:
    """conf/ composes params.yaml (the compose stage): keep the two in agreement."""
    p, c = state.params, state.conf
    for rel, key, value in (("conf/model/random_forest.yaml", "n_estimators", p["model"]["params"]["n_estimators"]),
                            ("conf/model/random_forest.yaml", "max_depth", p["model"]["params"]["max_depth"]),
                            ("conf/evaluate/fixed.yaml", "threshold", p["evaluate"]["threshold"]),
                            ("conf/data/fraud_stream.yaml", "window", p["data"]["window"])):
        if rel in c:
            c[rel] = _set_conf(c[rel], key, value)


def _notes(n: int) -> bytes:
    return f"# Notes\n\nrevision {n}\n".encode()


# -- what DVC would record for a state ------------------------------------------------------------
def snapshot(ref: Reference, state: State) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """({path: bytes} of the commit's tree, {md5: bytes} of the small DVC objects it needs)."""
    tree: dict[str, bytes] = dict(ref.static)
    tree["dvc.yaml"] = ref.dvc_yaml_text.encode()
    tree["params.yaml"] = _yaml(state.params, sort=True)
    tree.update(state.code)
    tree.update({k: v.encode() for k, v in state.conf.items()})
    if state.notes:
        tree["NOTES.md"] = _notes(state.notes)
    known: dict[str, dict] = {}
    objects: dict[str, bytes] = {}
    contents: dict[str, bytes] = {}

    if ref.dir_files:
        window = state.params["data"]["window"]
        if window not in ref.landing:  # a new listing per data window, as a new landing would be
            listing = [{"md5": _md5(f"landing {window} {k}".encode()), "relpath": f"day={k // 100:03d}/part-{k:05d}.csv"}
                       for k in range(ref.dir_files)]
            ref.landing[window] = json.dumps(sorted(listing, key=lambda e: e["relpath"]), sort_keys=True).encode()
        body = ref.landing[window]
        md5 = _md5(body) + ".dir"
        objects[md5] = body
        known["data/landing"] = {"md5": md5, "size": 40_000 * ref.dir_files, "nfiles": ref.dir_files}
        tree["data/landing.dvc"] = _yaml({"outs": [{"md5": md5, "size": 40_000 * ref.dir_files,
                                                    "nfiles": ref.dir_files, "hash": "md5", "path": "landing"}]})

    def dep_entry(path: str) -> dict:
        if path in known:
            return known[path]
        if path in tree:
            return {"md5": _md5(tree[path]), "size": len(tree[path])}
        inside = sorted(k for k in tree if k.startswith(path + "/"))
        if inside:  # a directory dep: DVC's .dir listing
            listing = [{"md5": _md5(tree[k]), "relpath": k[len(path) + 1:]} for k in inside]
            return {"md5": _md5(json.dumps(listing, sort_keys=True).encode()) + ".dir",
                    "size": sum(len(tree[k]) for k in inside), "nfiles": len(inside)}
        return {"md5": _md5(b"external:" + path.encode()), "size": 1000}

    stages = {}
    for name, spec in ref.stages.items():
        deps = sorted({_norm(_path_of(d)) for d in spec.get("deps") or []})
        dep_rows = [{"path": d, "hash": "md5", **dep_entry(d)} for d in deps]
        params: dict = {}
        for item in spec.get("params") or []:
            if isinstance(item, dict):
                for fname, keys in item.items():
                    for k in keys or []:
                        params.setdefault(fname, {})[k] = _dig(state.params, k)
            else:
                params.setdefault("params.yaml", {})[item] = _dig(state.params, item)
        stage_key = _md5(json.dumps([spec.get("cmd"), [r["md5"] for r in dep_rows], params], sort_keys=True,
                                    default=str).encode())
        outs = sorted({_norm(_path_of(o)) for o in list(spec.get("outs") or []) + list(spec.get("metrics") or [])})
        rows = {}
        for o in sorted(outs, key=lambda x: x.endswith("manifest.json")):  # the bundle manifest lists the others
            if o in tree:
                entry = {"md5": _md5(tree[o]), "size": len(tree[o])}
            elif o.endswith(".json"):
                body = _json_output(o, state, stage_key, contents)
                contents[o] = body
                entry = {"md5": _md5(body), "size": len(body)}
                objects[entry["md5"]] = body
            else:
                h = int(stage_key[:8], 16) ^ int(_md5(o.encode())[:8], 16)
                entry = {"md5": _md5(f"{stage_key}:{o}".encode()), "size": 50_000 + h % 5_000_000}
            known[o] = entry
            rows[o] = {"path": o, "hash": "md5", **entry}
        row: dict = {"cmd": spec.get("cmd")}
        if dep_rows:
            row["deps"] = dep_rows
        if params:
            row["params"] = params
        row["outs"] = [rows[o] for o in outs]
        stages[name] = row
    tree["dvc.lock"] = _yaml({"schema": "2.0", "stages": stages})
    return tree, objects


def _json_output(path: str, state: State, key: str, contents: dict[str, bytes]) -> bytes:
    """The small JSON files the reference stages write, as a function of their inputs."""
    rng = random.Random(key)
    name = posixpath.basename(path)
    p = state.params
    if name == "threshold.json":
        return _jdump({"value": p["evaluate"]["threshold"], "source": "evaluate.threshold (fixed)"})
    if name == "metrics.json":
        prec, rec = round(rng.uniform(0.18, 0.45), 6), round(rng.uniform(0.4, 0.8), 6)
        n = int(p["data"]["rows"] * p["data"]["eval_fraction"])
        return _jdump({"roc_auc": round(rng.uniform(0.84, 0.95), 6), "precision": prec, "recall": rec,
                       "f1": round(2 * prec * rec / (prec + rec), 6), "threshold": p["evaluate"]["threshold"],
                       "n_eval": n, "positives": int(n * p["data"]["fraud_rate"]),
                       "predictions_sha256": hashlib.sha256(key.encode()).hexdigest()})
    if name == "feature_schema.json":
        return _jdump({"features": [{"name": f, "dtype": t, "min": 0.0, "max": round(rng.uniform(10, 2000), 2)}
                                    for f, t in state.features], "target": "is_fraud"})
    if name == "runtime.json":
        pk = state.runtime["packages"]
        lock = hashlib.sha256("\n".join(f"{k}=={v}" for k, v in sorted(pk.items())).encode()).hexdigest()
        return _jdump({**state.runtime, "lock_sha256": lock})
    if name == "manifest.json":
        d = posixpath.dirname(path)
        files = {}
        for f in ("model.skops", "threshold.json", "metrics.json", "feature_schema.json", "runtime.json"):
            body = contents.get(f"{d}/{f}")
            files[f] = {"sha256": hashlib.sha256(body if body is not None else f"{key}:{f}".encode()).hexdigest(),
                        "size": len(body) if body is not None else 500_000}
        return _jdump({"schema_version": 1, "model": MODEL, "files": files})
    return _jdump({"stage_inputs": key, "path": path})


# -- git ------------------------------------------------------------------------------------------
def _data(text: str | bytes) -> bytes:
    b = text.encode() if isinstance(text, str) else text
    return b"data %d\n" % len(b) + b + b"\n"


def _git(repo: Path, *args: str, input: bytes | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, input=input, capture_output=True, check=True,
                          env={**os.environ, **ISOLATED}).stdout.decode()


def _fast_import(repo: Path, stream: bytes, marks: Path | None = None) -> None:
    args = ["git", "fast-import", "--quiet"] + ([f"--export-marks={marks}"] if marks else [])
    subprocess.run(args, cwd=repo, input=stream, check=True, env={**os.environ, **ISOLATED})


def _who(person: str, when: int) -> bytes:
    return f"{person} {when} +0000".encode()


def attested_manifest(derived: dict, version: str, created_at: str, released_by: str,
                      contents: dict[str, bytes]) -> dict:
    """What `tether release` writes into the tag (release.plan_release, step by step): the
    derived manifest merged with the release's own facts, the sha256 of each DVC-tracked file
    (here: of the bytes we generated, or a stand-in for the large files we never made), the
    runtime component, and the version."""
    from tether.commands import release_facts
    from tether.registry import derive

    manifest = derive.merge(derived, None, {"created_at": created_at, "released_by": released_by})
    manifest.pop("derived", None)
    for e in manifest["components"]["weights"] + manifest["components"]["data"]:
        md5 = e.get("md5")
        if md5 and not e.get("external") and not e.get("git_id"):
            body = contents.get(md5)
            e["sha256"] = hashlib.sha256(body if body is not None else md5.encode()).hexdigest()
        else:
            e["sha256"] = None
    manifest["runtime"] = release_facts.runtime_component(manifest.get("runtime") or {})
    manifest["version"] = version
    return manifest


def _derive_chunk(repo: Path, cache: Path, wanted: list[tuple[str, str]]) -> dict:
    from tether.registry import derive
    from tether.adapters.gitrepo import Git

    return derive.derive_many(Git(repo), wanted, derive.cache_reader(cache), use_cache=False)


def _derive_all(repo: Path, cache: Path, wanted: list[tuple[str, str]]) -> dict:
    """tether's derivation of every release commit, on every core (use_cache=False: the
    repository is handed over with no .git/tether caches)."""
    workers = min(os.cpu_count() or 1, 4)
    if workers < 2 or len(wanted) < 400:
        return _derive_chunk(repo, cache, wanted)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunks = [wanted[k::workers] for k in range(workers)]
    out: dict = {}
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for part in pool.map(_derive_chunk, [repo] * workers, [cache] * workers, chunks):
            out.update(part)
    return out


def build_registry_repo(path: Path, releases: int = 1000, promotions: int = 300, years: float = 0.0,
                        seed: int = 7, dir_files: int = 0) -> Path:
    """A repository with `releases` release tags of MODEL and `promotions` environment moves.
    years=0: everything in one second and the moves walk the oldest stable releases in order
    (staging, then production); years>0: a history spread over that many years, the moves
    spread over it too, and now and then a rollback."""
    from tether.core import gto
    from tether.core import manifest as mf

    repo = Path(path)
    repo.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "-q", "-b", "main")
    rng = random.Random(seed)
    ref = Reference(dir_files=dir_files)
    state = ref.initial_state()
    vers = versions(releases)
    span = years * 365 * 86400
    rel_time = [int(END - span + span * (i + 1) / max(1, releases)) if span else END for i in range(releases)]

    # which moves go where (decided first: a promoted release is never a lightweight tag)
    stable = [i for i, v in enumerate(vers) if "-" not in v]
    moves: list[tuple[int, str, int, str]] = []  # (time, env, release index, action)
    if span:
        pairs = max(1, promotions // 2)
        chosen = sorted({stable[min(len(stable) - 1, (j * len(stable)) // pairs)] for j in range(pairs)})
        prod_hist: list[int] = []
        for i in chosen:
            t = rel_time[i]
            if len(moves) < promotions:
                moves.append((t + 2 * 3600, "staging", i, "promote"))
            if len(moves) < promotions:
                moves.append((t + 26 * 3600, "production", i, "promote"))
                if prod_hist and rng.random() < 0.08 and len(moves) < promotions:  # a bad one, rolled back
                    moves.append((t + 50 * 3600, "production", prod_hist[-1], "rollback"))
                else:
                    prod_hist.append(i)
    else:
        for k in range(promotions):
            moves.append((END, "staging" if k % 2 == 0 else "production", stable[(k // 2) % len(stable)], "promote"))
    moved = {i for _, _, i, _ in moves}
    dev = [i for i in stable[::20] if i not in moved]
    dev = dev[:: max(1, len(dev) // max(1, releases // 100))]
    if stable and stable[-1] not in moved and stable[-1] not in dev:
        dev.append(stable[-1])  # dev runs the newest
    kinds = []
    for i in range(releases):
        r = rng.random()
        if i in moved or i in dev:
            kinds.append("tether" if r < 0.9 else "gto" if r < 0.95 else "annotated")
        else:
            kinds.append("tether" if r < 0.85 else "gto" if r < 0.9 else "annotated" if r < 0.95 else "lightweight")

    # 1. the commits of main: a release commit per version, and commits in between
    cache = repo / ".dvc" / "cache" / "files" / "md5"
    blob_marks: dict[bytes, int] = {}
    contents: dict[str, bytes] = {}  # md5 -> bytes of every small DVC object
    out = bytearray()
    next_mark = 1
    prev: dict[str, bytes] = {}
    head = None
    release_marks: list[int] = []
    subjects: list[str] = []
    for i, v in enumerate(vers):
        t = rel_time[i]
        extra = rng.choice([0, 0, 1, 1, 2]) if i else 0
        for j in range(extra):  # commits that are no release (NOTES.md is no pipeline input)
            state.notes += 1
            tree = {**prev, "NOTES.md": _notes(state.notes)}
            when = t - 3600 * (extra - j) if span else t
            head, next_mark = _emit_commit(out, tree, prev, head, next_mark, blob_marks, when,
                                           rng.choice(PEOPLE), f"notes: revision {state.notes}")
            prev = tree
        subject = evolve(state, v, rng) if i else "reference pipeline"
        tree, objs = snapshot(ref, state)
        for md5, body in objs.items():
            contents[md5] = body
        head, next_mark = _emit_commit(out, tree, prev, head, next_mark, blob_marks, t, rng.choice(PEOPLE), subject)
        prev = tree
        release_marks.append(head)
        subjects.append(subject)
    marks_file = repo / ".git" / "bench-marks"
    _fast_import(repo, bytes(out), marks_file)
    marks = dict(line.split() for line in marks_file.read_text().splitlines())
    marks_file.unlink()
    commits = [marks[f":{m}"] for m in release_marks]
    trees = dict(line.split() for line in _git(repo, "log", "--format=%H %T", "main").splitlines())

    # the small DVC objects, in the local cache as `dvc repro` / `dvc pull` leaves them
    for md5, body in contents.items():
        p = cache / md5[:2] / md5[2:]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body)
        p.chmod(0o444)

    # 2. the release tags, tether's made with tether's own derivation
    wanted = [(commits[i], MODEL) for i in range(releases) if kinds[i] == "tether"]
    derived = _derive_all(repo, cache, wanted)
    out = bytearray()
    for i, v in enumerate(vers):
        tag, kind, t = f"{MODEL}@v{v}", kinds[i], rel_time[i]
        person = PEOPLE[(i * 7) % len(PEOPLE)]
        if kind == "lightweight":
            out += f"reset refs/tags/{tag}\nfrom {commits[i]}\n\n".encode()
            continue
        if kind == "tether":
            d = derived[(commits[i], MODEL)]
            if not d.complete:
                raise RuntimeError(f"synthetic release {tag} does not derive completely: {d.problems} {d.missing_parts}")
            m = attested_manifest(d.manifest, v, _iso(t + 0.123456), person, contents)
            message = mf.tag_message(m, f"Release {tag}" if rng.random() < 0.7 else subjects[i])
        elif kind == "gto":
            message = gto.registration_message(MODEL, f"v{v}") + "\n"
        else:
            message = f"{subjects[i]}\n\ntagged by hand after review\n"
        out += f"tag {tag}\nfrom {commits[i]}\n".encode() + b"tagger " + _who(person, t) + b"\n" + _data(message)
    _fast_import(repo, bytes(out))
    tag_objs = dict(line.split() for line in _git(
        repo, "for-each-ref", "--format=%(refname:strip=2) %(objectname)", "refs/tags").splitlines())

    # 3. environment moves (tether's commits + the GTO tags tether writes), GTO tags made by
    #    the team, and tags that are no release
    events = list(moves)
    for i in dev:
        events.append((rel_time[i] + 1800 if span else END, "dev", i, "gto"))
    events.sort(key=lambda e: e[0])
    out = bytearray()
    live = {"staging": "none", "production": "none"}
    heads: dict[str, int | None] = {"staging": None, "production": None}
    gto_n, gto_time = 0, 0
    for k, (t, env, i, action) in enumerate(events):
        tag = f"{MODEL}@v{vers[i]}"
        gto_n += 1
        gto_time = max(gto_time + 1, t if span else END + 1)
        gname = f"{MODEL}#{env}#{gto_n}"
        approver = PEOPLE[(k * 3) % len(PEOPLE)]
        out += f"tag {gname}\nfrom {commits[i]}\n".encode() + b"tagger " + _who(approver, gto_time) + b"\n"
        out += _data(gto.assignment_message(MODEL, f"v{vers[i]}", env) + "\n")
        if action == "gto":
            continue
        reason = f"round {k}" if not span else ("alert: false positives up" if action == "rollback" else
                                                  f"{'canary' if env == 'staging' else 'staging'} looks good")
        when = (f"2026-11-24T11:00:{k // 1000000:02d}.{k % 1000000:06d}Z" if not span else _iso(t + 0.25))
        trailers = (f"Tether-Action: {action}\nTether-Release: {tag}\nTether-Tag-Object: {tag_objs[tag]}\n"
                    f"Tether-Previous: {live[env]}\nTether-Approver: {approver.split(' <')[0].lower()}\n"
                    f"Tether-Reason: {reason}\nTether-Gto-Tag: {gname}\nTether-Time: {when}\n")
        verb = "promote" if action == "promote" else "roll back"
        mark = 10_000_000 + k
        out += f"commit refs/heads/{env}\nmark :{mark}\n".encode() + b"committer " + _who(approver, t) + b"\n"
        out += _data(f"{verb} {env} to {tag}\n\n{reason}\n\n{trailers}")
        out += (f"from :{heads[env]}\nmerge {commits[i]}\n" if heads[env] else f"from {commits[i]}\n").encode()
        out += f"M 040000 {trees[commits[i]]} \"\"\n\n".encode()
        heads[env] = mark
        live[env] = tag
    for j, i in enumerate(range(0, releases, 250)):  # milestones and data snapshots: no releases
        t = rel_time[i]
        out += f"tag project-v{j + 1}.0\nfrom {commits[i]}\n".encode() + b"tagger " + _who(PEOPLE[0], t) + b"\n"
        out += _data(f"Project milestone {j + 1}\n")
        out += f"reset refs/tags/data-snapshot-{j + 1:03d}\nfrom {commits[i]}\n\n".encode()
    _fast_import(repo, bytes(out))
    _git(repo, "pack-refs", "--all")  # as a clone has them: packed refs, one pack
    _git(repo, "repack", "-adq")
    _git(repo, "reset", "-q", "--hard", "main")
    return repo


def _emit_commit(out: bytearray, tree: dict[str, bytes], prev: dict[str, bytes], head: int | None, mark: int,
                 blob_marks: dict[bytes, int], when: int, person: str, subject: str) -> tuple[int, int]:
    """Append one commit of main (only what changed since `prev`); returns (its mark, next mark)."""
    changed = [p for p, b in tree.items() if prev.get(p) != b]
    for p in changed:
        b = tree[p]
        if b not in blob_marks:
            blob_marks[b] = mark
            out += f"blob\nmark :{mark}\n".encode() + _data(b)
            mark += 1
    commit = mark
    out += f"commit refs/heads/main\nmark :{commit}\n".encode()
    out += b"author " + _who(person, when) + b"\ncommitter " + _who(person, when) + b"\n" + _data(subject)
    if head is not None:
        out += f"from :{head}\n".encode()
    for p in prev:
        if p not in tree:
            out += f"D {p}\n".encode()
    for p in changed:
        out += f"M 100644 :{blob_marks[tree[p]]} {p}\n".encode()
    out += b"\n"
    return commit, mark + 1


def repo_stats(repo: Path) -> dict:
    """Sizes that feed the manifest-size question: the tag messages that hold a manifest (as
    text, and as git stores them, compressed in the pack), and tether's caches under .git."""
    out = _git(repo, "for-each-ref", "--format=%(objecttype)%00%(objectsize:disk)%00%(contents)%00", "refs/tags")
    fields = out.split("\0")
    manifests, disk, others = [], [], 0
    for k in range(0, len(fields) - 2, 3):  # records end "%00\n": three fields each
        otype, size, msg = fields[k].lstrip("\n"), fields[k + 1], fields[k + 2]
        if otype != "tag":
            continue
        if "\n{" in msg:
            manifests.append(len(msg.encode()))
            disk.append(int(size))
        else:
            others += 1
    cache = repo / ".git" / "tether"
    files = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    derived = [p for p in files if p.parent.name == "derived"]
    return {
        "manifest_tags": len(manifests),
        "manifest_avg_bytes": sum(manifests) / len(manifests) if manifests else 0,
        "manifest_max_bytes": max(manifests, default=0),
        "manifest_total_bytes": sum(manifests),
        "manifest_avg_disk_bytes": sum(disk) / len(disk) if disk else 0,
        "other_annotated_tags": others,
        "cache_bytes": sum(p.stat().st_size for p in files),
        "cache_files": len(files),
        "derived_bytes": sum(p.stat().st_size for p in derived),
        "derived_files": len(derived),
        "summary_bytes": sum(p.stat().st_size for p in files if p.name == "summary.json"),
        "git_dir_bytes": sum(p.stat().st_size for p in (repo / ".git").rglob("*") if p.is_file()),
        "dvc_cache_files": sum(1 for p in (repo / ".dvc" / "cache").rglob("*") if p.is_file()),
    }


if __name__ == "__main__":
    import sys
    import time

    t = time.perf_counter()
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    build_registry_repo(Path(sys.argv[1]), releases=n, promotions=int(sys.argv[3]) if len(sys.argv) > 3 else 300,
                        years=float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
    print(f"built in {time.perf_counter() - t:.1f} s")
