"""Two processes evaluating into the same results directory (and response cache) at once:
neither corrupts the other (atomic writes, a lock per run directory, SQLite in WAL mode)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import QA_YAML, ROOT, sample_rows, write_task

pytestmark = pytest.mark.slow
LAUNCH = str(ROOT / "tests" / "launch.py")


def task(tmp_path: Path, n: int = 300) -> Path:
    rows = [{"id": f"d{i}", "question": f"item {i}", "answer": ["red", "2", "yes"][i % 3], "group": i // 5} for i in range(n)]
    return write_task(tmp_path / "data", rows, QA_YAML)


def start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, LAUNCH, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def test_the_same_command_twice_at_once(tmp_path: Path) -> None:
    """Both complete, each in its own run directory (the second cannot resume a run that a live
    process holds), with identical samples; the shared cache stays consistent."""
    out = tmp_path / "res"
    args = ["run", "--model", "test-hash", "--model-args", "delay=0.04", "--tasks", str(task(tmp_path))]
    args += ["--batch-size", "4", "--output", str(out), "--json"]
    first = start(args)
    deadline = time.time() + 60
    while not list(out.glob("*/run.json")) and time.time() < deadline:
        time.sleep(0.02)
    second = start(args)  # the first run is incomplete and resumable by configuration, but locked
    results = [finish(first), finish(second)]
    for code, _out, err in results:
        assert code == 0, err
    paths = {Path(json.loads(o)["path"]) for _, o, _ in results}
    assert len(paths) == 2
    # The second found part of the first's work in the shared cache: they really overlapped.
    assert 0 < json.loads(results[1][1])["results"]["local_qa"]["n_cached"] < 300
    a, b = (sample_rows(p, "local_qa") for p in paths)
    assert a == b and [r["doc_id"] for r in a] == [f"d{i}" for i in range(300)]
    for p in paths:
        manifest = json.loads((p / "run.json").read_text())
        assert manifest["status"] == "complete" and manifest["attempts"] == 1
        assert not [f for f in (p / "samples").iterdir() if f.name.startswith(".")]  # no partial or temp files
    with sqlite3.connect(out / "cache.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 300


def test_different_runs_into_one_directory_at_once(tmp_path: Path) -> None:
    out = tmp_path / "res"
    data = task(tmp_path)
    common = ["--tasks", str(data), "--batch-size", "3", "--output", str(out), "--json"]
    procs = [
        start(["run", "--model", "test-hash", "--model-args", "delay=0.005", *common]),
        start(["run", "--model", "constant", "--model-args", "answer=red", *common]),
        start(["run", "--model", "test-hash", "--model-args", "delay=0.005", "--limit", "150", *common]),
    ]
    results = [finish(p) for p in procs]
    for code, _out, err in results:
        assert code == 0, err
    runs = [json.loads(o) for _, o, _ in results]
    assert len({r["path"] for r in runs}) == 3
    assert [r["results"]["local_qa"]["n"] for r in runs] == [300, 300, 150]
    # The limited run's samples are the first 150 of the full run's, answer for answer.
    assert sample_rows(Path(runs[2]["path"]), "local_qa") == sample_rows(Path(runs[0]["path"]), "local_qa")[:150]
    for r in runs:
        json.loads((Path(r["path"]) / "run.json").read_text())  # every run.json whole
    with sqlite3.connect(out / "cache.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_an_explicit_run_id_in_use_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "res"
    args = ["run", "--model", "test-hash", "--model-args", "delay=0.02", "--tasks", str(task(tmp_path)), "--run-id", "shared"]
    args += ["--batch-size", "2", "--output", str(out)]
    first = start(args)
    deadline = time.time() + 60
    while not (out / "shared" / "run.json").exists() and time.time() < deadline:
        time.sleep(0.02)
    code, _out, err = finish(start(args))
    assert code == 2 and "is being written by another process" in err and "--run-id" in err
    code, _out, err = finish(first)
    assert code == 0, err
    assert json.loads((out / "shared" / "run.json").read_text())["status"] == "complete"
