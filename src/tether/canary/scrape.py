"""`tether guard`'s reader of a server's /metrics: fetch it (stdlib urllib, http(s) only) and
parse Prometheus' text format into the per-arm counters tether.core.guard decides on. The
server is another process, possibly another host: what it reports is untrusted input, and a
value that cannot be true for the guarded release is a BadSample (a failed observation), never
a number the guard acts on. The series are the ones tether.serve.metrics writes, spelled once
in tether.core.metricnames.
"""

from __future__ import annotations

import math
import re
import urllib.error
import urllib.request

from tether.core import metricnames as mn
from tether.core.guard import Arm
from tether.errors import NotFound, UsageError

_LINE = re.compile(r'^([a-zA-Z_:][\w:]*)\{(.*)\}\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def check_url(url: str) -> str:
    """`url` if it is a server's http(s):// address (never a file:// or other scheme urllib
    would open); UsageError otherwise."""
    if not re.match(r"^https?://[^/\s]+", url or ""):
        raise UsageError(f"--url must be the server's http:// address, not {url[:80]!r}")
    return url


def scrape(url: str, timeout: float = 10.0) -> str:
    check_url(url)
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as r:
            return r.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise NotFound(f"no metrics from {url}: {exc}", hint="is `tether serve` running there?") from None


class BadSample(ValueError):
    """The server's /metrics for the guarded release cannot be true: a failed observation."""


def parse(text: str) -> list[tuple[str, dict, float]]:
    """(name, labels, value) per sample line; a value that is no number is NaN (refused by
    `_count` if it is one of the guarded release's series, ignored otherwise)."""
    out = []
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m:
            try:
                value = float(m.group(3))
            except ValueError:
                value = math.nan
            out.append((m.group(1), dict(_LABEL.findall(m.group(2))), value))
    return out


def _count(name: str, labels: dict, value: float) -> int:
    """A counter's value as the whole number of events it must be; BadSample otherwise."""
    if not math.isfinite(value) or value < 0 or value != int(value):
        shown = ",".join(f'{k}="{v}"' for k, v in labels.items())
        raise BadSample(f"the server reports {name}{{{shown}}} = {value:g}, not a count")
    return int(value)


def _cumulative(name: str, buckets: list[tuple[float, int]]) -> list[tuple[float, int]]:
    out = sorted(buckets)
    if any(b[1] < a[1] for a, b in zip(out, out[1:])):
        raise BadSample(f"the server's {name} falls from one bucket to the next (a histogram's buckets are cumulative)")
    return out


def _rows(rows, name: str, release: str, arm: str | None):
    return [(lab, v) for n, lab, v in rows if n == name and lab.get(mn.RELEASE) == release and lab.get(mn.ARM) == arm]


def _per_bucket(cumulative: list[tuple[float, int]]) -> tuple[int, ...]:
    out, prev = [], 0
    for _b, c in sorted(cumulative):
        out.append(c - prev)
        prev = c
    return tuple(out)


def _bound(text: str | None) -> float:
    try:
        bound = math.inf if text == mn.INF else float(text or "")
    except ValueError:
        bound = math.nan
    if math.isnan(bound):
        raise BadSample(f"the server reports a histogram bucket with le={text!r}, not a number")
    return bound


def _counts(rows, name: str, release: str, arm: str | None) -> list[tuple[dict, int]]:
    return [(lab, _count(name, lab, v)) for lab, v in _rows(rows, name, release, arm)]


def _hist(rows, name: str, release: str, arm: str | None) -> list[tuple[float, int]]:
    return _cumulative(name, [(_bound(lab.get(mn.LE)), c) for lab, c in _counts(rows, name, release, arm)])


def arm_of(rows, release: str, arm: str | None) -> Arm:
    """One arm's cumulative counters for `release` from parsed /metrics; BadSample when they
    cannot be true (a counter +Inf, NaN, negative or fractional, a histogram that falls, more
    errors than requests)."""
    reqs = sum(c for _l, c in _counts(rows, mn.REQUESTS, release, arm))
    errs = sum(c for _l, c in _counts(rows, mn.ERRORS, release, arm))
    if errs > reqs:
        raise BadSample(f"the server reports {errs} errors of {reqs} requests for {release}")
    lat = tuple(_hist(rows, mn.bucket(mn.DURATION), release, arm))
    sc = _hist(rows, mn.bucket(mn.SCORE), release, arm)
    return Arm(release, reqs, errs, lat, _per_bucket(sc) if sc else ())


def eval_of(rows, release: str, arm: str | None) -> tuple[int, ...]:
    sc = _hist(rows, mn.bucket(mn.EVAL_SCORE), release, arm)
    return _per_bucket(sc) if sc else ()


def lone_arm(rows) -> str | None:
    """The arm one environment guarded alone is served on: "stable" on a server that also runs
    a canary target (every series then carries `arm`), else none."""
    return mn.STABLE if any(lab.get(mn.ARM) for _n, lab, _v in rows) else None


def served(rows, arm: str | None) -> tuple[str | None, int | None]:
    """(release id, weight) the server reports for an arm."""
    rel = next((lab.get(mn.RELEASE) for n, lab, _v in rows if n == mn.RELEASE_INFO and lab.get(mn.ARM) == arm), None)
    w = next((_count(n, lab, v) for n, lab, v in rows if n == mn.CANARY_WEIGHT and lab.get(mn.ARM) == arm), None)
    return rel, w
