"""A model's settings, `artifacts.<model>.meta.tether` in dvc.yaml: typed, and validated where
they enter (`Settings.from_meta`). Pure: the YAML text comes from the caller (the workspace,
or a commit's dvc.yaml read through git)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tether.errors import UsageError
from tether.core import metricdir
from tether.core.refs import check_env

if TYPE_CHECKING:
    from tether.core.guardpolicy import GuardPolicy

# yaml and the guard policy are imported where they are used: a read command answered from
# tether.adapters.refindex needs neither, and they are a third of its start-up.


def load_yaml(text: str) -> dict:
    import yaml

    # the C loader is ~10x faster on large dvc.lock files
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}


def _default_guard() -> GuardPolicy:
    from tether.core.guardpolicy import GuardPolicy

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
    # which way each metric is good (core/metricdir.py): {name or pattern: higher|lower|info};
    # undeclared metrics go by their names (losses lower, counts info, the rest higher)
    metrics: dict = field(default_factory=dict)
    lower_is_better: tuple[str, ...] = ()  # kept: these names are lower-is-better
    gate_metrics: tuple[str, ...] = ()  # kept: non-empty gates only these (empty: every gated metric both have)
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
    events: dict = field(default_factory=dict)  # where the post-receive hook sends events (cloudevents)
    attestation: dict = field(default_factory=dict)  # environments that take only attested releases

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
                from tether.core.guardpolicy import parse_policy

                kwargs[key] = parse_policy(value)
            elif kind != "directions":
                kwargs[key] = _coerce(key, kind, value)
        if "metrics" in raw:  # checked against lower_is_better and gate_metrics, read above
            kwargs["metrics"] = metricdir.parse(raw["metrics"], kwargs.get("lower_is_better", ()),
                                                kwargs.get("gate_metrics", ()))
        s = cls(**kwargs)
        for env in s.environments:
            check_env(env)
        _check_canaries(s)
        if not 0 <= s.tolerance < 1:
            raise _bad("tolerance", "a fraction between 0 and 1, e.g. 0.05 for 5%", s.tolerance)
        if s.keep < 0:
            raise _bad("keep", "a whole number of releases, 0 or more", s.keep)
        _check_policies(s)
        return s

    @property
    def metric_policy(self) -> metricdir.MetricPolicy:
        """Which way each metric is good, as the regression gate reads it."""
        return metricdir.MetricPolicy(tuple(self.metrics.items()), self.lower_is_better, self.gate_metrics)


_KINDS = {"environments": "names", "require_staging": "bool", "tolerance": "number", "lower_is_better": "names",
          "gate_metrics": "names", "metrics": "directions", "keep": "int", "smoke": "bool", "branch_template": "str?",
          "threshold_file": "str", "feature_schema_file": "str", "runtime_file": "str", "metrics_file": "str",
          "bundle_manifest_file": "str", "threshold": "str?", "gto": "bool", "eval_data": "str?", "serve": "map",
          "canaries": "map", "guard": "policy", "signing": "map",
          "events": "map", "attestation": "map"}
_WANT = {"names": "a list of names, e.g. [staging, production]", "bool": "true or false", "number": "a number",
         "int": "a whole number", "str": "a string", "str?": "a string", "map": "a mapping"}


def _check_policies(s: Settings) -> None:
    """A malformed policy is a usage error when settings load. An empty one (a mapping, as
    _coerce checked) is each parser's default and cannot be malformed: its parser, and the
    module that holds it, are not loaded for it."""
    if s.signing:
        from tether.core.signpolicy import parse as parse_signing

        parse_signing(s.signing)
    if s.events:
        from tether.core.cloudevents import policy as parse_events

        parse_events(s.events)
    if s.attestation:
        from tether.core.attestation import parse_policy as parse_attestation

        try:
            parse_attestation(s.attestation, s.environments)
        except ValueError as exc:
            raise _bad("attestation", f"{{key: PATH, environments: [ENV, …]}} ({exc})", s.attestation) from None


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
