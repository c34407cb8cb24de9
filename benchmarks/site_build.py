"""Static-site build at leaderboard scale: 100 models x 30 tasks x 1,000 samples.

1. Synthesises the run directories directly (``run.json`` + ``samples/<task>.jsonl``, the
   schema of docs/run-schema.md; no model or runner involved): per-sample 0/1 scores drawn with
   a per-model skill, responses of realistic length (some with markup and non-ASCII text, so the
   escaping path is exercised), per-task accuracy with a Wilson CI in run.json, architecture
   cards with projector types, parameter counts and open/closed weights.
2. Times ``build_site`` with a 30-benchmark leaderboard definition into an empty folder (cold),
   then again into the same folder (incremental: nothing changed, every run page is skipped),
   and reports index.html's size (targets: cold build < 10 s, index.html < 3 MB; per-sample data
   live in the per-run pages, loaded separately).
3. With ``--arena N``: also times the Bradley-Terry arena over the first N benchmarks (it reads
   every per-sample score of those tasks).

    .venv/bin/python benchmarks/site_build.py [--models 100] [--tasks 30] [--samples 1000] [--keep DIR] [--arena 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mmeval.report.leaderboard import parse_leaderboard
from mmeval.report.site import build_site
from mmeval.report.store import find_runs

PROJECTORS = ["linear", "mlp", "q-former", "resampler", "cross-attention"]
GROUPS = ["perception", "reasoning", "vqa", "caption", "audio"]
RESPONSES = [
    "yes",
    "no",
    "two",
    "A",
    "a red square on a blue background",
    "<b>C</b>",
    "ünïcödé ✓ answer",
    "The answer is (B) because the image shows",
]


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def synthesise(root: Path, models: int, tasks: int, samples: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    names = [f"bench{j:02d}" for j in range(tasks)]
    hexes = [f"{k:064x}" for k in rng.integers(0, 2**62, size=samples, dtype=np.int64)]
    for i in range(models):
        run_id = f"model{i:03d}_20260101-000000"
        d = root / run_id / "samples"
        d.mkdir(parents=True)
        skill = rng.uniform(0.2, 0.9)
        results = {}
        for task in names:
            hits = rng.random(samples) < np.clip(skill + rng.normal(0, 0.05), 0, 1)
            resp = rng.integers(0, len(RESPONSES), size=samples)
            texts = [json.dumps(RESPONSES[r]) for r in resp]
            lines = [
                f'{{"doc_id": "{task}-{k:05d}", "prompt_hash": "{hexes[k]}", "target": "yes", "response": {texts[k]}, '
                f'"parsed": "yes", "extraction": "pattern", "scores": {{"accuracy": {float(hits[k]):.1f}}}, "error": null, '
                f'"cluster": "img{k // 3:05d}", "cached": false, "artifacts": []}}'
                for k in range(samples)
            ]
            (d / f"{task}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
            k = int(hits.sum())
            lo, hi = wilson(k, samples)
            metric = {
                "name": "accuracy",
                "value": k / samples,
                "n": samples,
                "stderr": None,
                "ci_low": lo,
                "ci_high": hi,
                "ci_method": "wilson",
                "n_clusters": None,
            }
            results[task] = {
                "task": task,
                "version": 1,
                "n": samples,
                "n_errors": 0,
                "n_cached": 0,
                "metrics": {"accuracy": metric},
                "extraction_rate": 1.0,
            }
        card = {
            "modality_encoder": ["CLIP ViT-L/14", "SigLIP", "EVA-CLIP", "Whisper"][i % 4],
            "input_projector": PROJECTORS[i % len(PROJECTORS)],
            "llm_backbone": f"llm-{i % 7}",
            "params": int(rng.choice([1.5e9, 7e9, 13e9, 34e9, 72e9])),
            "open_weights": bool(i % 5),
        }
        manifest = {
            "schema_version": 1,
            "run_id": run_id,
            "status": "complete",
            "finished": "2026-01-01T00:00:00+00:00",
            "model": {
                "name": f"model{i:03d}",
                "args": {},
                "card": card,
                "capabilities": {"input_modalities": ["image", "text"], "output_modalities": ["text"]},
            },
            "tasks": {task: {"n_docs": samples, "n_docs_total": samples} for task in names},
            "results": results,
        }
        (root / run_id / "run.json").write_text(json.dumps(manifest), encoding="utf-8")


def board(tasks: int, arena: int) -> dict:
    doc = {
        "name": "bench",
        "title": "Site build benchmark",
        "benchmarks": [
            {
                "task": f"bench{j:02d}",
                "metric": "accuracy",
                "label": f"Bench {j:02d}",
                "group": GROUPS[j % len(GROUPS)],
                "normalise": {"scale": 100},
            }
            for j in range(tasks)
        ],
    }
    if arena:
        doc["arena"] = {"benchmarks": [f"Bench {j:02d}" for j in range(arena)], "rounds": 100}
    return doc


def du(path: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            files += 1
            size += os.stat(os.path.join(dirpath, n)).st_size
    return files, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--arena", type=int, default=0, help="also time the arena over the first N benchmarks")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary folder, removed)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="mmeval-site-bench-"))
    runs_root, out = work / "runs", work / "site"
    for p in (runs_root, out):
        shutil.rmtree(p, ignore_errors=True)
    try:
        t0 = time.perf_counter()
        synthesise(runs_root, args.models, args.tasks, args.samples)
        t_synth = time.perf_counter() - t0
        lb = parse_leaderboard(board(args.tasks, 0), source="benchmark")
        t0 = time.perf_counter()
        runs = find_runs(runs_root)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = build_site(runs, lb, out)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = build_site(find_runs(runs_root), lb, out)
        t_warm = time.perf_counter() - t0
        files, size = du(out)
        n = args.models * args.tasks * args.samples
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"synthesised {args.models} models x {args.tasks} tasks x {args.samples} samples = {n:,} samples in {t_synth:.1f} s")
        print(f"load runs (find_runs): {t_load:.2f} s")
        print(f"build cold: {t_cold:.2f} s ({n / t_cold:,.0f} samples/s)  target < 10 s: {'met' if t_cold < 10 else 'NOT met'}")
        print(f"build again (incremental, {again['runs_written']} run pages rewritten): {t_warm:.2f} s")
        kb = summary["index_bytes"] / 1e6
        print(f"index.html: {kb:.2f} MB  target < 3 MB: {'met' if kb < 3 else 'NOT met'}")
        print(f"site: {files:,} files, {size / 1e6:.0f} MB")
        if args.arena:
            lb_arena = parse_leaderboard(board(args.tasks, args.arena), source="benchmark")
            from mmeval.report.opencompass import build_table
            from mmeval.report.site import arena_data

            table = build_table(runs, lb_arena)
            t0 = time.perf_counter()
            data, _ = arena_data(runs, lb_arena, table)
            t_arena = time.perf_counter() - t0
            n_arena = args.models * args.arena * args.samples
            print(f"arena over {args.arena} benchmarks ({n_arena:,} samples, 100 bootstrap rounds): {t_arena:.2f} s")
            print(f"  top: {data['models'][0]['model'] if data else '-'}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
