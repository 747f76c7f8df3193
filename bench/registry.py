"""Registry at scale, on synthetic repositories whose releases are real DVC project states with
the manifests tether attests (bench/synthetic.py): `tether list` cold (no .git/tether caches)
and warm, `tether status`, `tether history --env production`, `tether show production` and
`tether check --offline`, against `gto show` (and `history` against `gto history`) on the same repository and against the git floor
(`git for-each-ref` with the fields tether reads). Ratios are printed, not asserted.

Sizes: TETHER_BENCH_SIZES (default "1000,10000" releases, with 300 promotions per 1,000) and TETHER_BENCH_GTO_MAX (default
1000): `gto show` grows quadratically with the tag count (≈10 s at 1,300 tags, ≈36 s at 2,300,
≈200 s at 5,400 on the 2-core bench machine), so larger sizes are measured against the git
floor only. TETHER_BENCH_YEARS (default 3) spreads each history over that many years.
TETHER_BENCH_DIR_FILES (default 10000; 0 skips it) adds a registry of the first size whose every
release's raw data is a directory of that many files (a real `.dir` listing in the DVC cache),
against the git floor and against the plain registry. About
3 minutes with the defaults on an idle machine; the fuller run
`TETHER_BENCH_SIZES=1000,2000,5000 TETHER_BENCH_GTO_MAX=2000` about 5.

It also prints what feeds the manifest-size question: the average tag message (attested
manifest) in bytes, and the size of tether's caches under .git/tether after a cold list.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, ENV, OUT, Table, wall  # noqa: E402
from synthetic import MODEL, build_registry_repo, repo_stats  # noqa: E402

PROMOTIONS_PER_1000 = 300  # 3,000 promotions at 10,000 releases (issue "Performance at scale")
TETHER_FIELDS = ("%(refname)%00%(objecttype)%00%(objectname)%00%(*objectname)%00%(tree)%00%(*tree)%00"
                 "%(creatordate:iso-strict)%00%(if)%(taggername)%(then)%(taggername)%(else)%(committername)%(end)%00")


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def validate(repo: Path) -> dict:
    """The synthetic registry must be the real path: every release complete and matching."""
    proc = subprocess.run([str(BIN / "tether"), "list", "--json"], cwd=repo, env=ENV, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench: tether list failed: {proc.stderr[-500:]}")
    rows = json.loads(proc.stdout)
    kinds: dict = {}
    for r in rows:
        kinds[r["kind"] or "ok"] = kinds.get(r["kind"] or "ok", 0) + 1
    if set(kinds) != {"ok"}:
        bad = [f"{r['tag']}: {r['kind']}: {r['problem']}" for r in rows if r["kind"]][:5]
        raise SystemExit("bench: the synthetic registry has problem rows, so the benchmark would time an "
                         f"error path: {kinds}\n  " + "\n  ".join(bad))
    return {"rows": len(rows), **kinds}


def measure(n: int, tmp: Path, gto_max: int, years: float, dir_files: int = 0) -> dict:
    t0 = time.perf_counter()
    promotions = max(1, n * PROMOTIONS_PER_1000 // 1000)
    repo = build_registry_repo(tmp / f"repo-{n}-{dir_files}", releases=n, promotions=promotions, years=years,
                               dir_files=dir_files)
    built = time.perf_counter() - t0
    tags = len(subprocess.run(["git", "tag", "--list"], cwd=repo, capture_output=True, text=True, check=True).stdout.split())
    moves = sum(len(subprocess.run(["git", "log", "--first-parent", "--grep=^Tether-Action: ", "--format=%H", b], cwd=repo,
                                   capture_output=True, text=True, check=True).stdout.split())
                for b in ("staging", "production"))
    print(f"\nbuilt {n} releases ({tags} tags, {moves} moves, {years:g} years) in {built:.1f} s", flush=True)
    tether = [str(BIN / "tether")]
    cache = repo / ".git" / "tether"

    def drop() -> None:
        shutil.rmtree(cache, ignore_errors=True)

    small = n <= 2000
    r: dict = {"releases": n, "tags": tags, "moves": moves, "build_s": built, "dir_files": dir_files}
    r["floor"] = wall(["git", "for-each-ref", f"--format={TETHER_FIELDS}", "refs/tags/", "refs/heads/"], repo)
    r["floor_messages"] = wall(["git", "for-each-ref", f"--format={TETHER_FIELDS}%(contents)%00", "refs/tags/"], repo)
    r["list_cold"] = wall(tether + ["list"], repo, repeat=3 if small else 1, setup=drop)
    stats = repo_stats(repo)  # the caches one cold list leaves
    for args in (["status"], ["history", "--env", "production"], ["show", "production"]):  # as a user would first
        subprocess.run(tether + args, cwd=repo, env=ENV, capture_output=True, check=True)
    r["list_warm"] = wall(tether + ["list"], repo, repeat=5)
    r["status"] = wall(tether + ["status"], repo, repeat=5)
    r["history"] = wall(tether + ["history", "--env", "production"], repo, repeat=5)
    r["show"] = wall(tether + ["show", "production"], repo, repeat=5)
    r["version"] = wall(tether + ["--version"], repo, repeat=5)
    r["python"] = wall([sys.executable, "-c", "pass"], repo, repeat=5)
    # After one new release (a plain `git tag` on the newest release's commit): the ref state is
    # new, so the kept views miss and are recomputed from the warm ref index.
    head = subprocess.run(["git", "rev-parse", "main"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
    made: list[str] = []

    def new_tag() -> None:
        made.append(f"{MODEL}@v{999 + len(made)}.0.0")
        subprocess.run(["git", "tag", made[-1], head], cwd=repo, check=True)

    r["list_new_tag"] = wall(tether + ["list"], repo, repeat=3, setup=new_tag)
    r["status_new_tag"] = wall(tether + ["status"], repo, repeat=3, setup=new_tag)
    subprocess.run(["git", "tag", "-d", *made], cwd=repo, capture_output=True, check=True)
    r["check"] = wall(tether + ["check", "--offline"], repo, repeat=3 if small else 1)
    r["validity"] = validate(repo)
    if n <= gto_max:
        r["gto_show"] = wall([str(BIN / "gto"), "show", MODEL], repo, repeat=1)
        r["gto_history"] = wall([str(BIN / "gto"), "history", MODEL], repo, repeat=1)
    r.update(stats)
    shutil.rmtree(repo, ignore_errors=True)
    return r


def report(r: dict) -> None:
    n = r["releases"]
    gto = r.get("gto_show")
    shape = f", each with a {r['dir_files']:,}-file directory output" if r.get("dir_files") else ""
    t = Table(f"Registry {n}: {n:,} releases{shape}, {r['tags']:,} tags, {r['moves']} moves "
              "(median wall s; ratio = baseline/value)")
    limit = 0.3 if n <= 1000 else 0.5  # issue 18 at 1,000 releases, issue 13 at 10,000
    for figure, key in (("tether list (cold: no .git/tether)", "list_cold"), ("tether list (warm)", "list_warm"),
                        ("tether status", "status"), ("tether history --env production", "history"),
                        ("tether show production", "show"), ("tether check --offline (warm)", "check")):
        # each read against the matching gto command where gto ran (issue 13: at least 50x faster)
        base = (("gto history", r["gto_history"]) if key == "history" and r.get("gto_history")
                else ("gto show", gto) if gto else ("git for-each-ref", r["floor"]))
        aim = key in ("list_warm", "status", "history", "show")
        fast = not gto or base[1] >= 50 * r[key]
        t.add(figure, r[key], "s", *base, (f"<= {limit} s" + (" and >= 50x gto" if gto else "")) if aim else "",
              r[key] <= limit and fast if aim else None)
    t.add("tether list after one new tag", r["list_new_tag"], "s", "tether list (warm)", r["list_warm"])
    t.add("tether status after one new tag", r["status_new_tag"], "s", "tether status", r["status"])
    t.add("tether --version (start-up)", r["version"], "s", "python -c pass", r["python"])
    t.add("tether list (warm) vs the git floor", r["list_warm"], "s", "git for-each-ref", r["floor"])
    t.add("tether list (cold) vs for-each-ref + messages", r["list_cold"], "s", "for-each-ref+msgs", r["floor_messages"])
    if gto:
        t.add("gto show (baseline)", gto, "s")
        t.add("gto history (baseline)", r["gto_history"], "s")
    t.print()
    print(f"  valid: {r['validity']}")
    print(f"  tag messages with a manifest: {r['manifest_tags']:,}, avg {r['manifest_avg_bytes']:,.0f} B "
          f"(max {r['manifest_max_bytes']:,} B, {r['manifest_avg_disk_bytes']:,.0f} B packed), "
          f"total {_mb(r['manifest_total_bytes'])}; {r['other_annotated_tags']:,} other annotated tags")
    print(f"  .git/tether after a cold list: {_mb(r['cache_bytes'])} in {r['cache_files']:,} files "
          f"(derived/: {_mb(r['derived_bytes'])} in {r['derived_files']:,}, summary.json: {_mb(r['summary_bytes'])}); "
          f".git total {_mb(r['git_dir_bytes'])}; DVC cache objects: {r['dvc_cache_files']:,}; built in {r['build_s']:.1f} s",
          flush=True)


def main() -> None:
    sizes = [int(x) for x in os.environ.get("TETHER_BENCH_SIZES", "1000,10000").split(",") if x.strip()]
    gto_max = int(os.environ.get("TETHER_BENCH_GTO_MAX", "1000"))
    years = float(os.environ.get("TETHER_BENCH_YEARS", "3"))
    dir_files = int(os.environ.get("TETHER_BENCH_DIR_FILES", "10000"))
    results = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tether-bench-registry-") as tmp:
        for n in sizes:
            r = measure(n, Path(tmp), gto_max, years)
            report(r)
            results.append(r)
        if dir_files:  # the manifest-size question: releases whose data is a directory of many files
            big = measure(sizes[0], Path(tmp), 0, years, dir_files=dir_files)
            report(big)
            base = results[0]
            print(f"  vs the same registry without it: " + ", ".join(
                f"{k} {big[k] / base[k]:.2f}x" for k in ("list_warm", "status", "history", "show", "check")))
    if len(results) > 1:
        first = results[0]
        print(f"\nRegistry scaling (median wall s; x = vs {first['releases']:,} releases)")
        keys = ("floor", "list_cold", "list_warm", "status", "history", "show", "list_new_tag", "status_new_tag",
                "check", "version", "gto_show", "gto_history")
        print(f"  {'figure':12}" + "".join(f"{r['releases']:>16,}" for r in results))
        for k in keys:
            cells = []
            for r in results:
                v = r.get(k)
                cells.append(f"{'-':>16}" if v is None else
                             f"{v:>8.3f} ({v / first[k]:>4.1f}x)" if first.get(k) else f"{v:>16.3f}")
            print(f"  {k:12}" + "".join(cells))
    OUT.mkdir(exist_ok=True)
    (OUT / "registry-scaling.json").write_text(json.dumps(results, indent=1))
    print(f"\nregistry bench: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
