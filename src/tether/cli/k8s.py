"""Kubernetes and KServe: `tether kserve-init` (the storage initializer) and `tether k8s render`."""

from __future__ import annotations

import os
from typing import Optional

import typer

from tether.cli.base import JSON, MODEL_OPT, app, byte_bar, emit, global_options, open_workspace, progress

k8s_app = typer.Typer(help="Kubernetes and KServe manifests rendered from the registry.", no_args_is_help=True)
app.add_typer(k8s_app, name="k8s")


@app.command("kserve-init")
def kserve_init(
    uri: str = typer.Argument(..., metavar="URI", help="tether://REPO#ENV or tether://REPO#MODEL@vX.Y.Z (KServe's storageUri)."),
    dest: str = typer.Argument(..., metavar="DEST", help="The directory to fill (KServe: /mnt/models)."),
    as_json: bool = JSON,
) -> None:
    """KServe's storage initializer for tether:// URIs: resolve the environment (or release) on
    the git remote, materialise the release with every byte verified, and write
    DEST/tether-resolved.json last. On any error: non-zero exit, nothing loadable at DEST.
    DVC credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the endpoint from
    AWS_ENDPOINT_URL or S3_ENDPOINT, another DVC remote from TETHER_DVC_REMOTE_URL, a node-wide
    object cache from TETHER_NODE_CACHE (docs/deploy.md)."""
    from tether.deploy.kserve_init import kserve_init as run

    os.environ.setdefault("GIT_TERMINAL_PROMPT", "0")  # an init container has nobody to answer a prompt
    with byte_bar("kserve-init", enabled=not as_json):
        res = run(uri, dest, cwd=global_options().chdir, progress=None if as_json else progress)
    what = f"{res['release']}" + (f" ({res['environment']})" if res.get("environment") else "")
    verb = "already held, every digest verified again" if res["outcome"] == "verified" else "materialised and verified"
    emit(res, as_json, f"{what}: {verb} in {dest} (layout {res['layout']})")


@k8s_app.command("render")
def render(
    env: str = typer.Option(..., "--env", help="The environment to render."),
    model: Optional[str] = MODEL_OPT,
    repo_url: Optional[str] = typer.Option(None, "--repo-url", metavar="URL",
                                           help="The git URL pods fetch from (default: origin's)."),
    namespace: str = typer.Option("default", "--namespace", help="The InferenceService's namespace."),
    runtime: str = typer.Option("tether", "--runtime",
                                help="tether (tether serve) or a KServe model format (sklearn, onnx, ...)."),
    name: Optional[str] = typer.Option(None, "--name", help="The object's name (default: MODEL-ENV)."),
    service_account: Optional[str] = typer.Option(None, "--service-account",
                                                  help="The pods' service account (its Secret: the S3 credentials)."),
    as_json: bool = JSON,
) -> None:
    """Print the environment's KServe InferenceService: storageUri pinned to the release it runs
    (#MODEL@vX.Y.Z), and for a canary environment its recorded weight as canaryTrafficPercent."""
    from tether.commands.k8s_render import render_environment

    res = render_environment(open_workspace(), env, model=model, repo_url=repo_url, namespace=namespace, runtime=runtime,
                             name=name, service_account=service_account)
    if as_json:
        emit({"serving": res["serving"], "manifest": res["manifest"]}, True)
    else:
        typer.echo(res["yaml"], nl=False)
