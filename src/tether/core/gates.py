"""Gate decisions. Pure: each takes facts already gathered and returns GateResults that say
what is wrong and how to fix it; the caller decides what to raise."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tether.core.dvcgraph import ModelGraph, Stage, under
from tether.core.history import RollbackBlock, names_reason
from tether.core.metricdir import MetricPolicy, gated_text, not_gated_text
from tether.core.moves import OVERRIDE_ROLLBACK
from tether.errors import Conflict, GateFailed, StorageError, TetherError

if TYPE_CHECKING:  # confplan (and YAML) load only when a release compares params with conf/
    from tether.core.confplan import Explanation


@dataclass(frozen=True)
class GateResult:
    name: str
    ok: bool
    message: str
    hint: str | None = None
    error: type[TetherError] = GateFailed
    warning: bool = False  # passed without checking anything (e.g. no metrics to compare)

    @property
    def status(self) -> str:
        return "FAIL" if not self.ok else "warn" if self.warning else "ok"

    def as_dict(self) -> dict:
        return {"gate": self.name, "ok": self.ok, "status": self.status, "message": self.message, "hint": self.hint}


def passed(name: str, message: str) -> GateResult:
    return GateResult(name, True, message)


def clean_tree(porcelain: list[str]) -> GateResult:
    if not porcelain:
        return passed("clean-tree", "git tree is clean")
    shown = ", ".join(line[3:] for line in porcelain[:5]) + (" …" if len(porcelain) > 5 else "")
    return GateResult("clean-tree", False, f"uncommitted changes: {shown}",
                      "commit or stash them: a release must be reproducible from its commit", Conflict)


def dvc_in_sync(changed: dict) -> GateResult:
    if not changed:
        return passed("dvc-status", "dvc.lock matches the workspace")
    stages = ", ".join(sorted(changed)[:6])
    return GateResult("dvc-status", False, f"the pipeline is out of date: {stages}",
                      "run `dvc repro`, then commit dvc.lock")


def params_match_conf(explanation: Explanation | None, composer: str | None = None) -> GateResult:
    """`explanation` is None without a Hydra conf/ (confplan.explain otherwise). `composer` says
    what composes params.yaml from conf/ in this repository: "stage NAME" (a stage whose output is
    params.yaml: `dvc repro` composes), "dvc exp run" (DVC's own `hydra.enabled`), or None."""
    if explanation is None:
        return passed("params-conf", "no Hydra conf/ to compare")
    if explanation.agrees:
        return passed("params-conf", "params.yaml equals the composition of conf/")
    if explanation.expressible:
        overrides = explanation.overrides
        width = max(len(o.text) for o in overrides)
        return GateResult(
            "params-conf", False,
            f"params.yaml disagrees with conf/: it is conf/ composed with {len(overrides)} override(s) "
            "that conf/ does not hold, so the next composition of conf/ would drop them:"
            + "".join(f"\n      {o.text:{width}}  {o.where}" for o in overrides),
            "write them into conf/ with `tether conf apply` (`--dry-run` shows the diff), then commit conf/ "
            "and dvc.lock" + _recompose_note(composer, "; {how} instead would compose params.yaml from conf/ again "
                                                       "and lose them"))
    shown = "; ".join(explanation.differences[:4]) + (" …" if len(explanation.differences) > 4 else "")
    return GateResult(
        "params-conf", False,
        f"params.yaml disagrees with conf/: {shown}; and it is not conf/ plus overrides: "
        + "; ".join(explanation.problems),
        "put the values in conf/ by hand" + _recompose_note(composer, ", or compose params.yaml again with {how}"))


def _recompose_note(composer: str | None, template: str) -> str:
    """What recomposes params.yaml from conf/ here, said only where something does."""
    if composer is None:
        return ""  # nothing composes it: `dvc repro` runs the stages with params.yaml as it is
    how = "`dvc exp run` (DVC's hydra.enabled)" if composer == "dvc exp run" else f"`dvc repro` ({composer})"
    return template.format(how=how)


def completeness(graph: ModelGraph, undeclared: dict[str, dict[str, str]], manifest: dict,
                 fixes: dict | None = None) -> list[GateResult]:
    """All five parts present, and every stage declares the code it runs and the data it reads.
    `manifest` is the derivation of the commit (derive.py): weights and threshold as any tag of
    it will be read later."""
    fixes = fixes or {}
    out = []
    name = graph.artifact.name
    weights = manifest["components"]["weights"]
    if weights and all(w.get("md5") or w.get("git_id") for w in weights):
        how = ("kept in git" if all(w.get("git_id") for w in weights)
               else "added with dvc add" if any(w.get("dvc_file") for w in weights)
               else f"output(s) under {graph.artifact.path}")
        out.append(passed("weights", f"{len(weights)} file(s) {how}"))
    else:
        out.append(GateResult("weights", False, f"nothing in dvc.lock, a .dvc file or git holds {graph.artifact.path}",
                              "produce it with a stage (`dvc repro`), `dvc add` it, or commit it to git; then commit"))
    if not graph.stages:
        # A model no stage produces or reads (trained in a notebook, then `dvc add`ed or committed):
        # one stage that evaluates it pins data, code, params and threshold at once.
        stage_fix = (f"add a stage that evaluates {graph.artifact.path}: deps: [{graph.artifact.path}, <eval data>, "
                     "<its script>], params: [evaluate.threshold], metrics: [<its metrics file>] "
                     "(README: 'Using tether on your own repository')")
        fixes = {**fixes, "data": stage_fix, "code": None, "params": None,
                 "threshold": None if not fixes.get("threshold", "").startswith("meta.") else fixes["threshold"]}
    starved = [s.name for s in graph.stages
               if any(under(o.path, graph.artifact.path) for o in s.outs) and not _reads_data(graph, s)]
    if not graph.data:
        out.append(GateResult("data", False, f"{name}'s stages declare no data dependency",
                              fixes.get("data") or "add the training/eval data files as deps of the model's "
                                                   "stages in dvc.yaml"))
    elif starved:
        out.append(GateResult("data", False,
                              f"stage(s) {', '.join(starved)} produce {name} but declare no data dependency",
                              "add the data they read as deps in dvc.yaml, so the release pins it"))
    else:
        out.append(passed("data", f"{len(graph.data)} data file(s) upstream"))
    missing_code = {f"{stage}: {path} ({why})" for stage, files in undeclared.items() for path, why in files.items()}
    if missing_code:
        out.append(GateResult("code", False,
                              "code that stages run but do not declare as deps: " + "; ".join(sorted(missing_code)),
                              "add these files to the stages' deps in dvc.yaml, so a change to them retrains and is pinned"))
    elif not graph.code:
        out.append(GateResult("code", False, f"{name}'s stages declare no source files as deps",
                              fixes.get("code", "add the scripts/modules each stage runs to its deps in dvc.yaml")))
    else:
        out.append(passed("code", f"{len(graph.code)} source dep(s), every module the stages run is declared"))
    if graph.params:
        out.append(passed("params", "params declared: " + ", ".join(sorted(graph.params))))
    else:
        out.append(GateResult("params", False, f"{name}'s stages declare no params",
                              fixes.get("params", "list the hyperparameters each stage reads under `params:` in dvc.yaml")))
    threshold = manifest["components"]["threshold"]
    if isinstance(threshold.get("value"), (int, float)):
        out.append(passed("threshold", f"threshold {threshold['value']} from {threshold.get('source')}"))
    else:
        out.append(GateResult("threshold", False, f"{name} has no decision threshold",
                              fixes.get("threshold", "declare one (see README, 'Using tether on your own repository')")))
    return out


def _reads_data(graph: ModelGraph, stage: Stage, seen: set | None = None) -> bool:
    seen = seen if seen is not None else set()
    data_paths = {d.path for d in graph.data}
    by_name = {s.name: s for s in graph.stages}
    for dep in stage.deps:
        if dep.path in data_paths or any(under(dep.path, p) or under(p, dep.path) for p in data_paths):
            return True
        up = graph.producers.get(dep.path)
        if up and up in by_name and up not in seen:
            seen.add(up)
            if _reads_data(graph, by_name[up], seen):
                return True
    return False


def on_remote(missing: dict[str, str]) -> GateResult:
    if not missing:
        return passed("remote", "every output is on the DVC remote")
    shown = ", ".join(sorted(missing)[:12]) + (" …" if len(missing) > 12 else "")
    return GateResult("remote", False, f"{len(missing)} output(s) are not on the DVC remote: {shown}",
                      "push them: `dvc push`, or release with --push", StorageError)


def unreadable(name: str, missing: dict[str, dict[str, str]]) -> GateResult:
    """A gate that needs DVC objects (metrics, a threshold) that neither this clone's cache nor
    the DVC remote holds: it refuses (exit 7) in every clone alike rather than pass for lack of data.
    `missing`: {release: {path: md5}}."""
    shown = "; ".join(f"{tag}: " + ", ".join(f"{path} ({md5[:12]})" for path, md5 in sorted(files.items()))
                      for tag, files in missing.items())
    return GateResult(name, False, "cannot compare: these files are neither in this clone's DVC cache nor on the "
                                   f"DVC remote: {shown}",
                      "push them from a clone that has them (`git checkout TAG && dvc push`, or "
                      "`tether release --push` from now on), then try again", StorageError)


def tag_free(tag: str, exists: bool) -> GateResult:
    if not exists:
        return passed("tag", f"{tag} is free")
    return GateResult("tag", False, f"tag {tag} already exists", "releases never change: pick the next version", Conflict)


def raise_failures(results: list[GateResult], what: str) -> None:
    failed = [r for r in results if not r.ok]
    if not failed:
        return
    first = failed[0]
    if len(failed) == 1:
        text = f"{what} refused: {first.name}: {first.message}"
    else:
        text = f"{what} refused, {len(failed)} gates failed:" + "".join(f"\n  - {r.name}: {r.message}" for r in failed)
    hints = [r.hint for r in failed if r.hint]
    exc = first.error(text, hint="; ".join(hints) or None)
    if isinstance(exc, GateFailed):
        exc.failures = [r.as_dict() for r in failed]
    exc.gates = list(results)  # type: ignore[attr-defined]  # every gate checked: a dry run lists them
    raise exc


# Counters and bookkeeping a metrics file carries (dvclive writes `step`), not quality measures:
# what summaries and charts leave out. The regression gate asks core/metricdir.py instead.
NOT_METRICS = frozenset({"n_eval", "n_train", "threshold", "step", "epoch", "timestamp"})


def regression(current: dict, candidate: dict, tolerance: float, lower_is_better: tuple[str, ...] = (),
               only: tuple[str, ...] = (), policy: MetricPolicy | None = None) -> GateResult:
    """No gated metric may get worse by more than `tolerance` (relative) against what runs now.
    Which way each metric is good, and which are informational (counts, bookkeeping, settings:
    never gated), comes from `policy` (core/metricdir.py; by default `lower_is_better` and
    `only` as the settings of those names, then each metric's name). The message names the
    direction used for every gated metric and every metric left out, with why."""
    policy = policy or MetricPolicy((), lower_is_better, only)
    shared = [k for k in sorted(set(current) & set(candidate)) if _num(current[k]) and _num(candidate[k])]
    ways = {k: policy.direction(k) for k in shared}
    gated = {k: d for k, d in ways.items() if d.gated}
    skipped = {k: d for k, d in ways.items() if not d.gated}
    not_gated = f"; not gated: {not_gated_text(skipped)}" if skipped else ""
    if not gated:
        # Not "ok": nothing was compared. It does not block (a project may not measure yet),
        # but every promotion says so.
        why = ("neither release records metrics" if not current and not candidate
               else "the two releases share no numeric metric" if not shared
               else "every metric the two releases share is informational")
        return GateResult("regression", True, f"could not compare: {why}{not_gated}",
                          "declare the evaluation's metrics file under `metrics:` in dvc.yaml (dvclive's metrics.json "
                          "counts), and which way each metric is good in meta.tether.metrics (e.g. {f1: higher}), so "
                          "promotions compare them", warning=True)
    worse = []
    for k, d in gated.items():
        a, b = current[k], candidate[k]
        drop = (b - a) if d.way == "lower" else (a - b)
        base = abs(a) if a else 1.0
        if drop / base > tolerance:
            worse.append(f"{k} {a:.4g} → {b:.4g} ({(b - a) / base:+.1%}, {d.way} is better)")
    if not worse:
        return passed("regression", f"no metric regresses more than {tolerance:.0%} ({gated_text(gated)}){not_gated}")
    return GateResult("regression", False, f"metrics regress more than {tolerance:.0%}: " + ", ".join(worse),
                      "fix the model, or pass --allow-regression REASON to record why it is acceptable; a metric that "
                      "is not a quality measure can be declared info in meta.tether.metrics (docs/gates.md)")


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def rolled_back(env: str, tag: str, block: RollbackBlock | None, ignored: list[str],
                override: str | None) -> GateResult:
    """`promote` of a release `env` was rolled back away from: refused (naming who rolled it
    back, when and why) unless a promotion of it has overridden that rollback since, or
    `override` (--override-rollback) quotes the rollback's reason now."""
    name = "rolled-back"
    note = (f" (not counted: {', '.join(ignored)}: not moves tether made)" if ignored else "")
    if block is None:
        unused = " (--override-rollback not needed: not recorded)" if override else ""
        return passed(name, f"{env} was never rolled back away from {tag}{note}{unused}")
    rb = block.rollback
    said = (f"{env} was rolled back away from {tag} by {rb.approver} at {rb.time} (move {rb.commit[:12]}, to "
            f"{rb.release}): \"{rb.reason}\"")
    if block.override is not None:
        ov = block.override
        return passed(name, f"{said}; overridden when {ov.approver} promoted it again at {ov.time} (move "
                            f"{ov.commit[:12]}): \"{ov.trailers.get(OVERRIDE_ROLLBACK, '')}\"{note}")
    if override and names_reason(override, rb.reason):
        return passed(name, f"overridden: {said}; --override-rollback \"{' '.join(override.split())}\"")
    wrong = f"; --override-rollback \"{' '.join(override.split())}\" does not quote that reason" if override else ""
    return GateResult(name, False, f"{said}{wrong}{note}",
                      f"if promoting {tag} to {env} again is safe now, say why with --override-rollback "
                      f"{shlex.quote(rb.reason + ': <why it is safe now>')} (the text must quote the rollback's "
                      "reason; it is recorded in the move's Tether-Override-Rollback trailer)")
