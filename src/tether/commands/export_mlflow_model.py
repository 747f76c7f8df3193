"""The loadable model behind an exported MLflow model version (`tether export mlflow`).

A release is materialised as deploy materialises it (its git tree and its model outputs, every
byte checked against the manifest as it is written, then the stamp), verified once more the way
a serving worker verifies it, and saved as an MLflow pyfunc model whose `loader_module` is
tether.runtime.mlflow_pyfunc, with the release directory as its data. It is logged as the
artifact `model` of a run named after the release, in the experiment `tether-releases`; the
model version's source is that artifact, so `mlflow.pyfunc.load_model("models:/NAME@ENV")`
works. mlflow is imported here only, inside the functions.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
from pathlib import Path

from tether.adapters import materialise
from tether.adapters.dvcstore import DvcStore
from tether.adapters.workspace import Workspace
from tether.registry.release import Release
from tether.runtime.mlflow_pyfunc import DATA_DIR, LOADER_MODULE
from tether.servedir.stamp import manifest_digest, write_stamp
from tether.servedir.verify import verify_release_dir

EXPERIMENT = "tether-releases"
ARTIFACT = "model"
# what the built-in loaders import, pinned to the versions the export ran with (tether itself is
# not listed: it is installed from the project's own source, see docs/mlflow.md)
RUNTIME_LIBRARIES = ("numpy", "pandas", "scikit-learn", "skops", "pydantic", "PyYAML")


def default_artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts when the user names no place: beside a sqlite
    store's database file (`mlflow.db` → `mlflow-artifacts/`), not in the working directory
    (MLflow's own default, `./mlruns`, would land in the work tree). None for a tracking server:
    the server decides."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri[len("sqlite:///"):]).resolve()
    return str(db.parent / f"{db.stem}-artifacts")


def experiment_id(client, tracking_uri: str, artifact_location: str | None) -> str:
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return str(found.experiment_id)
    where = artifact_location or default_artifact_location(tracking_uri)
    return str(client.create_experiment(EXPERIMENT, artifact_location=where,
                                        tags={"tether.note": "one run per exported release"}))


def requirements() -> list[str]:
    out = []
    for name in RUNTIME_LIBRARIES:
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def log_release(client, ws: Workspace, rel: Release, manifest: dict, experiment: str) -> tuple[str, str]:
    """(run id, model source URI) of `rel` logged as a pyfunc model in a new run of `experiment`.
    Raises (IntegrityError, StorageError) before the run is created when a byte is wrong or missing."""
    import mlflow.pyfunc

    store = DvcStore(ws.root)
    entries = materialise.needed(manifest)
    materialise.ensure_cached(store, entries)
    with tempfile.TemporaryDirectory(prefix="tether-mlflow-") as tmp:
        try:
            dest = Path(tmp) / DATA_DIR
            placed = materialise.materialise(ws.git, store, manifest, dest, entries)
            entries = [{**e, "sha256": e.get("sha256") or placed.get(e["path"])} for e in entries]
            write_stamp(dest, manifest, entries, rel.tag_object)
            verify_release_dir(Path(tmp), dest)  # what load_model checks, checked before anything is logged
            model_dir = Path(tmp) / ARTIFACT
            mlflow.pyfunc.save_model(
                str(model_dir), loader_module=LOADER_MODULE, data_path=str(dest), pip_requirements=requirements(),
                metadata={"tether_release": rel.tag, "tether_commit": rel.commit,
                          "tether_manifest_sha256": manifest_digest(manifest)})
            run = client.create_run(experiment, run_name=rel.tag,
                                    tags={"tether.release": rel.tag, "tether.commit": rel.commit})
            try:
                client.log_artifacts(run.info.run_id, str(model_dir), ARTIFACT)
            except BaseException:
                client.set_terminated(run.info.run_id, "FAILED")
                raise
            client.set_terminated(run.info.run_id)
        finally:
            _writable(Path(tmp))  # materialised files are read-only, like every file deploy places
    return run.info.run_id, f"{run.info.artifact_uri}/{ARTIFACT}"


def _writable(root: Path) -> None:
    for dirpath, dirs, _names in os.walk(root):
        for d in dirs:
            p = Path(dirpath) / d
            if not p.is_symlink():
                os.chmod(p, 0o755)
