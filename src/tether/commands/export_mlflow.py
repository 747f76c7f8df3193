"""`tether export mlflow`: mirror releases and environments into an MLflow model registry.

Each release becomes one model version of the registered model of the same name, tagged with
every part of its tuple and carrying a loadable MLflow pyfunc model: the release's verified
files, re-verified when `mlflow.pyfunc.load_model` loads them (commands/export_mlflow_model.py,
runtime/mlflow_pyfunc.py); each environment becomes an alias on the version live there
(`production` → the live release); each environment move becomes a registered-model tag
`tether.history.<env>.<n>`, so MLflow shows every move, rollbacks included. Idempotent: what is
already there and equal is left alone, so a second run changes nothing. git stays the truth: a
version whose tag object differs from the release's is refused (exit 6), never overwritten.

mlflow is imported here only, inside the functions, and only by this command.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from tether.core import manifest as mf
from tether.digest import sha256_bytes
from tether.servedir.stamp import manifest_digest
from tether.errors import IntegrityError, UsageError
from tether.core.refs import parse_ref
from tether.registry.registry import Registry
from tether.registry.release import Release
from tether.adapters.workspace import Workspace

_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")  # what MLflow accepts in a tag key
_MAX_VALUE = 4000  # MLflow caps tag values (5000 for model versions); reasons are trimmed below it


@dataclass
class Exported:
    created: list[str] = field(default_factory=list)  # release tags that became new versions
    existing: list[str] = field(default_factory=list)
    aliases: dict[str, str | None] = field(default_factory=dict)  # "model:env" -> version now (None: removed)
    moved: list[str] = field(default_factory=list)  # aliases that changed in this run
    history_tags: int = 0  # registered-model tags written in this run
    without_model: list[str] = field(default_factory=list)  # versions an older tether made (source git:…)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.moved or self.history_tags)

    def as_dict(self) -> dict:
        return {"created": self.created, "existing": self.existing, "aliases": self.aliases,
                "moved": self.moved, "history_tags": self.history_tags, "without_model": self.without_model,
                "changed": self.changed}


def version_tags(rel: Release, manifest: dict) -> dict[str, str]:
    """Every part of the tuple as MLflow tags (strings). Pure."""
    comps = manifest["components"]
    tags = {"tether.release": rel.tag, "tether.version": str(rel.version), "tether.commit": rel.commit,
            "tether.tag_object": rel.tag_object, "tether.tree": rel.tree,
            "tether.manifest.sha256": manifest_digest(manifest),
            "tether.params.sha256": str(comps["params"].get("sha256")),
            "tether.params.conf_tree": str((comps["params"].get("config") or {}).get("tree")),
            "tether.threshold": str(comps["threshold"].get("value")),
            "tether.code.sha256": sha256_bytes(json.dumps(sorted((c["path"], c.get("git_id")) for c in comps["code"])).encode()),
            "tether.code.files": str(len(comps["code"]))}
    for part in ("weights", "data"):
        for e in comps[part]:
            tags[_KEY.sub("_", f"tether.{part}.{e['path']}")[:250]] = str(e.get("sha256") or e.get("md5") or e.get("git_id"))
    for k, v in (manifest.get("metrics") or {}).items():
        if isinstance(v, (int, float, str)) and not isinstance(v, bool):
            tags[_KEY.sub("_", f"tether.metric.{k}")[:250]] = str(v)[:_MAX_VALUE]
    return tags


def history_tags(env: str, events: list) -> dict[str, str]:
    """One tag per move, numbered in history order (oldest is 0001): append-only, like the branch."""
    out = {}
    for i, ev in enumerate(reversed(events), start=1):
        value = json.dumps({"action": ev.action, "release": ev.release, "previous": ev.previous,
                            "approver": ev.approver, "reason": ev.reason[:1000], "time": ev.time,
                            "commit": ev.commit}, sort_keys=True)
        out[f"tether.history.{env}.{i:04d}"] = value[:_MAX_VALUE]
    return out


def _client(tracking_uri: str):
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise UsageError("the MLflow bridge needs mlflow", hint="pip install 'tether[mlflow]'") from None
    import logging

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def export(ws: Workspace, refs: list[str], tracking_uri: str, model: str | None = None,
           artifact_location: str | None = None) -> Exported:
    if not tracking_uri:
        raise UsageError("--tracking-uri is empty", hint="e.g. --tracking-uri sqlite:///mlflow.db or http://host:5000")
    reg = Registry(ws, messages=False)
    if refs:
        rels = [reg.resolve(parse_ref(r), model) for r in refs]
    else:
        rels = [r for m in ([ws.model(model)] if model else sorted(ws.models)) for r in reg.of(m)]
    manifests = {r.tag: r.require_trusted("exported") for r in rels}  # refuse before MLflow is touched
    live = {(m, env): reg.live_release(m, env) for m in sorted({r.name.model for r in rels})
            for env in ws.environments(m)}
    for (m, _env), tag in live.items():  # an alias can only point at an exported version
        if tag and tag not in manifests and (rel := reg.by_tag(tag)) is not None:
            rels.append(rel)
            manifests[tag] = rel.require_trusted("exported")
    client = _client(tracking_uri)
    out = Exported()
    versions: dict[str, str] = {}
    new_run = _Runs(client, ws, tracking_uri, artifact_location)
    for rel in sorted(rels, key=lambda r: (r.name.model, r.version.sort_key())):
        versions[rel.tag] = _ensure_version(client, rel, manifests[rel.tag], out, new_run)
    for (m, env), tag in sorted(live.items()):
        _ensure_alias(client, m, env, versions.get(tag) if tag else None, out)
        _ensure_tags(client, m, history_tags(env, reg.history(m, env)), out)
    return out


def _ensure_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Releases mirrored from git by tether")


class _Runs:
    """Logs a release's pyfunc model in a run of the export experiment (made on first use)."""

    def __init__(self, client, ws: Workspace, tracking_uri: str, artifact_location: str | None) -> None:
        self.client, self.ws, self.uri, self.where = client, ws, tracking_uri, artifact_location
        self.experiment: str | None = None

    def __call__(self, rel: Release, manifest: dict) -> tuple[str, str]:
        from tether.commands.export_mlflow_model import experiment_id, log_release

        if self.experiment is None:
            self.experiment = experiment_id(self.client, self.uri, self.where)
        return log_release(self.client, self.ws, rel, manifest, self.experiment)


def _ensure_version(client, rel: Release, manifest: dict, out: Exported, new_run: _Runs) -> str:
    name = rel.name.model
    _ensure_model(client, name)
    tags = version_tags(rel, manifest)
    for mv in client.search_model_versions(f"name='{name}'"):
        if mv.tags.get("tether.release") != rel.tag:
            continue
        if mv.tags.get("tether.tag_object") != rel.tag_object:
            raise IntegrityError(f"MLflow's {name} version {mv.version} records {rel.tag} as tag object "
                                 f"{mv.tags.get('tether.tag_object')}, git has {rel.tag_object}: the tag was moved",
                                 hint="a release never changes; see `tether check`")
        for k, v in tags.items():
            if mv.tags.get(k) != v:  # a tag MLflow lacks (exported by an older tether): add it
                client.set_model_version_tag(name, mv.version, k, v)
        out.existing.append(rel.tag)
        if str(mv.source or "").startswith("git:"):
            out.without_model.append(rel.tag)
        return str(mv.version)
    summary = f"{rel.tag} at commit {rel.commit[:12]}; metrics: " + ", ".join(
        f"{k}={v}" for k, v in sorted(mf.flatten(manifest.get("metrics") or {}).items()) if isinstance(v, (int, float)))
    run_id, source = new_run(rel, manifest)
    mv = client.create_model_version(name, source=source, run_id=run_id, tags=tags, description=summary[:_MAX_VALUE])
    out.created.append(rel.tag)
    return str(mv.version)


def _ensure_alias(client, name: str, env: str, version: str | None, out: Exported) -> None:
    from mlflow.exceptions import MlflowException

    try:
        now = str(client.get_model_version_by_alias(name, env).version)
    except MlflowException:
        now = None
    out.aliases[f"{name}:{env}"] = version
    if now == version:
        return
    if version is None:
        client.delete_registered_model_alias(name, env)
    else:
        client.set_registered_model_alias(name, env, version)
    out.moved.append(f"{name}:{env}")


def _ensure_tags(client, name: str, tags: dict[str, str], out: Exported) -> None:
    have = client.get_registered_model(name).tags
    for k, v in tags.items():
        if have.get(k) != v:
            client.set_registered_model_tag(name, k, v)
            out.history_tags += 1
