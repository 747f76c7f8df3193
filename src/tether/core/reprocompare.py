"""What `tether reproduce` concludes: outputs rebuilt from a release's commit against its manifest,
part by part, and the runtime then against the runtime now. Pure: the facts come in, verdicts go out.

A part is "identical", "differs", or "not-recorded" (the release holds nothing to compare with,
e.g. no predictions digest); a release reproduces when no part differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The role derive.py gives a file under the model artifact -> the part it belongs to.
_PART_OF_ROLE = {"threshold": "threshold", "metrics": "metrics"}
PARTS = ("weights", "data", "threshold", "metrics", "predictions")


@dataclass(frozen=True)
class OutputCheck:
    """One DVC output of the release, rebuilt: `expected`/`actual` are digests of one `kind`
    (sha256 when the manifest records it, else DVC's md5); `files` names what differs inside."""

    path: str
    part: str
    kind: str
    expected: str | None
    actual: str | None
    files: tuple[str, ...] = ()

    @property
    def identical(self) -> bool:
        return self.expected is not None and self.expected == self.actual

    def as_dict(self) -> dict:
        return {"path": self.path, "part": self.part, "digest": self.kind, "expected": self.expected,
                "actual": self.actual, "identical": self.identical, "differing_files": list(self.files)}


@dataclass(frozen=True)
class PartVerdict:
    part: str
    state: str  # identical | differs | not-recorded
    files: tuple[str, ...] = ()  # what differs (paths, or metric keys)
    detail: str = ""

    def as_dict(self) -> dict:
        return {"state": self.state, "differing": list(self.files), "detail": self.detail}


@dataclass(frozen=True)
class Verdict:
    parts: dict[str, PartVerdict]
    runtime: list[str] = field(default_factory=list)  # one line per difference

    @property
    def identical(self) -> bool:
        return all(v.state != "differs" for v in self.parts.values())

    def differing(self) -> list[str]:
        return [p for p, v in self.parts.items() if v.state == "differs"]


def part_of(entry: dict, weights: bool) -> str:
    if not weights:
        return "data"
    return _PART_OF_ROLE.get(entry.get("role") or "model", "weights")


def digest_kind(entry: dict) -> str:
    return "sha256" if entry.get("sha256") else "md5"


def listing_diff(expected: list[dict] | None, actual: list[dict] | None, prefix: str) -> tuple[str, ...]:
    """The files of a directory output that differ, by DVC listing (relpath -> md5): changed,
    added or removed. With a listing unknown, the directory itself is named."""
    if expected is None or actual is None:
        return (prefix + "/",)
    a = {e["relpath"]: e["md5"] for e in expected}
    b = {e["relpath"]: e["md5"] for e in actual}
    return tuple(f"{prefix}/{rel}" for rel in sorted(set(a) | set(b)) if a.get(rel) != b.get(rel))


def _numbers(values: dict) -> dict:
    return {k: v for k, v in (values or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def metric_diff(recorded: dict, reproduced: dict | None) -> tuple[str, ...]:
    """`key: recorded → reproduced` for every numeric metric both sides hold that is not equal."""
    if reproduced is None:
        return ()
    a, b = _numbers(recorded), _numbers(reproduced)
    return tuple(f"{k}: {a[k]} → {b[k]}" for k in sorted(set(a) & set(b)) if a[k] != b[k])


def runtime_diff(recorded: dict, current: dict) -> list[str]:
    """Python and every package version that differ between the release's runtime and now;
    nothing when the release recorded no runtime (there is nothing to hold it to)."""
    if not recorded.get("python") and not recorded.get("packages"):
        return []
    out = []
    if recorded.get("python") and current.get("python") and recorded["python"] != current["python"]:
        out.append(f"python {recorded['python']} → {current['python']}")
    ra, ca = recorded.get("packages") or {}, current.get("packages") or {}
    for name in sorted(set(ra) | set(ca)):
        if ra.get(name) != ca.get(name):
            out.append(f"{name} {ra.get(name) or '(absent)'} → {ca.get(name) or '(absent)'}")
    return out


def decide(checks: list[OutputCheck], manifest: dict, reproduced_metrics: dict | None,
           reproduced_threshold, runtime: list[str]) -> Verdict:
    """Part verdicts from the per-output checks, plus the values the manifest records (threshold,
    metrics, predictions digest) against the reproduced ones."""
    parts: dict[str, PartVerdict] = {}
    for part in ("weights", "data", "threshold", "metrics"):
        mine = [c for c in checks if c.part == part]
        bad = tuple(f for c in mine if not c.identical for f in (c.files or (c.path,)))
        if part == "threshold":
            want = (manifest["components"].get("threshold") or {}).get("value")
            if reproduced_threshold is not None and want != reproduced_threshold:
                bad += (f"value: {want} → {reproduced_threshold}",)
            if not mine and reproduced_threshold is None:
                parts[part] = PartVerdict(part, "identical", (), "from params.yaml at the release commit")
                continue
        if part == "metrics":
            bad += metric_diff(manifest.get("metrics") or {}, reproduced_metrics)
            if not mine and reproduced_metrics is None:
                parts[part] = PartVerdict(part, "not-recorded", (), "no metrics file under the model artifact")
                continue
        n = len(mine)
        parts[part] = PartVerdict(part, "differs" if bad else "identical", bad,
                                  f"{n} output(s)" if n else "recorded values")
    want = (manifest.get("metrics") or {}).get("predictions_sha256") or manifest.get("predictions_sha256")
    got = (reproduced_metrics or {}).get("predictions_sha256")
    if not want:
        parts["predictions"] = PartVerdict("predictions", "not-recorded", (), "the release records no predictions_sha256")
    elif got == want:
        parts["predictions"] = PartVerdict("predictions", "identical", (), f"predictions_sha256 {str(want)[:16]}…")
    else:
        parts["predictions"] = PartVerdict("predictions", "differs", (f"predictions_sha256: {want} → {got}",),
                                           f"predictions_sha256 {str(want)[:16]}…")
    return Verdict(parts, runtime)
