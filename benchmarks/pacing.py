"""Pacing to a hidden quota: the share of it a run uses, and the share of requests answered 429.

    python benchmarks/pacing.py              # a hidden 10 req/s quota, C = 64, L = 0.2 s, ~7 min
    python benchmarks/pacing.py --rate 20    # the issue's 20 req/s (a quiet machine carries it)
    python benchmarks/pacing.py --quick      # a shorter smoke run (not the goals' conditions)

The online pipeline annotates a dataset against the emulator behind a hidden
:class:`~gemini_annotate.emulator.Quota` (Gemini's 429 ``RESOURCE_EXHAUSTED``
with ``QuotaFailure`` and ``RetryInfo``, over a sliding one-minute window) at
``concurrency=64`` with every answer taking L = 0.2 s, so without pacing the
client could send 320 requests/s. Cases:

- ``rpm_known``: ``requests_per_minute`` set to the hidden quota.
- ``rpm_unknown``: no option: the pacer learns the quota from the 429s.
- ``tpm_known``: a tokens-per-minute quota (binding before the request
  quota), ``tokens_per_minute`` set to it.
- ``tpm_unknown``: the same quota, learned.

Each case reports, measured in one run: the share of the quota used (admitted
requests or tokens / the quota's rate × the time from the first admission to
the last) and the share of requests answered 429. The learned cases need a
client faster than the quota before it learns it: a machine under load that
sends fewer than ``--rate`` requests per second unpaced never meets the quota,
so the default rate is one a loaded 2-core machine carries. Goals (issue 13): known:
≥ 0.95 used and no 429; unknown: ≥ 0.9 used and ≤ 5 % answered 429. The
learned cases run longer than a minute: the first 429 comes once a minute's
quota is spent, and the quota is only known from then on; the requests in flight at that moment
(up to ``concurrency``) are refused once, a cost a longer run spreads thinner,
so these runs last two minutes. It exits 1 when a
goal is missed, and writes the figures to ``benchmarks/results/pacing.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

from _common import use_own_database

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
API_KEY = "benchmark-key"
REPLY = json.dumps({"boxes": [{"box_2d": [120, 80, 560, 430], "label": "person"}]})

use_own_database()  # before FiftyOne loads
os.environ["GEMINI_API_KEY"] = API_KEY

import fiftyone as fo  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import gemini_annotate  # noqa: E402
from gemini_annotate.emulator import Canned, EmulatorServer, Quota  # noqa: E402

CONCURRENCY = 64
LATENCY = 0.2
RATE = 10.0  # hidden requests per second, by default
WINDOW = 60.0  # Gemini's minute


def make_images(directory: str, count: int) -> list[str]:
    """``count`` small distinct JPEGs (258 image tokens each by Gemini's rule)."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(3)
    paths = []
    for i in range(count):
        path = os.path.join(directory, f"pace_{i:05d}.jpg")
        if not os.path.exists(path):
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path, quality=80)
        paths.append(path)
    return paths


def run_case(name: str, paths: list[str], quota: Quota, options: dict) -> dict:
    dataset = fo.Dataset(f"pacing-{name}-{uuid.uuid4().hex[:6]}")
    dataset.add_samples([fo.Sample(filepath=p) for p in paths])
    with EmulatorServer(quota, latency=LATENCY) as server:
        started = time.monotonic()
        summary = gemini_annotate.annotate(dataset, label_field="gemini", base_url=server.url,
                                           concurrency=CONCURRENCY, max_attempts=10, **options)
        elapsed = time.monotonic() - started
    usage = quota.usage()
    sent = usage["admitted"] + usage["rejected"]
    share_used = usage["tokens_share"] if quota.tokens_per_window else usage["requests_share"]
    result = {
        "case": name, "options": options, "samples": len(paths), "elapsed_seconds": round(elapsed, 1),
        "requests_per_window": quota.requests_per_window, "tokens_per_window": quota.tokens_per_window,
        "window_seconds": quota.window, "admitted": usage["admitted"], "admitted_tokens": usage["admitted_tokens"],
        "answered_429": usage["rejected"], "requests_sent": sent, "span_seconds": round(usage["seconds"], 1),
        "share_of_quota_used": round(share_used, 4), "share_answered_429": round(usage["rejected"] / sent, 4),
        "done": summary.done, "failed": summary.failed,
        "summary_requests_per_minute": summary.requests_per_minute, "summary_throttled": summary.throttled,
    }
    dataset.delete()
    return result


def goal_missed(result: dict) -> list[str]:
    misses = []
    known = result["case"].endswith("known") and not result["case"].endswith("unknown")
    least_used = 0.95 if known else 0.9
    most_429 = 0.0 if known else 0.05
    if result["share_of_quota_used"] < least_used:
        misses.append(f"used {result['share_of_quota_used']:.3f} < {least_used} of the quota")
    if result["share_answered_429"] > most_429:
        misses.append(f"{result['share_answered_429']:.3%} answered 429 > {most_429:.0%}")
    if result["failed"] or result["done"] != result["samples"]:
        misses.append(f"{result['done']} done and {result['failed']} failed of {result['samples']}")
    return misses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test)")
    parser.add_argument("--cases", default="rpm_known,rpm_unknown,tpm_known,tpm_unknown")
    parser.add_argument("--rate", type=float, default=RATE, help="the hidden quota, in requests per second")
    args = parser.parse_args()
    rate = args.rate
    scale = 0.5 if args.quick else 1.0
    requests_per_window = int(rate * WINDOW)
    rpm = int(requests_per_window * 60 / WINDOW)
    # each request: 258 image tokens and the prompt's; the token quota binds at 2/3 of the request rate
    paths = make_images(os.path.join(RESULTS_DIR, "pacing_images"), int(rate * 125 * scale))
    probe = Quota(Canned(REPLY), tokens_per_window=10**12)
    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=paths[0])])
    with EmulatorServer(probe) as server:
        gemini_annotate.annotate(dataset, label_field="gemini", base_url=server.url)
    dataset.delete()
    tokens_per_request = probe.admitted[0][1]
    tokens_per_window = int(tokens_per_request * requests_per_window * 2 / 3)
    tpm = int(tokens_per_window * 60 / WINDOW)

    cases = {
        "rpm_known": (int(rate * 60 * scale), dict(requests_per_window=requests_per_window),
                      dict(requests_per_minute=rpm)),
        "rpm_unknown": (int(rate * 120 * scale), dict(requests_per_window=requests_per_window), {}),
        "tpm_known": (int(rate * 2 / 3 * 60 * scale), dict(tokens_per_window=tokens_per_window),
                      dict(tokens_per_minute=tpm)),
        "tpm_unknown": (int(rate * 2 / 3 * 120 * scale), dict(tokens_per_window=tokens_per_window), {}),
    }
    results, failed = [], False
    for name in args.cases.split(","):
        samples, quota_options, options = cases[name]
        quota = Quota(Canned(REPLY), window=WINDOW, **quota_options)
        result = run_case(name, paths[:samples], quota, options)
        result["goal_missed"] = goal_missed(result) if not args.quick else []
        failed |= bool(result["goal_missed"])
        results.append(result)
        print(f"{name:12s} {result['samples']:5d} samples in {result['elapsed_seconds']:6.1f} s: "
              f"quota used {result['share_of_quota_used']:.3f}, answered 429 "
              f"{result['answered_429']}/{result['requests_sent']} = {result['share_answered_429']:.2%}"
              + (f"  MISSED: {'; '.join(result['goal_missed'])}" if result["goal_missed"] else ""),
              flush=True)

    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, "pacing.json"), "w") as f:
        json.dump({"concurrency": CONCURRENCY, "latency_seconds": LATENCY, "hidden_requests_per_second": rate,
                   "window_seconds": WINDOW, "tokens_per_request": tokens_per_request, "quick": args.quick,
                   "measured_under_load": True, "results": results}, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
