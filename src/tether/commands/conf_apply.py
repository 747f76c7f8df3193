"""`tether conf apply`: write the overrides that explain params.yaml into conf/.

After `dvc exp run -S …` (and `dvc exp apply`), params.yaml holds conf/ composed with the
experiment's overrides, and the release gate refuses it because the next composition of conf/
would drop them. This writes each override where Hydra reads it (a group choice into the
defaults list that makes it, a key into the last config of the defaults list that sets it),
checks in a scratch copy that the edited conf/ composes to params.yaml exactly, and only then
touches conf/. params.yaml is left byte for byte as it is; the compose stage's record in dvc.lock
is updated with `dvc commit` of that stage alone, so its deps (conf/) match again and nothing
downstream (which reads the unchanged params.yaml) wants to run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tether.core import confedit, confvalues
from tether.adapters import hydraconf
from tether.core.confedit import FileEdit
from tether.core.confplan import Explanation
from tether.adapters.dvcstore import DvcStore
from tether.errors import Conflict, GateFailed, UsageError
from tether.core.settings import load_yaml
from tether.adapters.workspace import Workspace

REFUSAL_HINT = ("edit conf/ by hand until it composes to params.yaml, or run `dvc repro` to compose "
                "params.yaml from conf/ again (which drops the experiment's values)")


@dataclass
class ConfApplyPlan:
    explanation: Explanation
    edits: list[FileEdit]
    compose_stage: str | None
    steps: list[str] = field(default_factory=list)
    # conf/ already composes to params.yaml but dvc.lock has not recorded it (an earlier run was
    # killed between writing conf/ and `dvc commit`): the commit alone finishes the job
    commit_only: bool = False

    @property
    def nothing_to_do(self) -> bool:
        return not self.edits and not self.commit_only

    def as_dict(self) -> dict:
        return {**self.explanation.as_dict(), "compose_stage": self.compose_stage, "steps": self.steps,
                "commit_only": self.commit_only,
                "files": [{"file": f"conf/{e.file}", "overrides": list(e.overrides), "diff": e.diff()}
                          for e in self.edits]}


def plan_conf_apply(ws: Workspace, store: DvcStore | None = None) -> ConfApplyPlan:
    conf = ws.root / "conf"
    if not (conf / "config.yaml").exists():
        raise UsageError(f"no Hydra config here: {conf}/config.yaml does not exist")
    params_path = ws.root / "params.yaml"
    if not params_path.exists():
        raise UsageError("params.yaml does not exist", hint="run `dvc repro` (or `dvc exp run`) first")
    params = load_yaml(params_path.read_text())
    explanation = hydraconf.explain(conf, params)
    stage = compose_stage(ws.dvc_yaml)
    if explanation.agrees:
        nothing = ["nothing to write: params.yaml equals the composition of conf/"]
        if stage is None or not (ws.root / "dvc.lock").exists():
            return ConfApplyPlan(explanation, [], stage, nothing)
        changes = _stage_changes(store or DvcStore(ws.root), stage)
        if not _conf_changed(changes):
            return ConfApplyPlan(explanation, [], stage, nothing)
        _check_stage(stage, changes)
        return ConfApplyPlan(explanation, [], stage, [
            "nothing to write: conf/ already composes to params.yaml (params.yaml is not touched)",
            f"dvc commit {stage}: record conf/ for the compose stage in dvc.lock, which still records the conf/ "
            "of before (an earlier `tether conf apply` stopped before its `dvc commit`)"], commit_only=True)
    if not explanation.expressible:
        raise GateFailed("params.yaml is not conf/ plus overrides of it, nothing written: "
                         + "; ".join(explanation.problems), hint=REFUSAL_HINT)
    try:
        edits = confedit.edit_plan(explanation.overrides, lambda f: (conf / f).read_text())
    except Exception as exc:
        raise GateFailed(f"cannot edit conf/ for {' '.join(o.text for o in explanation.overrides)}, "
                         f"nothing written: {exc}", hint=REFUSAL_HINT) from exc
    _check_edited(conf, edits, params)
    if stage is not None:
        _check_stage(stage, _stage_changes(store or DvcStore(ws.root), stage))
    steps = [f"write {', '.join('conf/' + e.file for e in edits)}",
             "check that conf/ composes to params.yaml exactly (params.yaml is not touched)"]
    if stage is not None:
        steps.append(f"dvc commit {stage}: record the new conf/ for the compose stage in dvc.lock "
                     "(its output params.yaml is unchanged, so nothing downstream re-runs)")
    return ConfApplyPlan(explanation, edits, stage, steps)


def compose_stage(dvc_yaml: dict) -> str | None:
    """The stage that writes params.yaml from conf/ (the reference project's `compose`)."""
    for name, st in (dvc_yaml.get("stages") or {}).items():
        if not isinstance(st, dict):
            continue
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in st.get("outs") or []]
        deps = [str(d) for d in st.get("deps") or []]
        if "params.yaml" in outs and any(d.rstrip("/") == "conf" or d.startswith("conf/") for d in deps):
            return name
    return None


def _check_edited(conf: Path, edits: list[FileEdit], params: dict) -> None:
    """Compose the edited conf/ in a scratch copy: it must equal params.yaml before conf/ is touched."""
    with tempfile.TemporaryDirectory(prefix="tether-conf-") as tmp:
        scratch = Path(tmp) / "conf"
        shutil.copytree(conf, scratch, symlinks=True)
        for e in edits:
            (scratch / e.file).write_text(e.after)
        try:
            composed = hydraconf.compose(scratch)
        except Exception as exc:
            raise GateFailed(f"the edited conf/ does not compose, nothing written: {exc}", hint=REFUSAL_HINT) from exc
    if not confvalues.strict_equal(composed, params):
        rest = confvalues.describe(confvalues.leaf_diff(composed, params))
        raise GateFailed("the edited conf/ would still differ from params.yaml, nothing written: "
                         + "; ".join(rest[:4]), hint=REFUSAL_HINT)


def _stage_changes(store: DvcStore, stage: str) -> list:
    """What `dvc status` finds changed for the stage (empty: dvc.lock is up to date for it)."""
    return store.changed_stages().get(stage) or []


def _is_conf(path: str) -> bool:
    return path == "conf" or path.startswith("conf/")


def _conf_changed(changes: list) -> bool:
    return any(isinstance(c, dict) and any(_is_conf(p) for p in c.get("changed deps") or {}) for c in changes)


def _check_stage(stage: str, changes: list) -> None:
    """Only conf/ may have changed under the compose stage: `dvc commit` must not record a code
    change (or any other dependency) that never ran."""
    other = []
    for change in changes:
        if not isinstance(change, dict):
            continue
        for path, _ in (change.get("changed deps") or {}).items():
            if not (path == "conf" or path.startswith("conf/")):
                other.append(path)
    if other:
        raise Conflict(f"the {stage} stage is out of date for more than conf/: {', '.join(sorted(other))}",
                       hint=f"run `dvc repro {stage}` first, or commit that change")


def execute_conf_apply(ws: Workspace, plan: ConfApplyPlan, store: DvcStore | None = None) -> None:
    """Write the files (each by rename), then `dvc commit` the compose stage; on any failure
    put every file (and dvc.lock) back as it was."""
    conf = ws.root / "conf"
    lock = ws.root / "dvc.lock"
    lock_before = lock.read_text() if lock.exists() else None
    written: list[FileEdit] = []
    try:
        for e in plan.edits:
            _replace(conf / e.file, e.after)
            written.append(e)
        if plan.compose_stage is not None:
            store = store or DvcStore(ws.root)
            store.commit_stage(plan.compose_stage)
    except BaseException:
        for e in written:
            _replace(conf / e.file, e.before)
        if lock_before is not None and lock.read_text() != lock_before:
            _replace(lock, lock_before)
        raise


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tether-tmp")
    tmp.write_text(text)
    if path.exists():
        shutil.copymode(path, tmp)
    os.replace(tmp, path)
