"""Publishing a commit so that plain `git checkout REV && dvc pull` works on a fresh clone.

A release's tuple (weights, data, ...) is not all `dvc pull` restores: every cached output of
the commit is (an evaluation stage's `eval/` directory, plots, a cached metrics file). `release
--push` and `promote --push` publish them all, and check again after the tag (or the environment)
has landed on origin: a `gc --cloud` in another clone that ran in between did not know the tag yet.
"""

from __future__ import annotations

from tether.core import dvcgraph
from tether.core import manifest as mf
from tether.core.settings import load_yaml
from tether.adapters.dvcstore import DvcStore
from tether.errors import StorageError
from tether.adapters.gitrepo import cat_files
from tether.adapters.workspace import Workspace


def _uncached(dvc_yaml: dict) -> set[str]:
    """Paths dvc.yaml declares `cache: false` (outs, metrics, plots): `dvc pull` never fetches them."""
    out: set[str] = set()
    stages = dvc_yaml.get("stages") if isinstance(dvc_yaml, dict) else None
    for stage in (stages or {}).values():
        if not isinstance(stage, dict):
            continue
        for key in ("outs", "metrics", "plots"):
            for item in stage.get(key) or []:
                if isinstance(item, dict):
                    for path, opts in item.items():
                        if isinstance(opts, dict) and opts.get("cache") is False:
                            out.add(dvcgraph.norm(str(path)))
    return out


def outputs_in_blobs(lock_raw: bytes | None, yaml_raw: bytes | None, dvc_files: dict[str, bytes | None]) -> dict[str, str]:
    """{md5: path} of every cached output a commit's dvc.lock and .dvc files name."""
    out: dict[str, str] = {}
    uncached: set[str] = set()
    if yaml_raw is not None:
        try:
            uncached = _uncached(load_yaml(yaml_raw.decode()))
        except Exception:  # noqa: BLE001 - a malformed dvc.yaml declares nothing uncached
            pass
    if lock_raw is not None:
        try:
            stages = dvcgraph.lock_stages(load_yaml(lock_raw.decode()))
        except Exception:  # noqa: BLE001 - an unreadable lock names no output
            stages = {}
        for st in stages.values():
            for o in st.outs:
                if o.md5 and not o.external and o.path not in uncached:
                    out[o.md5] = o.path
    for spec, raw in dvc_files.items():
        if raw is None:
            continue
        try:
            data = load_yaml(raw.decode())
        except Exception:  # noqa: BLE001
            continue
        base = spec.rpartition("/")[0]
        for o in (data.get("outs") or []) if isinstance(data, dict) else []:
            if isinstance(o, dict) and isinstance(o.get("md5"), str) and o.get("cache", True) is not False:
                path = str(o.get("path", ""))
                out[o["md5"]] = f"{base}/{path}" if base else path
    return out


def all_md5s(manifest: dict) -> dict[str, str]:
    """{md5: path} of every DVC object a release needs."""
    return {e["md5"]: e["path"] for e in mf.dvc_objects(manifest)}


def commit_outputs(ws: Workspace, commit: str) -> dict[str, str]:
    """{md5: path} of every object `dvc pull` needs at `commit`."""
    dvc_files = [p for p in ws.git.files_at(commit) if p.endswith(".dvc")]
    blobs = cat_files(ws.git, [f"{commit}:dvc.lock", f"{commit}:dvc.yaml", *(f"{commit}:{p}" for p in dvc_files)])
    return outputs_in_blobs(blobs.get(f"{commit}:dvc.lock"), blobs.get(f"{commit}:dvc.yaml"),
                            {p: blobs.get(f"{commit}:{p}") for p in dvc_files})


def ensure_on_remote(store: DvcStore, wanted: dict[str, str], what: str, *, published: bool = False) -> list[str]:
    """Make the remote hold every object of `wanted` ({md5: path}): upload what it lacks from the
    local cache, then ask again. Returns the paths it uploaded. StorageError naming the paths
    the remote still lacks (because this cache lacks them too, or the upload failed)."""
    missing = store.missing_on_remote(wanted)
    if not missing:
        return []
    absent = store.missing_in_cache(missing)
    if missing - absent:
        store.push(missing - absent)
    still = store.missing_on_remote(missing)
    if still:
        paths = ", ".join(sorted({wanted[m] for m in still})[:8])
        raise StorageError(
            f"the DVC remote lacks {len(still)} object(s) of {what}, and this cache cannot supply them: {paths}",
            hint=("push them from a clone that has them (dvc push), then run the command again"
                  + ("" if published else "; nothing was published")))
    return sorted({wanted[m] for m in missing})
