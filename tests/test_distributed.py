"""Data-parallel runs under torchrun on the CPU (gloo): 2 ranks equal 1 process sample for
sample, and an interrupted run resumes with a different number of ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mmeval.models.tiny import tiny_llava_dir
from tests.conftest import QA_YAML, ROOT, sample_rows, write_task

pytestmark = pytest.mark.slow
LAUNCH = str(ROOT / "tests" / "launch.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on two cores


def launch(args: list[str], ranks: int) -> subprocess.CompletedProcess[str]:
    cmd = [*TORCHRUN, str(ranks), LAUNCH, *args] if ranks > 1 else [sys.executable, LAUNCH, *args]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def only_json(stdout: str) -> dict:
    """Rank 0's --json report; worker ranks print nothing (two documents would not parse)."""
    return json.loads(stdout)


def test_two_ranks_equal_one_process_with_tiny_llava(tmp_path: Path) -> None:
    tiny_llava_dir()  # build once here, not in both ranks at once
    args = ["run", "--model", "tiny-llava", "--tasks", "demo_vqa,demo_mcq", "--limit", "12", "--batch-size", "4", "--json"]
    two = launch([*args, "--output", str(tmp_path / "two")], ranks=2)
    assert two.returncode == 0, two.stderr[-3000:]
    one = launch([*args, "--output", str(tmp_path / "one")], ranks=1)
    assert one.returncode == 0, one.stderr[-3000:]
    merged, single = only_json(two.stdout), only_json(one.stdout)
    run_dir = Path(merged["path"])
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["distributed"]["world_size"] == 2 and manifest["status"] == "complete"
    for task in ("demo_vqa", "demo_mcq"):
        assert merged["results"][task]["n"] == 12 and merged["results"][task]["n_errors"] == 0
        assert merged["results"][task]["metrics"] == single["results"][task]["metrics"]
        assert sample_rows(run_dir, task) == sample_rows(Path(single["path"]), task)  # generated text, parse, scores: sample for sample
        assert merged["results"][task]["timings"]["wait_s"] >= 0
    assert not (run_dir / "samples" / ".shards").exists()  # merged and cleaned up


def qa_task(tmp_path: Path, n: int = 120) -> Path:
    data = [{"id": f"d{i}", "question": f"item {i} please", "answer": ["red", "2", "yes"][i % 3], "group": i // 5} for i in range(n)]
    return write_task(tmp_path / "data", data, QA_YAML)


def run_args(task: Path, out: Path, marker: Path) -> list[str]:
    # The planted crash: the batch holding d61 (rank 1's under 2 ranks) kills its process once.
    model_args = f"kill_on=local_qa/d61,marker={marker},delay=0.01"
    return ["run", "--model", "test-kill", "--model-args", model_args, "--tasks", str(task), "--batch-size", "4", "--output", str(out)]


@pytest.mark.parametrize(("first", "then"), [(2, 1), (1, 2)], ids=["2-ranks-then-1", "1-rank-then-2"])
def test_resume_with_a_different_number_of_ranks(tmp_path: Path, first: int, then: int) -> None:
    task, out, marker = qa_task(tmp_path), tmp_path / "res", tmp_path / "crashed"
    killed = launch(run_args(task, out, marker), ranks=first)
    assert killed.returncode != 0 and marker.exists()
    if first == 1:
        assert killed.returncode == -signal.SIGKILL
    (run_json,) = out.glob("*/run.json")
    assert json.loads(run_json.read_text())["status"] == "running"

    resumed = launch([*run_args(task, out, marker), "--json"], ranks=then)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = only_json(resumed.stdout)
    assert Path(result["path"]) == run_json.parent  # the interrupted run, completed in place
    res = result["results"]["local_qa"]
    assert res["n"] == 120 and res["n_errors"] == 0 and 0 < res["n_cached"] < 120

    clean = launch([*run_args(task, tmp_path / "clean", marker), "--json"], ranks=1)
    reference = only_json(clean.stdout)
    assert res["metrics"] == reference["results"]["local_qa"]["metrics"]
    assert [r["doc_id"] for r in sample_rows(run_json.parent, "local_qa")] == [f"d{i}" for i in range(120)]
    assert sample_rows(run_json.parent, "local_qa") == sample_rows(Path(reference["path"]), "local_qa")
    manifest = json.loads(run_json.read_text())
    assert manifest["attempts"] == 2 and manifest["status"] == "complete"
    assert ("distributed" in manifest) == (then > 1)
