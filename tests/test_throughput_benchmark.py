"""benchmarks/throughput.py --quick: like-for-like figures, goals checked, raw results written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "throughput.py")


def test_quick_benchmark_compares_like_for_like_and_exits_by_its_goals(tmp_path):
    output = tmp_path / "throughput.json"
    env = {k: v for k, v in os.environ.items() if k != "FIFTYONE_DATABASE_NAME"}  # a database of its own

    run = subprocess.run([sys.executable, SCRIPT, "--quick", "--output", str(output)],
                         capture_output=True, text=True, env=env, timeout=1200)

    results = json.loads(output.read_text())
    missed = [name for name, goal in results["goals"].items() if not goal["met"]]
    assert run.returncode == (1 if missed else 0), run.stderr[-2000:]
    assert set(results["goals"]) == {"ratio_to_bare_sdk", "cpu_ms_per_image", "workers_2_speedup",
                                     "sample_writes_per_100", "memory_growth_mb"}
    measured = results["apis"]["generate_content"]
    assert measured["bare_sdk"]["requests"] == measured["images"] == results["arguments"]["samples"]
    assert len(measured["rounds"]) == results["arguments"]["rounds"] == 1  # --quick: one round
    assert results["goals"]["cpu_ms_per_image"]["value"] == measured["median"]["cpu_ms_per_image"]
    assert [r["workers"] for r in results["workers"]["runs"]] == [1, 2]
    machine = results["machine"]
    assert machine["cores"] and machine["python"] and machine["packages"]["google-genai"]
    assert "### goals" in run.stdout
