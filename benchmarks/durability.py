"""Durability: a run SIGKILLed halfway loses at most about 2 s of answered work, and resumes exactly.

    python benchmarks/durability.py               # 800 samples, C = 32, L = 0.2 s (at most 160 answers/s)
    python benchmarks/durability.py --quick       # 400 samples

For each resume policy measured (``skip``, and ``overwrite`` over a dataset
already labeled by an earlier run), a real ``gemini-annotate annotate``
process runs against the emulator, which runs in this process so that its
request log outlives the kill: each record says when the emulator answered
which image. Once half of the samples are answered, the process is SIGKILLed.
Then, in the same run of this script:

- every sample answered more than ``MAX_AGE`` (+ slack) before the kill is
  saved (for ``overwrite``: stamped by the run's attempt);
- running the same command again sends nothing for the saved samples, and
  sends each lost one exactly once more;
- each sample ends labeled exactly once (status ``ok``, its three boxes, the
  saved ones untouched).

Figures are printed and written to ``benchmarks/results/durability.json``; the
exit status is non-zero when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Optional

from _common import use_own_database

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
API_KEY = "benchmark-key"
REPLY = json.dumps({"boxes": [
    {"box_2d": [100, 100, 400, 400], "label": "cat"},
    {"box_2d": [500, 500, 900, 900], "label": "dog"},
    {"box_2d": [0, 0, 200, 300], "label": "bird"},
]})
MIN_RATE = 50.0
"""Answers per second the run must reach for the figures to count (the issue's floor)."""
SLACK = 0.5
"""Seconds allowed beyond the writer's MAX_AGE: the bulk write itself, and the reply's way back."""

use_own_database()  # before FiftyOne loads
os.environ["GEMINI_API_KEY"] = API_KEY


def write_images(directory: str, count: int) -> dict[str, str]:
    """``count`` distinct small JPEGs (sent as they are); returns ``{path: the emulator's digest}``."""
    import numpy as np
    from PIL import Image

    from gemini_annotate.emulator.server import image_digest

    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(11)
    digests = {}
    for i in range(count):
        pixels = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
        path = os.path.join(directory, f"durability_{i:05d}.jpg")
        Image.fromarray(pixels).save(path, quality=85)
        with open(path, "rb") as f:
            digests[path] = image_digest(f.read())
    return digests


def annotate_command(dataset_name: str, url: str, concurrency: int, policy: str) -> list[str]:
    return [sys.executable, "-m", "gemini_annotate.cli", "annotate", dataset_name, "--label-field", "gemini",
            "--concurrency", str(concurrency), "--base-url", url, "--if-labeled", policy, "--quiet"]


def answered(server, since: float) -> dict[str, float]:
    """``{image digest: when the emulator answered it}`` for the successful answers since ``since``."""
    with server._lock:
        records = list(server.records)
    return {r.image_digest: r.time for r in records if r.time >= since and r.status == 200 and r.image_digest}


def kill_halfway(command: list[str], server, count: int, since: float) -> tuple[float, dict[str, float]]:
    """Runs ``command`` and SIGKILLs it once half the samples are answered; returns when, and the answers."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while len(answered(server, since)) < count // 2:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the run ended or stalled before halfway: {process.communicate()[0]!r}")
            time.sleep(0.01)
        killed_at = time.time()
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()
    while server.in_flight:
        time.sleep(0.05)
    return killed_at, answered(server, since)


def scenario(policy: str, count: int, concurrency: int, latency: float, images: str) -> dict:
    """One kill-and-resume run; returns its figures and whether each goal was met."""
    import fiftyone as fo

    from gemini_annotate.emulator import Canned, EmulatorServer
    from gemini_annotate.vocabulary import attempt_field
    from gemini_annotate.writer import MAX_AGE

    digests = write_images(images, count)
    dataset = fo.Dataset(f"durability-{policy}-{uuid.uuid4().hex[:8]}")
    dataset.persistent = True  # the annotate process opens it by name
    dataset.add_samples([fo.Sample(filepath=p) for p in digests])
    digest_of = {sid: digests[path] for sid, path in zip(*dataset.values(["id", "filepath"]))}
    server = EmulatorServer(Canned(REPLY), latency=latency).start()  # the killed client's resets pass quietly
    try:
        if policy == "overwrite":  # something to overwrite: a finished earlier run of the key
            subprocess.run(annotate_command(dataset.name, server.url, 32, "skip"), check=True,
                           stdout=subprocess.DEVNULL)
        dataset.reload()
        before = dataset.values("gemini.detections.id") if policy == "overwrite" else []
        since = time.time()
        command = annotate_command(dataset.name, server.url, concurrency, policy)
        killed_at, answers = kill_halfway(command, server, count, since)
        times = sorted(answers.values())
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0

        dataset.reload()
        if policy == "overwrite":
            saved_view = dataset.exists(attempt_field("gemini"))
        else:
            saved_view = dataset.exists("gemini_status")
        # killed before the first write (a short run, a fast machine): the field does not exist yet
        saved = dict(zip(*saved_view.values(["id", "gemini.detections.id"]))) if dataset.has_field("gemini") else {}
        saved_digests = {digest_of[sid] for sid in saved}
        cutoff = killed_at - MAX_AGE - SLACK
        lost_old = [d for d, t in answers.items() if t < cutoff and d not in saved_digests]
        unsaved_ages = [killed_at - t for d, t in answers.items() if d not in saved_digests]

        resumed_since = time.time()
        resume = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        with server._lock:
            resent_counts: dict[str, int] = {}
            for r in server.records:
                if r.time >= resumed_since and r.image_digest:
                    resent_counts[r.image_digest] = resent_counts.get(r.image_digest, 0) + 1
        dataset.reload()
        ids, statuses, labels = dataset.values(["id", "gemini_status", "gemini.detections.id"])
        labeled_once = all(status == "ok" and labels_ and len(labels_) == 3
                           for status, labels_ in zip(statuses, labels))
        saved_untouched = all(labels_ == saved[sid] for sid, labels_ in zip(ids, labels) if sid in saved)
        resent_saved = sorted(saved_digests & set(resent_counts))
        unsaved = set(digest_of.values()) - saved_digests
        each_unsaved_once = all(resent_counts.get(d) == 1 for d in unsaved)
        replaced = sum(1 for old, new in zip(before, labels) if old and old != new) if policy == "overwrite" else None
    finally:
        server.stop()
        dataset.delete()

    figures = {
        "policy": policy, "samples": count, "concurrency": concurrency, "latency_s": latency,
        "answers_per_s": round(rate, 1), "answered_before_kill": len(answers), "saved_before_kill": len(saved),
        "answered_not_saved": len(answers) - len(saved_digests & set(answers)),
        "oldest_unsaved_answer_age_s": round(max(unsaved_ages), 3) if unsaved_ages else 0.0,
        "lost_older_than_cutoff": len(lost_old), "cutoff_s": MAX_AGE + SLACK,
        "resume_exit_code": resume.returncode, "resume_requests": sum(resent_counts.values()),
        "resent_saved_samples": len(resent_saved), "unsaved_sent_exactly_once": each_unsaved_once,
        "each_sample_labeled_once": labeled_once, "saved_labels_untouched": saved_untouched,
        "labels_replaced_by_overwrite": replaced,
    }
    figures["goals"] = {
        f"rate >= {MIN_RATE:g} answers/s": rate >= MIN_RATE,
        "nothing answered > cutoff before the kill is lost": not lost_old,
        "resume sends nothing saved": not resent_saved,
        "resume sends each lost sample once": each_unsaved_once,
        "each sample ends labeled exactly once": labeled_once and saved_untouched and resume.returncode == 0,
    }
    if policy == "overwrite":
        figures["goals"]["every earlier label overwritten"] = replaced == count
    return figures


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="400 samples instead of 800")
    parser.add_argument("--samples", type=int)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--policies", nargs="+", default=["skip", "overwrite"])
    args = parser.parse_args(argv)
    count = args.samples or (400 if args.quick else 800)
    images = os.path.join(RESULTS_DIR, "durability_images")
    results = []
    for policy in args.policies:
        figures = scenario(policy, count, args.concurrency, args.latency, images)
        results.append(figures)
        print(f"\n== if_labeled={policy}: {count} samples, C={args.concurrency}, L={args.latency} s ==")
        for key, value in figures.items():
            if key != "goals":
                print(f"  {key:32s} {value}")
        for goal, met in figures["goals"].items():
            print(f"  [{'ok' if met else 'MISSED'}] {goal}")
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, "durability.json"), "w") as f:
        json.dump({"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": results}, f, indent=2)
    missed = [goal for r in results for goal, met in r["goals"].items() if not met]
    if missed:
        print(f"\nMISSED: {'; '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
