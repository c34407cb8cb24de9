"""Data-parallel speed-up: the same samples with 1 rank and with 2+ ranks (torchrun), end to end.

A randomly initialised LLaVA-1.5 (``--shape 7b`` on GPUs; ``--shape small`` for a CPU check of
the script) is built as in ``benchmarks/hf_throughput.py`` and saved as a checkpoint; then
``mmeval run --model hf-llava`` answers ``--n`` VQA-shaped questions, first in one process, then
under ``torchrun --nproc-per-node R`` for each R in ``--ranks``, no response cache. The time
compared is the task's time in run.json (rank 0: its own share, waiting for the other ranks,
merging and scoring; model loading excluded), and the command's wall time beside it. The merged
samples are checked identical to the 1-rank run's.

    .venv/bin/python benchmarks/dp_throughput.py --shape 7b --n 1024 --batch-size 16 --ranks 1,2   # 2+ GPUs
    .venv/bin/python benchmarks/dp_throughput.py --shape small --n 32 --batch-size 4 --ranks 1,2   # CPU check

On a machine with fewer GPUs than ranks, ranks share GPUs (``LOCAL_RANK % device_count``), which
measures nothing useful: the script then runs 1 rank only, at each of ``--batch-sizes``, and
reports single-GPU batched throughput instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_throughput import build_checkpoint, make_task

TASK = "bench_llava"


def run(task: Path, ckpt: Path, out: Path, ranks: int, batch_size: int, device: str, dtype: str) -> dict[str, float]:
    args = ["run", "--model", "hf-llava", "--model-args", f"pretrained={ckpt},device={device},dtype={dtype}"]
    args += ["--tasks", str(task), "--batch-size", str(batch_size), "--output", str(out), "--no-cache", "--json"]
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)] if ranks > 1 else [sys.executable]
    )
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1" if device == "cpu" else "4")}
    t0 = time.perf_counter()
    proc = subprocess.run([*launcher, "-m", "mmeval", *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{ranks} rank(s) failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    doc = json.loads(proc.stdout)
    res = doc["results"][TASK]
    assert res["n_errors"] == 0, res["errors"]
    timings = res["timings"]
    return {
        "task_s": timings["total_s"],
        "wall_s": wall,
        "samples_per_s": res["n"] / timings["total_s"],
        "timings": timings,
        "path": doc["path"],
    }


def samples(run_dir: str) -> list[dict]:
    lines = (Path(run_dir) / "samples" / f"{TASK}.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "cached"} for line in lines]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=["7b", "small"], default="small")
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--batch-sizes", default="1,16", help="single-GPU fallback: batch sizes to compare")
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = "bfloat16" if device == "cuda" else "float32"
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    ranks = sorted({int(r) for r in args.ranks.split(",")} | {1})
    single_gpu = device == "cuda" and gpus < max(ranks)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        build_checkpoint(root / "ckpt", args.shape, getattr(torch, dtype), device)
        build_s = time.perf_counter() - t0
        task = make_task(root / "data", args.n, args.max_new_tokens)
        results: dict[str, dict] = {}
        if single_gpu:
            for bs in (int(b) for b in args.batch_sizes.split(",")):
                results[f"1 rank, batch {bs}"] = run(task, root / "ckpt", root / f"bs{bs}", 1, bs, device, dtype)
        else:
            for r in ranks:
                results[f"{r} rank(s)"] = run(task, root / "ckpt", root / f"r{r}", r, args.batch_size, device, dtype)
            reference = samples(results["1 rank(s)"]["path"])
            for res in results.values():
                res["speedup_vs_1_rank"] = results["1 rank(s)"]["task_s"] / res["task_s"]
                res["samples_identical_to_1_rank"] = samples(res["path"]) == reference
        for res in results.values():
            del res["path"]
    where = f"{gpus} x {torch.cuda.get_device_name(0)}" if gpus else f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    report = {"shape": args.shape, "n": args.n, "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "dtype": dtype}
    report.update({"device": where, "single_gpu_fallback": single_gpu, "build_s": round(build_s, 1), "results": results})
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
