"""`tether k8s render --env ENV`: the environment's KServe InferenceService, from the registry.

The environment branch decides what is rendered (a move this clone has not pushed is refused,
exit 4, as deploy refuses it): its live release (`Registry.live`, the
release `tether status` names) pinned in `storageUri` as `#model@vX.Y.Z`, never the branch, so a
pod restart cannot pick up another release; for a canary environment (`meta.tether.canaries`),
the stable environment's InferenceService carrying the canary's release and its recorded weight
(`tether.core.moves.weight_of` on the environment's moves) as `canaryTrafficPercent`. GitOps
tools (Argo CD, Flux) apply what this prints; a promotion or a rollback is a new rendering.
The manifest itself is tether.core.k8s's.
"""

from __future__ import annotations

from tether.adapters.workspace import Workspace
from tether.core.k8s import TETHER_RUNTIME, Serving, render_inference_service, to_yaml
from tether.core.moves import weight_of
from tether.errors import NotFound, UsageError
from tether.registry.registry import Registry
from tether.registry.unpushed import refuse_unpushed


def _repo_url(ws: Workspace, repo_url: str | None) -> str:
    """The git URL the pods fetch: the one given, else this clone's `origin`."""
    url = repo_url or ws.git.remote_url("origin")
    if not url:
        raise UsageError("this repository has no origin; give the git URL the pods fetch from",
                         hint="--repo-url https://HOST/ORG/REPO.git (or ssh://git@HOST/ORG/REPO.git)")
    return url


def render_environment(ws: Workspace, env: str, *, model: str | None = None, repo_url: str | None = None,
                       namespace: str = "default", runtime: str = TETHER_RUNTIME, name: str | None = None,
                       service_account: str | None = None) -> dict:
    """{"serving": what was rendered, "manifest": the InferenceService, "yaml": its text}."""
    model = ws.model(model)
    reg = Registry(ws)
    # pods fetch from origin: a move only this clone holds would be rendered for a release origin's
    # branch does not name (the same refusal as deploy's)
    refuse_unpushed(reg, model, env, ws.branch(model, env), did="rendered", verb="render")
    history = reg.history(model, env)
    live = history[0] if history else None
    if live is None or not live.release or live.action == "unassign":
        raise NotFound(f"environment '{env}' of {model} has no release to render",
                       hint=f"promote one first: tether promote {model}@vX.Y.Z --env {env} …")
    stable = ws.settings(model).canaries.get(env)
    weight = weight_of(history) if stable else None
    s = Serving(repo=_repo_url(ws, repo_url), model=model, env=env, release=live.release, namespace=namespace,
                weight=weight, stable=stable, runtime=runtime, name=name, service_account=service_account)
    doc = render_inference_service(s)
    return {"serving": {**s.__dict__, "commit": live.commit}, "manifest": doc, "yaml": to_yaml(doc)}
