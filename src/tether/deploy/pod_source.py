"""Where a pod's release comes from (`tether kserve-init`): the git repository a `tether://` URI
names, fetched into a scratch repository with only the refs the release needs, and the DVC
remote as the pod's environment says.

Git traffic does not grow with the registry: nothing is cloned, and no wildcard is fetched in
the usual case. For an environment, `git fetch URL refs/heads/<branch>` (git's protocol v2 sends
the ref as a `ref-prefix`, so the remote advertises that ref alone, not its thousands of tags),
then the one release tag the branch's head move names (`Tether-Release`); only a head committed
outside tether (no such trailer) falls back to the model's release tags (`refs/tags/<model>@*`),
so `tether deploy`'s own check can match its tree to a release. For a release tag, that tag
alone. GTO's assignment tags are never fetched: an environment must be one dvc.yaml configures.
"""

from __future__ import annotations

import os
from pathlib import Path

from tether.adapters.dvcstore import DvcStore
from tether.adapters.gitrepo import Git
from tether.adapters.narrowfetch import fetch_release_tags
from tether.adapters.workspace import Workspace
from tether.core.uri import RELEASE, TetherURI
from tether.errors import NotFound, StorageError

# The pod's DVC remote URL, when it is not the one the release's committed .dvc/config names (a
# mirror in the cluster's own object store, say). The pod's setting, never the release's.
REMOTE_URL_VAR = "TETHER_DVC_REMOTE_URL"
POD_REMOTE = "pod"  # the remote's name when the release's tree names none


def _fetch(git: Git, url: str, ref: str) -> bool:
    """`ref` from `url` into the same name here; False when the remote has no such ref."""
    try:
        return git.fetch_optional(url, f"+{ref}:{ref}")
    except StorageError as exc:
        raise StorageError(f"cannot fetch {ref} from {url}: {exc.message.partition(': ')[2] or exc.message}",
                           hint="check that the repository exists there and that the pod may read it "
                                "(an SSH key or HTTPS credentials mounted into the pod); nothing was written") from None


def _release_tags(ws: Workspace, url: str, model: str | None, head: str) -> None:
    """The tag the environment's head names, or (a head committed outside tether) every release
    tag of the model, for plan_source to match the head's tree against."""
    fetch_release_tags(ws.git, url, head, ws.model(model), force=True)


def _environment(ws: Workspace, url: str, env: str, model: str | None) -> None:
    """The environment's branch, checked out (dvc.yaml and the DVC config are the live
    release's own), and its release tag. The branch is `<model>/<env>` or `<env>`, tried in the
    order `tether deploy --repo` tries them; then the name dvc.yaml's settings give, if another."""
    candidates = ([f"{model}/{env}"] if model else []) + [env]
    for branch in candidates:
        if _fetch(ws.git, url, f"refs/heads/{branch}"):
            break
    else:
        raise NotFound(f"{url} has no branch for environment '{env}'",
                       hint=f"promote a release first: tether promote MODEL@vX.Y.Z --env {env} --push …")
    ws.git.checkout(f"refs/heads/{branch}", detach=True, force=True)
    real = ws.branch(ws.model(model), env)
    if real != branch:  # a branch template, or another model's <env>
        if not _fetch(ws.git, url, f"refs/heads/{real}"):
            raise NotFound(f"{url} has no branch {real} for environment '{env}'")
        ws.git.checkout(f"refs/heads/{real}", detach=True, force=True)
    _release_tags(ws, url, model, ws.git.head())


def open_source(root: Path, uri: TetherURI) -> Workspace:
    """A scratch repository at `root` (which must not exist) holding what `uri` needs, its
    work tree checked out at the environment's head or the release's commit."""
    root.mkdir(parents=True)
    git = Git(root)
    git.run("init", "-q")
    ws = Workspace(root, git)
    if uri.kind == RELEASE:
        if not _fetch(git, uri.git_url, f"refs/tags/{uri.name}"):
            raise NotFound(f"{uri.git_url} has no release tag {uri.name}",
                           hint="name a release the repository has (tether list), or an environment")
        git.checkout(f"refs/tags/{uri.name}^{{commit}}", detach=True, force=True)
    else:
        _environment(ws, uri.git_url, uri.name, uri.model)
    return ws


def endpoint_from_env(environ=os.environ) -> str | None:
    """The S3 endpoint the way KServe gives it to a storage initializer: `AWS_ENDPOINT_URL` (a
    URL), else `S3_ENDPOINT` (`host:port`, HTTPS unless `S3_USE_HTTPS` is 0 or false)."""
    url = (environ.get("AWS_ENDPOINT_URL") or "").strip()
    if url:
        return url
    host = (environ.get("S3_ENDPOINT") or "").strip()
    if not host:
        return None
    if "://" in host:
        return host
    plain = (environ.get("S3_USE_HTTPS") or "1").strip().lower() in ("0", "false", "no")
    return f"{'http' if plain else 'https'}://{host}"


def use_pod_remote(ws: Workspace, environ=os.environ) -> str:
    """Make the scratch repository's DVC remote the pod's, in its `.dvc/config.local`: the
    release's own remote (its committed config), or `TETHER_DVC_REMOTE_URL`; the endpoint from
    the pod's environment when it names one (endpoint_from_env); the cache inside the scratch
    repository whatever the release's config says. Credentials are not written anywhere: DVC's
    S3 client reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment. Returns the
    remote's URL (and endpoint), for messages."""
    store = DvcStore(ws.root)
    try:
        override = (environ.get(REMOTE_URL_VAR) or "").strip()
        try:
            name, settings = store.remote_settings()
        except StorageError:
            if not override:
                raise StorageError("the release names no DVC remote and the pod sets none",
                                   hint=f"commit a default DVC remote, or set {REMOTE_URL_VAR} in the pod") from None
            name, settings = POD_REMOTE, {}
        if override:
            settings = {"url": override}  # another remote: none of the release's settings for its own
        endpoint = endpoint_from_env(environ)
        if endpoint:
            settings = {**settings, "endpointurl": endpoint}
        store.use_remote(name, settings, own_cache=True)
    finally:
        store.close()
    where = str(settings.get("url"))
    return where + (f" at {settings['endpointurl']}" if settings.get("endpointurl") else "")
