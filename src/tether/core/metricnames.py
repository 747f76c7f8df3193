"""The Prometheus series `tether serve` writes on /metrics (tether.serve.metrics) and `tether
guard` reads back (tether.canary.scrape): one spelling of every name, label and arm, so the
writer and the reader cannot drift apart. Pure: names only."""

from __future__ import annotations

# series
RELEASE_INFO = "tether_release_info"  # gauge, 1 per serving arm
CANARY_WEIGHT = "tether_canary_weight"  # gauge, percent of /predict traffic to the canary arm
EVAL_SCORE = "tether_eval_score"  # histogram, the release's eval scores its smoke test reproduced
REQUESTS = "tether_requests_total"  # counter, by release and HTTP status
ERRORS = "tether_request_errors_total"  # counter, requests answered with a 4xx or 5xx
DURATION = "tether_request_duration_seconds"  # histogram, /predict latency in the server
SCORE = "tether_score"  # histogram, scores the model returned

# a histogram's series: NAME_bucket{…,le="B"}, NAME_sum, NAME_count
BUCKET, SUM, COUNT = "_bucket", "_sum", "_count"
INF = "+Inf"  # the last bucket's bound

# labels
RELEASE, ARM, LE, CODE = "release", "arm", "le", "code"

# the `arm` label's values (also the x-tether-arm header's) when a server runs a canary target
STABLE, CANARY = "stable", "canary"


def bucket(name: str) -> str:
    """A histogram's bucket series."""
    return name + BUCKET
