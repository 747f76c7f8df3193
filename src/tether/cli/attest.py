"""`tether attest`: sign a release's provenance and model signature, or verify and export them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tether.cli.base import JSON, MODEL_OPT, app, emit, global_options, open_workspace, progress
from tether.errors import UsageError


@app.command()
def attest(
    ref: str = typer.Argument(..., help="model@vX.Y.Z, model@latest, or an environment."),
    key: Optional[str] = typer.Option(None, "--key", metavar="KEY",
                                      help="PEM EC private key (P-256) to sign with; model_signing's format."),
    push: bool = typer.Option(False, "--push", help="Push the attestation note to origin."),
    verify: bool = typer.Option(False, "--verify", help="Verify the release's attestation instead."),
    public_key: Optional[str] = typer.Option(None, "--public-key", metavar="PUB",
                                             help="PEM public key the attestation must be signed by (--verify)."),
    out: Optional[str] = typer.Option(None, "--out", metavar="DIR",
                                      help="With --verify: write DIR/provenance.json and DIR/model.sig."),
    rehash: bool = typer.Option(False, "--rehash",
                                help="With --verify: fetch and rehash the artifact's files, not only the digests "
                                     "the release pins."),
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON,
) -> None:
    """Sign a release's in-toto SLSA provenance and its OpenSSF model signature (model.sig) as a
    git note on its commit; with --verify, check both against a public key and export them."""
    from tether.commands import attest as cmd

    where = Path(global_options().chdir)
    if verify:
        if public_key is None or key is not None or push:
            raise UsageError("--verify takes --public-key PUB (and --out DIR), not --key or --push")
        res = cmd.verify(open_workspace(), ref, where / public_key, model=model,
                         out=where / out if out is not None else None, rehash=rehash,
                         progress=None if as_json else progress)
        text = f"{res.release}: attestation verified (key SHA-256 {res.key[:16]}…), {len(res.subjects)} file(s) match"
        for path in res.exported:
            text += f"\nwrote {path}"
        emit(res.as_dict(), as_json, text)
        return
    if key is None or public_key is not None or out is not None or rehash:
        raise UsageError("give --key KEY to attest, or --verify --public-key PUB [--out DIR] to verify")
    res = cmd.attest(open_workspace(), ref, where / key, model=model, push=push,
                     progress=None if as_json else progress)
    said = {"attested": "attested", "already-attested": "already attested (same statement, same key)"}[res.outcome]
    text = (f"{res.release}: {said}; {len(res.subjects)} file(s) of {res.commit[:12]}, "
            f"key SHA-256 {res.key[:16]}…" + ("\npushed refs/notes/tether-attest to origin" if res.pushed else ""))
    emit(res.as_dict(), as_json, text)
