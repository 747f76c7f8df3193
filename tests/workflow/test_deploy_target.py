"""The deploy target cannot be fooled: `current` must be tether's own symlink into releases/,
paths in a release's records stay inside it, DIR is never empty, -C and --repo mean what they
say, and every storage failure is exit 7 with its reason. Real git, DVC and CLI processes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from project import ISOLATION, Project, clone_template, promote_to
from s3server import CREDENTIALS, free_port
from servehelp import until

V1 = "fraud-detector@v1.0.0"


def deploy(p: Project, target, *extra, cwd=None):
    return p.tether("deploy", "--env", "production", "--target", str(target), *extra, cwd=cwd)


def tree(root: Path) -> dict:
    """Every entry under root (symlinks by where they point, never followed), except the lock
    file a deploy opens before it knows whether it will refuse."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if rel == ".tether/lock":
                continue
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                st = path.stat()
                out[rel] = (st.st_size, st.st_mtime_ns, path.read_bytes() if st.st_size < 100_000 else b"")
            else:
                out[rel] = "dir"
    return out


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def deployed(template_live, tmp_path_factory):
    """v1.0.0 promoted and deployed once per module; tests work on copies of the target."""
    base = tmp_path_factory.mktemp("deployed")
    home = base / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        mp.setenv("DVC_SITE_CACHE_DIR", str(home / "dvc-site-cache"))
        for k, v in ISOLATION.items():
            mp.setenv(k, v)
        p = clone_template(template_live, base / "p")  # promote_to(p, V1), shared
        target = base / "serving"
        res = deploy(p, target)
        assert res.code == 0, res.err
    return p, target


def fresh_target(deployed, tmp_path) -> Path:
    _p, target = deployed
    copy = tmp_path / "serving"
    shutil.copytree(target, copy, symlinks=True)
    return copy


def outside_copy(target: Path, tmp_path: Path, version: str | None = None) -> Path:
    """A complete, valid-looking copy of the live release somewhere else, named like it."""
    out = tmp_path / "outside" / V1
    shutil.copytree(target / "releases" / V1, out, symlinks=True)
    if version:
        m = out / ".tether" / "manifest.json"
        data = json.loads(m.read_text())
        data["version"] = version
        m.write_text(json.dumps(data))
    return out


def relink(link: Path, to: str) -> None:
    tmp = link.with_name(".relink")
    os.symlink(to, tmp)
    os.replace(tmp, link)


def make_bad_current(kind: str, target: Path, tmp_path: Path) -> None:
    current = target / "current"
    outside = outside_copy(target, tmp_path)
    if kind == "absolute-elsewhere":
        relink(current, str(outside))
    elif kind == "dotdot":
        relink(current, os.path.relpath(outside, target))  # ../outside/<release>
    elif kind == "releases-dotdot":
        relink(current, "releases/../" + os.path.relpath(outside, target))
    elif kind == "chain-leaving-releases":
        os.symlink(str(outside), target / "releases" / "elsewhere")
        relink(current, "releases/elsewhere")
    elif kind == "partial":
        shutil.copytree(outside, target / "releases" / f"{V1}.partial", symlinks=True)
        relink(current, f"releases/{V1}.partial")
    elif kind == "plain-dir":
        current.unlink()
        shutil.copytree(outside, current, symlinks=True)
    elif kind == "plain-file":
        current.unlink()
        current.write_text(f"releases/{V1}\n")
    else:
        raise AssertionError(kind)


def serve_proc(p: Project, target, *extra, cwd, port=None, **kw):
    port = port or free_port()
    args = [sys.executable, "-m", "tether.cli", *extra, "serve", "--target", str(target), "--port", str(port),
            "--watch-interval", "0.1"]
    return port, args, dict(cwd=cwd, env=p.env(), stdin=subprocess.DEVNULL, **kw)


# -- 1. `current` -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["absolute-elsewhere", "dotdot", "releases-dotdot", "chain-leaving-releases",
                                  "partial", "plain-dir", "plain-file"])
def test_a_current_tether_did_not_make_is_refused_by_deploy_verify_and_serve(deployed, tmp_path, kind):
    p, _ = deployed
    target = fresh_target(deployed, tmp_path)
    make_bad_current(kind, target, tmp_path)
    before = tree(target)

    res = deploy(p, target)  # the release it names is the live one: must not say "already live"
    assert res.code == 6, (kind, res.code, res.out, res.err)
    assert "current" in res.err and "hint:" in res.err and f"remove {target / 'current'}" in res.err, res.err
    assert "Traceback" not in res.err
    assert tree(target) == before, "deploy changed the target it refused"

    assert deploy(p, target, "--dry-run").code == 6
    res = p.tether("verify", "--target", str(target))
    assert res.code == 6 and "current" in res.err, (kind, res.code, res.err)

    port, args, kw = serve_proc(p, target, cwd=tmp_path)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)
    assert proc.returncode == 6 and "current" in proc.stderr, (kind, proc.returncode, proc.stderr[-2000:])
    assert tree(target) == before


def test_deploy_repairs_a_current_of_its_own_shape_whose_release_is_gone(deployed, tmp_path):
    """`current -> releases/<id>` with the directory deleted is tether's own link: deploy rebuilds
    it; verify (which must not pass) says so."""
    p, _ = deployed
    target = fresh_target(deployed, tmp_path)
    shutil.rmtree(target / "releases" / V1)
    res = p.tether("verify", "--target", str(target))
    assert res.code == 6 and "does not exist" in res.err, res.err
    res = deploy(p, target)
    assert res.code == 0, res.err
    assert os.readlink(target / "current") == f"releases/{V1}"
    assert p.tether("verify", "--target", str(target)).code == 0


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_serve_never_switches_to_a_current_pointed_outside_releases(deployed, tmp_path):
    p, _ = deployed
    target = fresh_target(deployed, tmp_path)
    outside = outside_copy(target, tmp_path, version="6.6.6")  # what serving it would show
    port, args, kw = serve_proc(p, target, cwd=tmp_path)
    with open(tmp_path / "serve.log", "w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **kw)
        url = f"http://127.0.0.1:{port}"
        try:
            until(lambda: _get(url + "/version")[1].get("version") == "1.0.0", "v1.0.0 served")
            relink(target / "current", str(outside))
            body = until(lambda: (b := _get(url + "/ready")[1]).get("error") and b, "the refusal reported")
            assert body["ready"] is True and "current" in body["error"] and "releases" in body["error"], body
            for _ in range(10):  # and it keeps serving the release it had
                assert _get(url + "/version")[1]["version"] == "1.0.0"
                time.sleep(0.05)
            relink(target / "current", f"releases/{V1}")
            until(lambda: _get(url + "/ready")[1].get("error") is None, "the refusal cleared")
            assert _get(url + "/version")[1]["version"] == "1.0.0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert "refusing" in (tmp_path / "serve.log").read_text()


# -- 2. paths in the release's own records ------------------------------------------------
def _tamper(kind: str, target: Path, tmp_path: Path) -> str:
    """Point the live release's records at bytes outside it that DO match their digest, so
    only confinement can refuse them. Returns the record file named in the error."""
    root = target / "releases" / V1
    entries_file = root / ".tether" / "entries.json"
    entries = json.loads(entries_file.read_text())
    data = b"not part of the release\n"
    if kind == "dotdot":
        (target / "releases" / "escape").write_bytes(data)
        entries.append({"path": "../escape", "sha256": sha256(data), "md5": "0" * 32})
    elif kind == "absolute":
        secret = tmp_path / "secret"
        secret.write_bytes(data)
        entries.append({"path": str(secret), "sha256": sha256(data), "md5": "0" * 32})
    elif kind in ("symlinked-dir", "symlinked-file"):
        out = tmp_path / "outdir"
        out.mkdir()
        (out / "f").write_bytes(data)
        if kind == "symlinked-dir":
            os.symlink(str(out), root / "lnk")
            entries.append({"path": "lnk/f", "sha256": sha256(data), "md5": "0" * 32})
        else:
            os.symlink(str(out / "f"), root / "lnk.bin")
            entries.append({"path": "lnk.bin", "sha256": sha256(data), "md5": "0" * 32})
    elif kind == "artifact-absolute":
        manifest_file = root / ".tether" / "manifest.json"
        manifest = json.loads(manifest_file.read_text())
        bundle = tmp_path / "bundle-copy"
        shutil.copytree(root / manifest["artifact"]["path"], bundle)
        manifest["artifact"]["path"] = str(bundle)
        manifest_file.write_text(json.dumps(manifest))
        return "manifest.json"
    else:
        raise AssertionError(kind)
    entries_file.write_text(json.dumps(entries))
    return "entries.json"


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlinked-dir", "symlinked-file", "artifact-absolute"])
def test_verify_target_reads_only_inside_the_release(deployed, tmp_path, kind):
    p, _ = deployed
    target = fresh_target(deployed, tmp_path)
    assert p.tether("verify", "--target", str(target)).code == 0
    record = _tamper(kind, target, tmp_path)
    before = tree(target)
    res = p.tether("verify", "--target", str(target))
    assert res.code == 6, (kind, res.code, res.out, res.err)
    assert record in res.err and "Traceback" not in res.err, res.err
    assert tree(target) == before


# -- 3. an empty DIR ----------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["deploy", "--env", "production", "--target", ""],
    ["deploy", "--env", "production", "--target", "   "],
    ["deploy", "--env", "production", "--target", "", "--dry-run"],
    ["verify", "--target", ""],
    ["serve", "--target", ""],
])
def test_an_empty_target_is_a_usage_error_and_creates_nothing(deployed, tmp_path, args):
    p, _ = deployed
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    if args[0] == "serve":
        args = [*args, "--port", str(free_port())]
    full = [sys.executable, "-m", "tether.cli", "-C", str(p.root), *args]
    proc = subprocess.run(full, cwd=cwd, env=p.env(), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "--target" in proc.stderr, (args, proc.returncode, proc.stderr)
    assert os.listdir(cwd) == []
    assert not (p.root / "releases").exists() and not (p.root / "current").exists()


# -- 4. -C ---------------------------------------------------------------------------------
def test_dash_C_is_the_repository_and_the_base_of_a_relative_target(project_live, tmp_path):
    project = project_live  # promote_to(project, V1), shared
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    repo = os.path.relpath(project.root, elsewhere)  # -C itself relative to where we run
    res = project.tether("-C", repo, "deploy", "--env", "production", "--target", "../serving-rel", "--json",
                         cwd=elsewhere)
    assert res.code == 0, res.err
    assert res.json()["outcome"] == "deployed"
    target = project.root.parent / "serving-rel"  # outside the work tree: inside is refused
    assert os.readlink(target / "current") == f"releases/{V1}"
    assert os.listdir(elsewhere) == []
    assert project.tether("-C", repo, "verify", "--target", "../serving-rel", cwd=elsewhere).code == 0
    res = project.tether("-C", repo, "deploy", "--env", "production", "--target", "../serving-rel", "--dry-run",
                         "--json", cwd=elsewhere)
    assert res.code == 0 and res.json()["outcome"] == "would-noop", res.err
    assert os.listdir(elsewhere) == []


# -- 5. --repo -----------------------------------------------------------------------------
def preclone(p: Project, target: Path) -> Path:
    """DIR/.tether/repo as an earlier `deploy --repo ORIGIN` leaves it, with this host's DVC
    remote in .dvc/config.local (the template keeps its remote out of git)."""
    clone = target / ".tether" / "repo"
    clone.parent.mkdir(parents=True)
    p.git("clone", "-q", "--no-checkout", str(p.origin), str(clone), cwd=target.parent)
    (clone / ".dvc").mkdir()
    (clone / ".dvc" / "config.local").write_text(f"['remote \"local\"']\n    url = {p.store}\n")
    return clone


@pytest.fixture
def shipped(project_live, tmp_path):
    """production runs v1.0.0 on origin; a host deployed it with --repo ORIGIN."""
    project = project_live  # promote_to(project, V1), shared
    project.git("push", "-q", "origin", "production")
    target = tmp_path / "host"
    preclone(project, target)
    res = deploy(project, target, "--repo", str(project.origin), cwd=tmp_path)
    assert res.code == 0, res.err
    return project, target


def test_repo_must_be_the_url_the_existing_clone_came_from(shipped, tmp_path):
    p, target = shipped
    # the same repository spelled another way is the same repository
    assert deploy(p, target, "--repo", f"file://{p.origin}/", cwd=tmp_path).code == 0
    other = tmp_path / "other.git"
    p.git("clone", "-q", "--bare", str(p.origin), str(other), cwd=tmp_path)
    before = tree(target)
    for extra in ((), ("--dry-run",)):
        res = deploy(p, target, "--repo", str(other), *extra, cwd=tmp_path)
        assert res.code == 2, (extra, res.code, res.out, res.err)
        assert str(other) in res.err and str(p.origin) in res.err and "hint:" in res.err, res.err
        assert tree(target) == before


def test_dash_C_makes_a_relative_repo_path_relative_to_it(shipped, tmp_path):
    p, target = shipped
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # origin.git and host/ are both relative to -C (p.base and tmp_path are one directory up)
    res = p.tether("-C", str(tmp_path), "deploy", "--env", "production", "--target", target.name,
                   "--repo", os.path.relpath(p.origin, tmp_path), "--json", cwd=elsewhere)
    assert res.code == 0 and res.json()["outcome"] == "noop", res.err
    assert os.listdir(elsewhere) == []


def test_a_repository_gone_from_its_url_is_a_storage_error(shipped, tmp_path):
    p, target = shipped
    before = tree(target)
    p.origin.rename(p.origin.with_name("moved.git"))
    res = deploy(p, target, "--repo", str(p.origin), cwd=tmp_path)
    assert res.code == 7, (res.code, res.out, res.err)
    assert str(p.origin) in res.err and "does not appear to be a git repository" in res.err, res.err
    after = tree(target)
    assert after["current"] == before["current"]
    assert {k for k in after if k.startswith("releases/")} == {k for k in before if k.startswith("releases/")}


# -- 6. storage ----------------------------------------------------------------------------
def test_an_unreachable_dvc_remote_is_exit_7_with_the_reason(project_live, tmp_path):
    project = project_live  # promote_to(project, V1), shared
    port = free_port()  # nothing listens there
    project.dvc("remote", "modify", "--local", "local", "url", "s3://tether-nowhere/store")
    project.dvc("remote", "modify", "--local", "local", "endpointurl", f"http://127.0.0.1:{port}")
    shutil.rmtree(project.root / ".dvc" / "cache")
    target = tmp_path / "serving"
    res = project.tether("deploy", "--env", "production", "--target", str(target),
                         env={**CREDENTIALS, "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"})
    assert res.code == 7, (res.code, res.out, res.err)
    assert "unreachable" in res.err and f"127.0.0.1:{port}" in res.err and "Traceback" not in res.err, res.err
    assert not (target / "current").exists()


def _frozen_import_project(base: Path) -> tuple[Project, Project]:
    """A text classifier whose raw data is a frozen `dvc import` from another repository,
    released (the imported objects pushed to the consumer's own remote) and promoted."""
    from shapes import build_textclf, write_sources

    source = build_textclf(base / "source")
    source.dvc("push", "-q")
    p = Project(base / "consumer")
    p.root.mkdir(parents=True)
    p.git("init", "-q", "-b", "main")
    p.dvc("init", "-q")
    p.store.mkdir()
    p.dvc("remote", "add", "--local", "-f", "-d", "local", str(p.store))
    write_sources(p.root)
    shutil.rmtree(p.root / "data" / "raw")
    p.dvc("import", "-q", str(source.root), "data/raw", "-o", "data/raw")
    assert "frozen: true" in (p.root / "data" / "raw.dvc").read_text()
    p.dvc("repro", "-q")
    p.commit_all("raw data imported from the source repository")
    p.git("init", "-q", "--bare", str(p.origin))
    p.git("remote", "add", "origin", str(p.origin))
    p.git("push", "-q", "origin", "main")
    tag = p.ok("release", "--push", "--json").json()["tag"]
    promote_to(p, tag)
    return source, p


def test_a_frozen_import_whose_source_is_gone(tmp_path, monkeypatch, capsys):
    source, p = _frozen_import_project(tmp_path)
    shutil.move(source.base, tmp_path / "source-moved")  # the import's source is unreachable now
    shutil.rmtree(p.root / ".dvc" / "cache")

    # The release carries the imported objects on its own remote: deploy never needs the source.
    res = p.tether("deploy", "--env", "production", "--target", str(tmp_path / "t1"), "--full")
    assert res.code == 0, res.err
    shutil.rmtree(p.root / ".dvc" / "cache")

    # If DVC is asked to reach the source anyway, its CloneError("SCM error") is a storage
    # failure (exit 7) that says which repository and why, not "error: CloneError: SCM error".
    from dvc.scm import clone

    from tether import cli
    from tether.adapters.dvcstore import DvcStore

    def fetch_through_the_import_source(self, md5s):
        clone(str(source.root), str(tmp_path / "clone-attempt"))

    # deploy fetches the directory listings first (the files then stream from the remote)
    monkeypatch.setattr(DvcStore, "fetch_listings", fetch_through_the_import_source)
    for k, v in p.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(p.root)
    monkeypatch.setattr(sys, "argv", ["tether", "deploy", "--env", "production", "--target", str(tmp_path / "t2"),
                                      "--full"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 7, err
    assert "Failed to clone" in err and str(source.root) in err and "hint:" in err, err
    assert not (tmp_path / "t2" / "current").exists()
