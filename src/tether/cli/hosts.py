"""Commands for serving hosts and workspaces: deploy, verify, checkout, serve, worker."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Optional

import typer

from tether.cli.base import DRY, JSON, MODEL_OPT, QUIET, chatter, global_options, open_workspace, app, byte_bar, emit
from tether.errors import UsageError

# -- serving hosts and workspaces ----------------------------------------------------------
@app.command()
def deploy(
    env: str = typer.Option(..., "--env", help="Environment whose release to serve."),
    target: str = typer.Option(..., "--target", help="Serving directory."),
    repo: Optional[str] = typer.Option(None, "--repo", help="Git URL to deploy from (default: this repo)."),
    model: Optional[str] = MODEL_OPT,
    keep: int = typer.Option(3, "--keep", help="Materialised releases to keep."),
    full: bool = typer.Option(False, "--full", help="Materialise every DVC output, data too."),
    smoke: bool = typer.Option(False, "--smoke", help="Run the smoke test before switching."),
    require_signed: bool = typer.Option(False, "--require-signed",
                                        help="Deploy only a move signed by a key in --allowed-signers."),
    allowed_signers: Optional[str] = typer.Option(None, "--allowed-signers", metavar="FILE",
                                                  help="This host's allowed signers file (git's SSH format)."),
    force: bool = typer.Option(False, "--force",
                               help="Let DIR serve this environment though it serves another (recorded in deploy.log)."),
    node_cache: Optional[str] = typer.Option(None, "--node-cache", metavar="CACHEDIR",
                                             help="The host's shared object cache: each object fetched once per host "
                                                  "(default: $TETHER_NODE_CACHE)."),
    require_attestation: Optional[str] = typer.Option(
        None, "--require-attestation", metavar="PUB",
        help="Deploy only a release attested (tether attest) with this PEM public key, its bytes as attested."),
    dry_run: bool = DRY,
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Converge DIR to the environment's release, atomically."""
    from tether.deploy.command import deploy as do_deploy
    from tether.servedir.layout import resolve_target

    resolve_target(target, global_options().chdir)  # an empty --target is a usage error, before anything else
    if repo is None:
        open_workspace()  # fail early outside a repository
    # -C names the repository, and (as in git) what a relative DIR or --repo path is relative to
    with byte_bar(f"deploying {env}", enabled=not as_json and not dry_run and not quiet):
        res = do_deploy(target, env, repo_url=repo, model=model, keep=keep, full=full, smoke=smoke,
                        dry_run=dry_run, progress=chatter(as_json, quiet), cwd=global_options().chdir,
                        require_signatures=require_signed, allowed_signers=allowed_signers, force=force,
                        node_cache=node_cache, require_attestation=require_attestation)
    if dry_run:
        emit({"dry_run": True, **res.as_dict()}, as_json,
             f"{env}: {res.outcome.replace('would-', 'would ')} {res.release} in {target} (live: {res.previous or 'nothing'})")
        return
    text = {"noop": f"{env}: {res.release} is already live in {target}",
            "switched": f"{env}: switched {target}/current {res.previous} → {res.release} (already materialised)",
            "deployed": f"{env}: deployed {res.release} to {target} (was {res.previous or 'empty'})"}[res.outcome]
    if res.pruned and not quiet:
        text += f"\npruned: {', '.join(res.pruned)}"
    emit(res.as_dict(), as_json, text)


@app.command()
def verify(
    ref: Optional[str] = typer.Argument(None, help="A release to verify from the cache or remote."),
    target: Optional[str] = typer.Option(None, "--target", help="Verify DIR/current instead."),
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Recompute every digest against the manifest."""
    if (ref is None) == (target is None):
        raise UsageError("give a REF or --target DIR (one of them)")
    if target is not None:  # `--target ""` is refused, not taken for "no target"
        from tether.deploy.verify import verify_target

        with byte_bar("verifying", enabled=not as_json and not quiet):
            res = verify_target(target, cwd=global_options().chdir)
    elif ref is not None:
        from tether.commands.checkout import verify_release

        with byte_bar(f"verifying {ref}", enabled=not as_json and not quiet):
            res = verify_release(open_workspace(), ref, model, progress=chatter(as_json, quiet))
    emit(res, as_json, f"{res['release']}: {res['files']} file(s), every digest matches")


@app.command()
def checkout(
    ref: str = typer.Argument(..., help="model@vX.Y.Z, model@latest, an environment, or a local branch (main)."),
    model: Optional[str] = MODEL_OPT,
    force: bool = typer.Option(False, "--force", help="Discard uncommitted work."),
    dry_run: bool = DRY,
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Safe `git checkout` + `dvc pull`: all of the release, or nothing changes. A release or an
    environment leaves HEAD detached (a commit then moves no environment); `tether checkout main`
    goes back to a branch."""
    from tether.commands.checkout import checkout as do_checkout

    with byte_bar(f"checking out {ref}", enabled=not as_json and not dry_run and not quiet):
        res = do_checkout(open_workspace(), ref, model=model, force=force, dry_run=dry_run,
                          progress=chatter(as_json, quiet))
    what = res.release or f"branch {res.ref}"
    if res.release and res.ref != res.release:
        what = f"{res.release} ({res.ref})"
    if dry_run:
        emit({"dry_run": True, **res.as_dict()}, as_json,
             f"would check out {what} at {res.commit[:12]} with {len(res.outputs)} output(s); nothing changed")
        return
    text = f"checked out {what} at {res.commit[:12]}; {len(res.outputs)} output(s) in place"
    if res.detached and not quiet:
        text += (f"\nHEAD is detached: a commit here moves no branch and no environment "
                 f"(keep one with git switch -c NAME). Back: {res.way_back}")
    emit(res.as_dict(), as_json, text)


@app.command()
def serve(
    target: str = typer.Option(..., "--target", help="Serving directory (see deploy)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    watch_interval: float = typer.Option(1.0, "--watch-interval", help="Seconds between checks of current."),
    max_body: int = typer.Option(1 << 20, "--max-body-bytes", help="Largest /predict body accepted (413 above)."),
    canary_target: Optional[str] = typer.Option(
        None, "--canary-target", help="The canary environment's serving directory, served at its recorded weight."),
    target_wait: float = typer.Option(300.0, "--target-wait", metavar="SECONDS",
                                      help="How long a missing --target DIR may take to appear (exit 3 after)."),
    model_name: Optional[str] = typer.Option(
        None, "--model-name", metavar="NAME",
        help="Another name the v2 protocol answers to (KServe: the InferenceService's, {{.Name}})."),
    require_attestation: Optional[str] = typer.Option(
        None, "--require-attestation", metavar="PUB",
        help="Load only releases deployed with --require-attestation whose attestation this PEM public key signed."),
) -> None:
    """HTTP service over DIR/current, one worker process per release: POST /predict, GET /ready,
    /version, /metrics. With --canary-target, a traffic split by request key (header X-Tether-Key
    or the body's `key`), at random without one."""
    from tether.extras import require

    require("serve", "tether serve")
    from tether.servedir.layout import resolve_target
    from tether.serve.app import run

    if max_body < 1:
        raise UsageError("--max-body-bytes must be at least 1")
    if not target_wait >= 0:
        raise UsageError(f"--target-wait must be 0 or more seconds, not {target_wait}")
    if model_name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}", model_name):
        raise UsageError(f"--model-name {model_name[:60]!r} is not a model name",
                         hint="letters, digits, '.', '_' and '-' (a KServe InferenceService's name is one)")
    if require_attestation is not None:  # every worker of this server checks it before it loads a release
        import os

        from tether.runtime.attestguard import ENV

        pub = Path(global_options().chdir) / require_attestation
        if not pub.is_file():
            raise UsageError(f"--require-attestation {require_attestation}: no such file")
        os.environ[ENV] = str(pub.absolute())
    run(resolve_target(target, global_options().chdir), host, port, watch_interval, max_body,
        resolve_target(canary_target, global_options().chdir) if canary_target is not None else None, target_wait,
        model_name)


@app.command("worker", hidden=True)
def worker(
    target: str = typer.Option(..., "--target", help="The serving directory."),
    release: str = typer.Option(..., "--release", help="The release directory it serves."),
    smoke_eval: Optional[str] = typer.Option(None, "--smoke-eval", help="Run the smoke test on this eval slice."),
    once: bool = typer.Option(False, "--once", help="Stop after the ready line (the promote smoke gate)."),
    lower: bool = typer.Option(False, "--lower", help="Verify and load at a lower CPU priority."),
) -> None:
    """One release's worker process, started by `tether serve` (protocol: tether.runtime.worker)."""
    from tether.runtime.worker import run as run_worker

    code = run_worker(Path(target), Path(release), smoke_eval, once, lower)
    if code:
        sys.exit(code)


@app.command("zygote", hidden=True)
def zygote(fd: int = typer.Option(..., "--fd", help="The socket it was handed by `tether serve`.")) -> None:
    """The server's zygote: imports the workers' libraries once and forks each worker (tether.runtime.zygote)."""
    from tether.runtime.zygote import run as run_zygote

    code = run_zygote(fd)
    if code:
        sys.exit(code)

