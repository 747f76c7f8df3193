"""The workspace a command works on: repository root, git adapter, dvc.yaml and settings.

Passed in explicitly; there is no module-level state. Settings live with the model in
dvc.yaml (`artifacts.<model>.meta.tether`), so a repository needs no extra config file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from tether.errors import NotFound, UsageError
from tether.adapters.gitrepo import Git
from tether.core.refs import check_env

if TYPE_CHECKING:
    from tether.core import dvcgraph
    from tether.core.guard import GuardPolicy
    from tether.adapters.refindex import RefIndex

# yaml, dvcgraph and guard are imported where they are used: a read command answered from
# tether.refindex needs none of them, and they are a third of its start-up.


def load_yaml(text: str) -> dict:
    import yaml

    # the C loader is ~10x faster on large dvc.lock files
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}


def _default_guard() -> GuardPolicy:
    from tether.core.guard import GuardPolicy

    return GuardPolicy()


@dataclass(frozen=True)
class Settings:
    """A model's settings, `artifacts.<model>.meta.tether` in dvc.yaml. Typed and validated
    where they enter (`from_meta`): an unknown key or a wrong type is a usage error (exit 2)
    naming the key. (A dataclass checked by hand, not pydantic: read commands load settings,
    and importing pydantic would double their start-up.)"""

    environments: tuple[str, ...] = ("staging", "production")
    # production only takes a release that was in the first environment before it
    require_staging: bool = True
    tolerance: float = 0.05
    lower_is_better: tuple[str, ...] = ("loss", "log_loss", "brier", "mae", "mse", "rmse")
    gate_metrics: tuple[str, ...] = ()  # empty: every numeric metric both releases have
    keep: int = 3
    smoke: bool = True  # the promote gate; off only for models the verifying loader cannot run
    branch_template: str | None = None  # e.g. "{model}/{env}"
    threshold_file: str = "threshold.json"
    feature_schema_file: str = "feature_schema.json"
    runtime_file: str = "runtime.json"
    metrics_file: str = "metrics.json"
    bundle_manifest_file: str = "manifest.json"
    threshold: str | None = None  # FILE:KEY, e.g. params.yaml:evaluate.threshold
    gto: bool = True  # write GTO assignment tags on every move
    eval_data: str | None = None  # the frozen eval slice the smoke test predicts
    serve: dict = field(default_factory=dict)  # how the model is served (entrypoint, …)
    canaries: dict = field(default_factory=dict)  # canary environment -> the stable one it guards
    guard: GuardPolicy = field(default_factory=_default_guard)  # `tether guard`'s steps and thresholds
    signing: dict = field(default_factory=dict)  # who may release and move environments (signpolicy)

    @classmethod
    def from_meta(cls, meta: dict) -> "Settings":
        raw = (meta or {}).get("tether") if isinstance(meta, dict) else None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise _bad("meta.tether", "a mapping of settings", raw)
        kwargs: dict = {}
        for key, value in raw.items():
            kind = _KINDS.get(key)
            if kind is None:
                close = [k for k in _KINDS if _near(str(key), k)]
                raise UsageError(f"unknown setting meta.tether.{key} in dvc.yaml",
                                 hint=(f"did you mean {close[0]}? " if close else "")
                                 + "known settings: " + ", ".join(sorted(_KINDS)))
            if kind == "policy":
                from tether.core.guard import parse_policy

                kwargs[key] = parse_policy(value)
            else:
                kwargs[key] = _coerce(key, kind, value)
        s = cls(**kwargs)
        for env in s.environments:
            check_env(env)
        _check_canaries(s)
        if not 0 <= s.tolerance < 1:
            raise _bad("tolerance", "a fraction between 0 and 1, e.g. 0.05 for 5%", s.tolerance)
        if s.keep < 0:
            raise _bad("keep", "a whole number of releases, 0 or more", s.keep)
        from tether.core.signpolicy import parse as parse_signing

        parse_signing(s.signing)  # a malformed policy is a usage error when settings load
        return s


_KINDS = {"environments": "names", "require_staging": "bool", "tolerance": "number", "lower_is_better": "names",
          "gate_metrics": "names", "keep": "int", "smoke": "bool", "branch_template": "str?",
          "threshold_file": "str", "feature_schema_file": "str", "runtime_file": "str", "metrics_file": "str",
          "bundle_manifest_file": "str", "threshold": "str?", "gto": "bool", "eval_data": "str?", "serve": "map",
          "canaries": "map", "guard": "policy", "signing": "map"}
_WANT = {"names": "a list of names, e.g. [staging, production]", "bool": "true or false", "number": "a number",
         "int": "a whole number", "str": "a string", "str?": "a string", "map": "a mapping"}


def _check_canaries(s: Settings) -> None:
    """`canaries: {canary: production}`: both configured environments, a canary guards a
    stable environment that is not itself a canary."""
    for canary, stable in s.canaries.items():
        if not isinstance(stable, str) or canary not in s.environments or stable not in s.environments \
                or stable == canary or stable in s.canaries:
            raise _bad(f"canaries.{canary}", "a stable environment (both listed in `environments`, the stable "
                       "one not itself a canary), e.g. {canary: production}", stable)


def _bad(key: str, want: str, value) -> UsageError:
    shown = repr(value)
    return UsageError(f"meta.tether.{key} in dvc.yaml must be {want}, not {shown[:60]}",
                      hint=f"fix artifacts.<model>.meta.tether.{key} in dvc.yaml")


def _coerce(key: str, kind: str, value):
    if kind == "names":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise _bad(key, _WANT[kind], value)  # a bare string would become one name per letter
        return tuple(value)
    ok = {"bool": lambda v: isinstance(v, bool),
          "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "str": lambda v: isinstance(v, str) and bool(v),
          "str?": lambda v: v is None or (isinstance(v, str) and bool(v)),
          "map": lambda v: isinstance(v, dict)}[kind]
    if not ok(value):
        raise _bad(key, _WANT[kind], value)
    return float(value) if kind == "number" else value


def _near(a: str, b: str) -> bool:
    """A misspelling: one edit apart, or the same letters in another case or order."""
    if a.lower() == b or sorted(a.lower()) == sorted(b):
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1] <= 2


class Workspace:
    def __init__(self, root: str | Path, git: Git | None = None) -> None:
        self.root = Path(root).resolve()
        self.git = git or Git(self.root)
        self._settings: dict[str, Settings] = {}
        self.refindex: RefIndex | None = None  # set by a read command's Registry(cached=True)

    @classmethod
    def discover(cls, path: str | Path = ".") -> "Workspace":
        git = Git.discover(path)
        return cls(git.root, git)

    @cached_property
    def dvc_yaml_text(self) -> str:
        path = self.root / "dvc.yaml"
        try:
            return path.read_text()
        except FileNotFoundError:
            raise UsageError(
                f"{self.root} has no dvc.yaml",
                hint="tether works on a DVC pipeline: run `dvc init` and declare your stages and model artifact",
            ) from None

    @cached_property
    def dvc_yaml(self) -> dict:
        return load_yaml(self.dvc_yaml_text)

    def dvc_lock(self) -> dict:
        path = self.root / "dvc.lock"
        return load_yaml(path.read_text()) if path.exists() else {}

    @cached_property
    def models(self) -> dict[str, dvcgraph.Artifact]:
        from tether.core import dvcgraph

        return dvcgraph.models(self.dvc_yaml)

    def model(self, name: str | None) -> str:
        if name:
            if name not in self.models:
                known = ", ".join(sorted(self.models)) or "none"
                raise NotFound(f"unknown model '{name}' (models: {known})",
                               hint="declare it under `artifacts:` in dvc.yaml with type: model")
            return name
        if len(self.models) == 1:
            return next(iter(self.models))
        if not self.models:
            raise NotFound("dvc.yaml declares no model artifact",
                           hint="add `artifacts: {my-model: {path: models/my-model, type: model}}` to dvc.yaml")
        raise UsageError("this repository has several models; name one",
                         hint="models: " + ", ".join(sorted(self.models)))

    def settings(self, model: str) -> Settings:
        if model not in self._settings:
            self._settings[model] = Settings.from_meta(self.models[model].meta)
        return self._settings[model]

    def environments(self, model: str) -> tuple[str, ...]:
        """The configured environments, then any stage GTO's assignment tags name for this
        model (a repository with GTO history has `prod`, `dev`, … whatever tether's settings say)."""
        if not hasattr(self, "_envs"):
            self._envs: dict[str, tuple[str, ...]] = {}
        if model not in self._envs:
            from tether.core import gto

            found = list(self.settings(model).environments)
            index = self.refindex
            for name in self.tag_names():
                t = gto.parse_gto_tag(name) if index is None else index.parsed(
                    "gto", name, gto.parse_gto_tag, gto.encode_tag, gto.decode_tag)
                if t and t.model == model and t.stage and t.stage not in found and _valid_env(t.stage):
                    found.append(t.stage)
            self._envs[model] = tuple(found)
            if index is not None:
                index.save()
        return self._envs[model]

    def use_index(self, index: RefIndex, tag_names: list[str]) -> None:
        """A read command's registry read the refs through `index`: parse GTO tag names through
        it too, and take the tag names from the same listing (`git tag --list` gives the same)."""
        self.refindex = index
        self._tag_names = tag_names

    def tag_names(self) -> list[str]:
        if not hasattr(self, "_tag_names"):
            self._tag_names = self.git.tag_names()
        return self._tag_names

    def branch(self, model: str, env: str) -> str:
        """Environment branch name. One model: the environment's own name, so plain
        `git checkout production` works. Several: an existing `<env>` branch keeps belonging to
        the model whose releases it has carried (adding a model never renames anyone's history);
        every other model uses `<model>/<env>`."""
        s = self.settings(model)
        check_env(env)
        # a configured environment needs no look at GTO's tags (environments() starts with them)
        if env not in s.environments and env not in self.environments(model):
            raise NotFound(f"unknown environment '{env}' for {model}",
                           hint="environments: " + ", ".join(self.environments(model)))
        if s.branch_template:
            return s.branch_template.format(model=model, env=env)
        if len(self.models) == 1 or self.branch_owner(env) == model:
            return env
        return f"{model}/{env}"

    def branch_owner(self, branch: str) -> str | None:
        """The model whose release the newest tether move on `branch` (local, else origin's)
        names; None for a branch tether never moved or that does not exist."""
        if not hasattr(self, "_owners"):
            self._owners: dict[str, str | None] = {}
        if branch not in self._owners:
            from tether.core.refs import parse_tag

            owner = None
            for ref in (f"refs/heads/{branch}", f"refs/remotes/origin/{branch}"):
                if not self.git.ref(ref):
                    continue
                for trailers in self.git.trailers_first_parent(ref):
                    tag = trailers.get("Tether-Release")
                    if tag and (name := parse_tag(tag)):
                        owner = name.model
                        break
                if owner:
                    break
            self._owners[branch] = owner
        return self._owners[branch]


def _valid_env(name: str) -> bool:
    try:
        check_env(name)
    except UsageError:
        return False
    return True
