"""Cold-start import cost: ``import app`` in fresh interpreters vs its dependencies alone.

Prints medians over N runs and writes bench/results/cold_start.json.
Usage: python bench/cold_start.py [runs]
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNIPPET = "import time,sys; t=time.perf_counter(); {stmt}; print((time.perf_counter()-t)*1000)"
CASES = {
    "floor: boto3+pynamodb+jwt": "import boto3, pynamodb.models, jwt",
    "app.py (all handlers)": "import app",
}


def measure(stmt: str, runs: int) -> float:
    env = dict(os.environ, AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1", PYTHONDONTWRITEBYTECODE="1")
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", SNIPPET.format(stmt=stmt)], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True)
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    results = {name: round(measure(stmt, runs), 1) for name, stmt in CASES.items()}
    print(f"{'case':32} {'median ms':>10}   (runs={runs})")
    for name, ms in results.items():
        print(f"{name:32} {ms:10.1f}")
    print(f"{'app.py over floor':32} {results['app.py (all handlers)'] - results['floor: boto3+pynamodb+jwt']:10.1f}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "cold_start.json").write_text(json.dumps({"runs": runs, "median_ms": results}, indent=2))


if __name__ == "__main__":
    main()
