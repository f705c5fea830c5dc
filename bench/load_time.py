"""How long loading the default model takes, cold (dequantizing the GGUF into an empty
cache) and warm (from the cache), each in a fresh Python process.

Run: ``python bench/load_time.py [--warm-runs 2] [--cache-dir DIR]``

Each run is a subprocess, so nothing is shared through memory: it imports
``myopia.models.loading`` (torch and transformers with it), then times ``load_model`` alone.
The process wall time, imports included, is shown beside it. The goal is a cached load
under 3 s after imports. Without ``--cache-dir`` a temporary cache is used and deleted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 3.0

CHILD = """
import json, sys, time
import myopia.models.loading as L
t = time.perf_counter()
L.load_model("smollm2", cache_dir=sys.argv[1])
print(json.dumps({"load_s": time.perf_counter() - t}))
"""


def timed_load(cache_dir: Path) -> dict[str, float]:
    """Load SmolLM2 in a new process; its in-process load time and the process wall time."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(cache_dir)], capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"load failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm-runs", type=int, default=2)
    parser.add_argument(
        "--cache-dir", type=Path, help="cache to use (must be empty for a cold run)"
    )
    args = parser.parse_args()
    if args.warm_runs < 1:
        parser.error("--warm-runs must be at least 1")

    with tempfile.TemporaryDirectory(prefix="myopia-bench-") as tmp:
        cache = args.cache_dir or Path(tmp)
        if cache.exists() and any(cache.iterdir()):
            sys.exit(f"{cache} is not empty: the first run would not be cold")
        print(f"python {sys.version.split()[0]}, cache {cache}")
        runs = [("cold", timed_load(cache))]
        runs += [(f"warm {i + 1}", timed_load(cache)) for i in range(args.warm_runs)]

    print(f"{'run':8} {'load_model':>11} {'process':>9}")
    for name, r in runs:
        print(f"{name:8} {r['load_s']:10.2f}s {r['process_s']:8.2f}s")
    cold = runs[0][1]["load_s"]
    warm = max(r["load_s"] for _, r in runs[1:])  # the slowest warm run must meet the goal
    verdict = "yes" if warm < GOAL_S else "NO"
    print(f"cold / slowest warm load: {cold / warm:.1f}x")
    print(f"cached load under {GOAL_S:g} s: {verdict} ({warm:.2f} s)")


if __name__ == "__main__":
    main()
