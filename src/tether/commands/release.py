"""`tether release`: gates, then an annotated tag `<model>@vX.Y.Z` carrying the manifest."""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.commands import release_facts
from tether.commands.release_bump import next_version
from tether.registry import derive
from tether.core import confplan, gates
from tether.adapters import hydraconf
from tether.adapters import publish
from tether.adapters.publish import all_md5s
from tether.registry import signing
from tether.digest import sha256_file, tree_sha256_of
from tether.core import manifest as mf
from tether.adapters.dvcstore import DvcStore
from tether.errors import GateFailed, IntegrityError, StorageError, UsageError
from tether.core.refs import check_model
from tether.registry.registry import Registry
from tether.clock import now_iso
from tether.core.semver import BUMPS, Version
from tether.core.settings import load_yaml
from tether.adapters.workspace import Workspace


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
    resume: bool = False  # the tag exists locally: only publish it
    published: bool = False  # the tag is on origin already (a retried --push): only confirm its objects
    sign: bool = False  # a signed tag (`git tag -s`, the user's own signing configuration)
    objects: dict = field(default_factory=dict)  # {md5: path} to push: the manifest's, and its metrics files'
    repaired: list[str] = field(default_factory=list)  # paths the remote lacked and --push uploaded (again)

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
            "resume": self.resume,
            "already_published": self.published,
            "sign": self.sign,
            "uploaded_missing": self.repaired,
            "manifest": self.manifest,
        }


def plan_release(
    ws: Workspace,
    model: str | None,
    *,
    version: str | None = None,
    bump: str | None = None,
    message: str | None = None,
    push: bool = False,
    store: DvcStore | None = None,
    sign: bool = False,
) -> ReleasePlan:
    # A name the tag grammar cannot carry would make a tag the registry never reads back: an
    # invisible release. Refuse it before anything is computed.
    model = check_model(ws.model(model))
    wanted = _check_request(ws, model, version, bump, sign)
    git = ws.git
    commit = git.head()
    if git.current_branch() is None:
        raise UsageError("HEAD is detached", hint="check out the branch you release from (e.g. git switch main)")
    store = store or DvcStore(ws.root)
    if push and not git.remote_url("origin"):
        raise UsageError("--push needs a git remote named origin", hint="git remote add origin URL, or drop --push")
    results, facts, manifest = _gated_manifest(ws, model, commit, store)

    reg = Registry(ws, messages=False)
    if push and (resumed := _unpublished_tag(ws, reg, model, commit)) is not None:
        return _resume_plan(resumed, results, push)
    if push and (done := _published_tag(ws, reg, model, commit)) is not None:
        return _published_plan(done, results)
    previous = reg.latest(model)
    highest = reg.of(model)[0] if reg.of(model) else None  # every version, whoever tagged it
    kind, reasons, chosen = next_version(ws, model, commit, manifest, wanted, bump, previous, highest)
    manifest["version"] = str(chosen)
    tag = f"{model}@v{chosen}"

    # The metrics files count: the promote gates of every clone read them from the remote.
    md5s = {**all_md5s(manifest), **metrics_objects(ws, commit, facts.graph)}
    if push:
        results.append(gates.passed("remote", f"{len(md5s)} output(s) will be pushed before the tag"))
    else:
        missing = store.missing_on_remote(md5s)
        results.append(gates.on_remote({md5s[m]: m for m in missing}))
    results.append(gates.tag_free(tag, git.rev_parse(f"refs/tags/{tag}") is not None))
    gates.raise_failures(results, "release")
    return ReleasePlan(
        model=model, tag=tag, version=str(chosen), bump=kind, reasons=reasons,
        previous=previous.tag if previous else None, commit=commit, manifest=manifest,
        gates=results, push=push, message=message or f"Release {tag}", steps=_steps(tag, commit, md5s, push, sign),
        sign=sign, objects=md5s,
    )


def _check_request(ws: Workspace, model: str, version: str | None, bump: str | None, sign: bool) -> Version | None:
    """The options, checked before anything is computed; the version asked for, if one was."""
    if version and bump:
        raise UsageError("give --version or --bump, not both")
    if bump and bump not in BUMPS:
        raise UsageError(f"unknown bump '{bump}'", hint="use major, minor or patch")
    wanted = Version.parse(version) if version else None
    if signing.policy(ws, model).releases.require_signed and not sign:
        raise IntegrityError(f"releases of {model} must be signed (meta.tether.signing.releases in dvc.yaml)",
                             hint="pass --sign (git signs with your gpg.format and user.signingkey); nothing was tagged")
    return wanted


def _gated_manifest(ws: Workspace, model: str, commit: str,
                    store: DvcStore) -> tuple[list[gates.GateResult], release_facts.Facts, dict]:
    """The workspace gates, then the manifest (without its version); GateFailed if a gate fails."""
    git = ws.git
    results = [gates.clean_tree(git.status_porcelain())]
    results.append(gates.dvc_in_sync(store.changed_stages()))
    results.append(gates.params_match_conf(_conf_explanation(ws), _composer(ws)))
    facts = release_facts.gather(ws, model)
    # The manifest is what the commit says (derive.py), the same derivation `check` applies to
    # any tag later, plus what only the release can record: each weights file's sha256 (read
    # now from the workspace, which dvc status just proved matches dvc.lock) and the runtime.
    reader = derive.cache_reader(store.cache_path("00" * 16).parent.parent)
    derived = derive.derive_many(git, [(commit, model)], reader, use_cache=False)[(commit, model)]
    if derived.manifest is None:
        raise GateFailed(f"cannot derive {model}'s manifest at {commit[:12]}: " + "; ".join(derived.problems))
    results += gates.completeness(facts.graph, facts.undeclared, derived.manifest, derived.fixes)
    if derived.problems:
        results.append(gates.GateResult("manifest", False, "; ".join(derived.problems)))
    gates.raise_failures(results, "release")
    manifest = derive.merge(derived.manifest, None, {"created_at": now_iso(),
                                                     "released_by": git.ident().rsplit(" ", 2)[0]})
    manifest.pop("derived", None)
    for e in manifest["components"]["weights"] + manifest["components"]["data"]:
        e["sha256"] = _workspace_sha256(ws, store, e)
    manifest["feature_schema"] = manifest.get("feature_schema") or facts.feature_schema
    manifest["runtime"] = release_facts.runtime_component(manifest.get("runtime") or facts.runtime,
                                                       _lock_file(ws))
    _threshold_param(manifest["components"]["threshold"])
    if not manifest.get("metrics"):
        manifest["metrics"] = facts.metrics
        manifest["predictions_sha256"] = facts.metrics.get("predictions_sha256")
    return results, facts, manifest


def _steps(tag: str, commit: str, md5s: dict[str, str], push: bool, sign: bool) -> list[str]:
    steps = []
    if push:
        steps.append(f"push {len(md5s)} DVC object(s) and every other cached output of the commit "
                     "(what `dvc pull` needs) to the remote, then confirm each is there")
    steps.append(f"create {'signed' if sign else 'annotated'} tag {tag} on {commit[:12]} with the manifest")
    if push:
        steps.append(f"push tag {tag} to origin")
    return steps


def metrics_objects(ws: Workspace, commit: str, graph) -> dict[str, str]:
    """{md5: path} of the DVC-tracked metrics files (dvc.lock at HEAD) the release's metrics come from."""
    from tether.core import dvcgraph

    outs = {o.path: o.md5 for st in dvcgraph.lock_stages(ws.dvc_lock()).values() for o in st.outs if o.md5}
    found = [p for p in derive.metric_paths(ws.dvc_yaml, graph) if p in outs]
    in_git = ws.git.ls_tree(commit, found) if found else {}  # `cache: false`: git holds them
    return {outs[p]: p for p in found if p not in in_git}


def _threshold_param(threshold: dict) -> None:
    """The param the threshold is read from (`params: evaluate.threshold`, `params.yaml:KEY`) moves
    the threshold, not the model: a change to it alone is a patch (docs/gates.md)."""
    src = str(threshold.get("source") or "")
    key = src[len("params: "):] if src.startswith("params: ") else \
        src.partition(":")[2] if src.startswith("params.yaml:") else ""
    if key and key not in (threshold.get("params") or []):
        threshold["params"] = sorted([*(threshold.get("params") or []), key])


LOCK_FILES = ("requirements.lock", "uv.lock", "poetry.lock", "Pipfile.lock", "conda-lock.yml")


def _lock_file(ws: Workspace) -> tuple[str, str] | None:
    """(path, sha256) of the repository's lock file at HEAD (the tree is clean), if it has one."""
    for name in LOCK_FILES:
        p = ws.root / name
        if p.is_file():
            return name, sha256_file(p)
    return None


def _workspace_sha256(ws: Workspace, store: DvcStore, entry: dict) -> str | None:
    """The sha256 a release records for a DVC-tracked file, or the tree sha256 of a directory
    (over exactly the files DVC's listing names: digest.tree_sha256)."""
    md5 = entry.get("md5")
    if not md5 or entry.get("external") or entry.get("git_id"):
        return None
    p = ws.root / entry["path"]
    if md5.endswith(".dir") and p.is_dir():
        try:
            rels = [c["relpath"] for c in store.dir_entries(md5)]
        except FileNotFoundError:
            rels = None
        return tree_sha256_of(p, rels)[0]
    return sha256_file(p) if p.is_file() else None


def _unpublished_tag(ws: Workspace, reg: Registry, model: str, commit: str):
    """A release of this model already tagged on HEAD but missing on origin: an interrupted
    `release --push`. Returns the release to finish publishing, or None."""
    for rel in reg.of(model):
        if rel.commit == commit:
            try:
                on_origin = ws.git.remote_tag("origin", rel.tag)
            except StorageError:
                continue  # origin unreachable: nothing is known to be unpublished
            if on_origin is None:
                return rel
    return None


def _published_tag(ws: Workspace, reg: Registry, model: str, commit: str):
    """A release of this model tagged on HEAD that origin holds with the same tag object: a
    retried `release --push` whose tag landed. Returns it, or None."""
    for rel in reg.of(model):
        if rel.commit == commit:
            try:
                on_origin = ws.git.remote_tag("origin", rel.tag)
            except StorageError:
                continue
            if on_origin is not None and on_origin == rel.tag_object:
                return rel
    return None


def _published_plan(rel, results) -> ReleasePlan:
    rel.require_trusted("published")
    return ReleasePlan(
        model=rel.name.model, tag=rel.tag, version=str(rel.version), bump=None,
        reasons=[f"{rel.tag} is on origin already: confirming its DVC objects are on the remote"],
        previous=None, commit=rel.commit, manifest=rel.manifest, gates=results, push=True,
        message="", steps=["confirm every DVC object of the commit is on the remote, uploading what is missing"],
        resume=True, published=True)


def _resume_plan(rel, results, push: bool) -> ReleasePlan:
    rel.require_trusted("published")
    md5s = all_md5s(rel.manifest)
    return ReleasePlan(
        model=rel.name.model, tag=rel.tag, version=str(rel.version), bump=None,
        reasons=[f"{rel.tag} exists here but not on origin: finishing its publication"],
        previous=None, commit=rel.commit, manifest=rel.manifest, gates=results, push=push,
        message="", steps=[f"push {len(md5s)} DVC object(s) to the remote, then confirm each is there",
                           f"push the existing tag {rel.tag} to origin"], resume=True)


def _conf_explanation(ws: Workspace) -> "confplan.Explanation | None":
    conf = ws.root / "conf"
    if not (conf / "config.yaml").exists():
        return None
    params_path = ws.root / "params.yaml"
    params = load_yaml(params_path.read_text()) if params_path.exists() else {}
    return hydraconf.explain(conf, params)


def _composer(ws: Workspace) -> str | None:
    """What composes params.yaml from conf/: a stage that outputs it, else DVC's own Hydra
    composition on `dvc exp run` (`hydra.enabled` in .dvc/config), else nothing."""
    import configparser

    from tether.core import dvcgraph

    for name, st in dvcgraph.lock_stages(ws.dvc_lock()).items():
        if any(o.path == "params.yaml" for o in st.outs):
            return f"stage {name}"
    cfg = configparser.ConfigParser()
    for f in (".dvc/config", ".dvc/config.local"):
        try:
            cfg.read(ws.root / f)
        except configparser.Error:
            continue
    return "dvc exp run" if cfg.get("hydra", "enabled", fallback="false").strip().lower() in ("true", "1", "yes") else None


def execute_release(ws: Workspace, plan: ReleasePlan, store: DvcStore | None = None) -> str:
    """Returns the tag object id. DVC objects go first, the tag second: the git remote never
    holds a tag whose objects the DVC remote lacks."""
    store = store or DvcStore(ws.root)
    md5s = plan.objects or all_md5s(plan.manifest)
    wanted: dict[str, str] = {}
    if plan.push:
        # every object `dvc pull` needs at the commit, not only the tuple's (publish.py)
        wanted = {**publish.commit_outputs(ws, plan.commit), **md5s}
        if not plan.published:
            store.push(md5s)
        plan.repaired = publish.ensure_on_remote(store, wanted, plan.tag, published=plan.published)
        missing = store.missing_on_remote(md5s)
        gates.raise_failures([gates.on_remote({md5s[m]: m for m in missing})], "release")
    if plan.published:
        return ws.git.ref(f"refs/tags/{plan.tag}") or ""
    if plan.resume:
        ws.git.push("origin", f"refs/tags/{plan.tag}:refs/tags/{plan.tag}")
        _confirm_after_tag(store, wanted, plan)
        return ws.git.ref(f"refs/tags/{plan.tag}") or ""
    text = mf.tag_message(plan.manifest, plan.message)
    if plan.sign:
        tag_obj = ws.git.create_signed_tag(plan.tag, plan.commit, text)
        try:
            signing.check_new_tag(ws, plan.model, plan.tag, tag_obj)
        except IntegrityError:
            ws.git.delete_ref(f"refs/tags/{plan.tag}", tag_obj)
            raise
    else:
        tag_obj = ws.git.create_tag(plan.tag, plan.commit, text)
    if plan.push:
        try:
            ws.git.push("origin", f"refs/tags/{plan.tag}:refs/tags/{plan.tag}")
        except Exception:
            # The release is not made unless the remote took it: drop our tag again, but
            # only if it is still the one we just created.
            ws.git.delete_ref(f"refs/tags/{plan.tag}", tag_obj)
            raise
        _confirm_after_tag(store, wanted, plan)
    return tag_obj


def _confirm_after_tag(store: DvcStore, wanted: dict[str, str], plan: ReleasePlan) -> None:
    """A `gc --cloud` in another clone that listed origin before our tag landed may have deleted
    objects we had just uploaded: now that the tag is there, ask again and upload what is gone."""
    again = publish.ensure_on_remote(store, wanted, plan.tag, published=True)
    if again:
        plan.repaired = sorted(set(plan.repaired) | set(again))
