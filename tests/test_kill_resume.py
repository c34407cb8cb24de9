"""SIGKILL a run halfway, re-run the same command: completed, no duplicates, identical scores."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import QA_YAML, ROOT, sample_rows, write_task

pytestmark = pytest.mark.slow

LAUNCH = str(ROOT / "tests" / "launch.py")  # the CLI with the test models registered


def mmeval_cmd(task: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        LAUNCH,
        "run",
        "--model",
        "test-hash",
        "--model-args",
        "delay=0.03",
        "--tasks",
        str(task),
        "--batch-size",
        "4",
        "--output",
        str(out),
        "--json",
    ]


def cached_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_sigkill_halfway_then_rerun_completes_identically(tmp_path: Path) -> None:
    rows = [{"id": f"d{i}", "question": f"item {i} please", "answer": ["red", "2", "yes"][i % 3], "group": i // 5} for i in range(160)]
    task = write_task(tmp_path / "data", rows, QA_YAML)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "res"

    proc = subprocess.Popen(mmeval_cmd(task, out), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while cached_rows(out / "cache.sqlite") < 80 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; raise the delay"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = cached_rows(out / "cache.sqlite")
    assert 80 <= done_before < 160
    (killed_json,) = out.glob("*/run.json")
    assert json.loads(killed_json.read_text())["status"] == "running"

    again = subprocess.run(mmeval_cmd(task, out), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert Path(result["path"]) == killed_json.parent  # resumed in place, not a new run
    res = result["results"]["local_qa"]
    assert res["n"] == 160 and res["n_errors"] == 0 and res["n_cached"] == done_before

    clean = subprocess.run(mmeval_cmd(task, tmp_path / "clean"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    reference = json.loads(clean.stdout)
    assert res["metrics"] == reference["results"]["local_qa"]["metrics"]
    resumed_rows = sample_rows(killed_json.parent, "local_qa")
    assert [r["doc_id"] for r in resumed_rows] == [f"d{i}" for i in range(160)]  # none lost, none twice
    assert resumed_rows == sample_rows(Path(reference["path"]), "local_qa")
    manifest = json.loads(killed_json.read_text())
    assert manifest["status"] == "complete" and manifest["attempts"] == 2
