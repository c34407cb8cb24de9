"""Scaling: runtime and peak memory of a whole `mmeval run` as the dataset grows.

The `constant` model on the VQA-shaped task of `benchmarks/overhead.py` at 1k, 10k and 100k
questions (by default). Each size runs in a fresh interpreter (`mmeval run` through the CLI,
imports included), so its peak RSS is that run's alone: read with `getrusage(RUSAGE_CHILDREN)`
after the child exits. Runtime is the task's own (run.json timings: load, render, generate,
score, write), beside the child's wall time (interpreter start-up and imports included).
Targets (issue 7): peak RSS at 100k <= 1.5x that at 10k (memory stays flat: samples stream
to disk), and runtime linear in n (time per 1,000 samples constant).

    .venv/bin/python benchmarks/scaling.py [--sizes 1000,10000,100000] [--batch-size 64] [--images 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import make_dataset

CHILD = """
import resource, sys, time
t0 = time.perf_counter()
from mmeval.cli import app
try:
    app(sys.argv[1:], prog_name="mmeval")
except SystemExit as exc:
    if exc.code:
        raise
print("WALL", time.perf_counter() - t0, file=sys.stderr)
"""


def run_once(task: Path, out: Path, batch_size: int, cache: bool) -> dict[str, float]:
    """One `mmeval run` in a child process; its wall time and peak RSS."""
    cmd = [sys.executable, "-c", CHILD, "run", "--model", "constant", "--model-args", "answer=red"]
    cmd += ["--tasks", str(task), "--batch-size", str(batch_size), "--output", str(out), "--json"]
    if not cache:
        cmd.append("--no-cache")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"mmeval run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux; the max over children so far
    if peak <= before:
        raise SystemExit("peak RSS did not grow past an earlier child's: run sizes in increasing order")
    result = json.loads(proc.stdout)["results"]["bench_vqa"]
    assert result["n_errors"] == 0, result["errors"]
    timings = result["timings"]
    return {"n": result["n"], "wall_s": wall, "task_s": timings["total_s"], "peak_rss_mb": peak / 1024, "stages_s": timings}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--images", type=int, default=2_000)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:  # increasing, so the children's running max RSS is this child's peak
            root = Path(tmp) / f"n{n}"
            task = make_dataset(root / "data", n, min(args.images, n))
            row = run_once(task, root / "results", args.batch_size, cache=True)
            row["task_ms_per_1k"] = row["task_s"] / n * 1e6
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    by_n = {r["n"]: r for r in rows}
    report: dict[str, object] = {
        "rows": rows,
        "batch_size": args.batch_size,
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}",
    }
    if 10_000 in by_n and 100_000 in by_n:
        report["rss_100k_over_10k"] = by_n[100_000]["peak_rss_mb"] / by_n[10_000]["peak_rss_mb"]
        report["task_time_100k_over_10k"] = by_n[100_000]["task_s"] / by_n[10_000]["task_s"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
