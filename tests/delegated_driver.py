"""Runs the FiftyOne side of the delegated-sharding test in a database of its own.

The delegated executor (``fiftyone delegated launch``) runs every queued
operation of its database, so the test gives its workers a private database
(``FIFTYONE_DATABASE_NAME``), and this script, started with the same
environment, prepares and inspects it::

    python delegated_driver.py setup NAME IMAGE_DIR BASE_URL NUM_SHARDS   -> queued op ids (JSON),
                                                                           through the CLI
    python delegated_driver.py inspect NAME                                -> samples and summary (JSON)
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import sys

import fiftyone as fo

from gemini_annotate import cli, load_run_summary


def setup(name: str, image_dir: str, base_url: str, num_shards: int) -> dict:
    """Creates the dataset and queues the shards with ``gemini-annotate annotate --queue-shards``."""
    dataset = fo.Dataset(name, persistent=True)
    dataset.add_samples([fo.Sample(filepath=p) for p in sorted(glob.glob(os.path.join(image_dir, "*.jpg")))])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["annotate", name, "--label-field", "gemini", "--base-url", base_url,
                         "--concurrency", "4", "--queue-shards", str(num_shards), "--quiet"])
    if code != 0:
        raise SystemExit(f"queueing failed ({code}): {out.getvalue()}")
    return {"ops": [line.split(": ")[1] for line in out.getvalue().splitlines() if line.startswith("  shard ")]}


def inspect(name: str) -> dict:
    dataset = fo.load_dataset(name)
    ids, paths, statuses, labels = dataset.values(["id", "filepath", "gemini_status", "gemini.detections.id"])
    summary = load_run_summary(dataset, "gemini")
    return {
        "samples": [
            {"id": i, "filepath": p, "status": s, "label_ids": l}
            for i, p, s, l in zip(ids, paths, statuses, labels)
        ],
        "summary": summary.to_dict() if summary else None,
        "runs": dataset.list_runs(),
    }


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "setup":
        out = setup(args[0], args[1], args[2], int(args[3]))
    elif command == "inspect":
        out = inspect(args[0])
    else:
        raise SystemExit(f"unknown command {command!r}")
    print("RESULT " + json.dumps(out))
