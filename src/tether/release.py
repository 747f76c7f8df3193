"""`tether release`: gates, then an annotated tag `<model>@vX.Y.Z` carrying the manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from tether import components, gates, hydraconf
from tether import manifest as mf
from tether.dvcstore import DvcStore
from tether.errors import Conflict, UsageError
from tether.registry import Registry
from tether.semver import BUMPS, Version
from tether.workspace import Workspace, load_yaml


@dataclass
class ReleasePlan:
    model: str
    tag: str
    version: str
    bump: str | None
    reasons: list[str]
    previous: str | None
    commit: str
    manifest: dict
    gates: list[gates.GateResult]
    push: bool
    message: str
    steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "tag": self.tag,
            "version": self.version,
            "bump": self.bump,
            "reasons": self.reasons,
            "previous": self.previous,
            "commit": self.commit,
            "gates": [g.as_dict() for g in self.gates],
            "steps": self.steps,
            "manifest": self.manifest,
        }


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def all_md5s(manifest: dict) -> dict[str, str]:
    """{md5: path} of every DVC object a release needs."""
    return {e["md5"]: e["path"] for e in mf.dvc_objects(manifest)}


def plan_release(
    ws: Workspace,
    model: str | None,
    *,
    version: str | None = None,
    bump: str | None = None,
    message: str | None = None,
    push: bool = False,
    store: DvcStore | None = None,
) -> ReleasePlan:
    model = ws.model(model)
    if version and bump:
        raise UsageError("give --version or --bump, not both")
    if bump and bump not in BUMPS:
        raise UsageError(f"unknown bump '{bump}'", hint="use major, minor or patch")
    wanted = Version.parse(version) if version else None
    git = ws.git
    commit = git.head()
    if git.current_branch() is None:
        raise UsageError("HEAD is detached", hint="check out the branch you release from (e.g. git switch main)")
    store = store or DvcStore(ws.root)
    if push and not git.remote_url("origin"):
        raise UsageError("--push needs a git remote named origin", hint="git remote add origin URL, or drop --push")

    results = [gates.clean_tree(git.status_porcelain())]
    results.append(gates.dvc_in_sync(store.changed_stages()))
    results.append(gates.params_match_conf(_conf_problems(ws)))
    facts = components.gather(ws, model)
    settings = ws.settings(model)
    results += gates.completeness(facts.graph, facts.undeclared, facts.threshold)
    gates.raise_failures(results, "release")

    manifest = {
        "schema_version": mf.SCHEMA_VERSION,
        "model": model,
        "version": None,
        "commit": commit,
        "tree": git.tree_of(commit),
        "created_at": now_iso(),
        "released_by": git.ident().rsplit(" ", 2)[0],
        "artifact": {"path": facts.graph.artifact.path, "type": facts.graph.artifact.type},
        "components": {
            "weights": components.file_entries(ws, facts.graph.weights, components.weight_roles(settings)),
            "data": components.mark_git_tracked(ws, commit, components.file_entries(ws, facts.graph.data)),
            "code": components.code_entries(ws, commit, facts.graph.code),
            "params": components.params_component(ws, commit, facts.graph),
            "threshold": {**facts.threshold,
                          "params": components.threshold_params(facts.graph, settings.threshold_file)},
        },
        "stages": {s.name: s.cmd for s in facts.graph.stages},
        "metrics": facts.metrics,
        "predictions_sha256": facts.metrics.get("predictions_sha256"),
        "feature_schema": facts.feature_schema,
        "runtime": components.runtime_component(facts.runtime),
    }

    reg = Registry(ws, messages=False)
    previous = reg.latest(model)
    if wanted is None:
        if previous is None:
            kind, reasons = "initial", ["first release of this model"]
            wanted = Version(1, 0, 0) if not bump else Version(0, 0, 0).bump(bump)
        else:
            kind, reasons = mf.propose_bump(previous.manifest, {**manifest, "version": "next"})
            if bump:
                kind, reasons = bump, [f"--bump {bump}", *reasons]
            if kind is None:
                raise Conflict(
                    f"nothing in the tuple changed since {previous.tag}: weights, data, code, params "
                    "and threshold are identical",
                    hint="there is nothing to release; give --version to tag it anyway",
                )
            wanted = previous.version.bump(kind)
    else:
        kind, reasons = None, ["--version given"]
    manifest["version"] = str(wanted)
    tag = f"{model}@v{wanted}"

    md5s = all_md5s(manifest)
    if push:
        results.append(gates.passed("remote", f"{len(md5s)} output(s) will be pushed before the tag"))
    else:
        missing = store.missing_on_remote(md5s)
        results.append(gates.on_remote({md5s[m]: m for m in missing}))
    results.append(gates.tag_free(tag, git.rev_parse(f"refs/tags/{tag}") is not None))
    gates.raise_failures(results, "release")

    steps = []
    if push:
        steps.append(f"push {len(md5s)} DVC object(s) to the remote, then confirm each is there")
    steps.append(f"create annotated tag {tag} on {commit[:12]} with the manifest")
    if push:
        steps.append(f"push tag {tag} to origin")
    return ReleasePlan(
        model=model, tag=tag, version=str(wanted), bump=kind, reasons=reasons,
        previous=previous.tag if previous else None, commit=commit, manifest=manifest,
        gates=results, push=push, message=message or f"Release {tag}", steps=steps,
    )


def _conf_problems(ws: Workspace) -> list[str] | None:
    conf = ws.root / "conf"
    if not (conf / "config.yaml").exists():
        return None
    params_path = ws.root / "params.yaml"
    params = load_yaml(params_path.read_text()) if params_path.exists() else {}
    return hydraconf.disagreements(hydraconf.compose(conf), params)


def execute_release(ws: Workspace, plan: ReleasePlan, store: DvcStore | None = None) -> str:
    """Returns the tag object id. DVC objects go first, the tag second: the git remote never
    holds a tag whose objects the DVC remote lacks."""
    store = store or DvcStore(ws.root)
    md5s = all_md5s(plan.manifest)
    if plan.push:
        store.push(md5s)
        missing = store.missing_on_remote(md5s)
        gates.raise_failures([gates.on_remote({md5s[m]: m for m in missing})], "release")
    tag_obj = ws.git.create_tag(plan.tag, plan.commit, mf.tag_message(plan.manifest, plan.message))
    if plan.push:
        try:
            ws.git.push("origin", f"refs/tags/{plan.tag}:refs/tags/{plan.tag}")
        except Exception:
            # The release is not made unless the remote took it: drop our tag again, but
            # only if it is still the one we just created.
            ws.git.run("update-ref", "-d", f"refs/tags/{plan.tag}", tag_obj, check=False)
            raise
    return tag_obj
