"""SIGKILL at three points of a run (mid-generation, between tasks, while scoring), then the
same command again: the run completes in place, every sample once, results identical to an
uninterrupted run. The crash is planted (tests/kill_models.py), so each point is hit exactly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, sample_rows, write_task

pytestmark = pytest.mark.slow
LAUNCH = str(ROOT / "tests" / "launch.py")

TASK_YAML = """\
task: {name}
version: 1
dataset: {{path: data.jsonl}}
doc_id: id
prompt:
  - text: "{{{{ question }}}}"
target: answer
generation: {{max_new_tokens: 8}}
metrics: [{metrics}]
cluster_by: group
"""


def make_task(root: Path, name: str, n: int, metrics: str = "exact_match") -> Path:
    rows = [{"id": f"d{i}", "question": f"{name} item {i}", "answer": ["red", "2", "yes"][i % 3], "group": i // 5} for i in range(n)]
    return write_task(root / name, rows, TASK_YAML.format(name=name, metrics=metrics))


def mmeval(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, LAUNCH, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def run_args(tasks: list[Path], out: Path, model_args: str) -> list[str]:
    return ["run", "--model", "test-kill", "--model-args", model_args, "--tasks", ",".join(map(str, tasks))]


def check_resumed_equals_clean(tmp_path: Path, tasks: list[Path], names: list[str], model_args: str, n_docs: dict[str, int]) -> dict:
    """Re-run the killed command; compare with the same command run cleanly elsewhere."""
    out = tmp_path / "res"
    (killed,) = out.glob("*/run.json")
    assert json.loads(killed.read_text())["status"] == "running"
    again = mmeval([*run_args(tasks, out, model_args), "--batch-size", "4", "--output", str(out), "--json"])
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)
    assert Path(resumed["path"]) == killed.parent  # completed in place, not a new run
    clean = mmeval([*run_args(tasks, out, model_args), "--batch-size", "4", "--output", str(tmp_path / "clean"), "--json"])
    assert clean.returncode == 0, clean.stderr
    reference = json.loads(clean.stdout)
    for name in names:
        rows = sample_rows(killed.parent, name)
        assert [r["doc_id"] for r in rows] == [f"d{i}" for i in range(n_docs[name])]  # none lost, none twice
        assert rows == sample_rows(Path(reference["path"]), name)
        assert resumed["results"][name]["metrics"] == reference["results"][name]["metrics"]
        assert resumed["results"][name]["n_errors"] == 0
    manifest = json.loads(killed.read_text())
    assert manifest["status"] == "complete" and manifest["attempts"] == 2
    assert not list(killed.parent.glob("samples/.*")), "partial files left behind"
    return manifest


def killed_run(tmp_path: Path, tasks: list[Path], model_args: str) -> subprocess.CompletedProcess[str]:
    proc = mmeval([*run_args(tasks, tmp_path / "res", model_args), "--batch-size", "4", "--output", str(tmp_path / "res"), "--json"])
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])
    return proc


def test_sigkill_mid_generation(tmp_path: Path) -> None:
    task = make_task(tmp_path, "task_a", 80)
    args = f"kill_on=task_a/d41,marker={tmp_path / 'crashed'}"
    killed_run(tmp_path, [task], args)
    db = tmp_path / "res" / "cache.sqlite"
    import sqlite3

    with sqlite3.connect(db) as conn:
        done = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert 0 < done < 80  # batches before the crash were committed, the one in flight was not
    check_resumed_equals_clean(tmp_path, [task], ["task_a"], args, {"task_a": 80})


def test_sigkill_between_tasks(tmp_path: Path) -> None:
    """Killed on the second task's first batch: the first task's result and samples survive."""
    tasks = [make_task(tmp_path, "task_a", 30), make_task(tmp_path, "task_b", 30)]
    args = f"kill_on=task_b/,marker={tmp_path / 'crashed'}"
    killed_run(tmp_path, tasks, args)
    (run_json,) = (tmp_path / "res").glob("*/run.json")
    before = json.loads(run_json.read_text())
    assert list(before["results"]) == ["task_a"] and before["results"]["task_a"]["n"] == 30
    assert (run_json.parent / "samples" / "task_a.jsonl").exists()
    assert not (run_json.parent / "samples" / "task_b.jsonl").exists()
    after = check_resumed_equals_clean(tmp_path, tasks, ["task_a", "task_b"], args, {"task_a": 30, "task_b": 30})
    assert after["results"]["task_b"]["n_cached"] == 0 and after["results"]["task_a"]["n_cached"] == 30


def test_sigkill_while_scoring(tmp_path: Path) -> None:
    """Killed while scoring the second chunk of samples: the first chunk's lines are in the
    partial samples file, which the re-run replaces (never appends to)."""
    marker = tmp_path / "crashed"
    task = make_task(tmp_path, "task_a", 2100, metrics=f"{{name: test_kill_exact_match, marker: '{marker}', kill_at_call: 2}}")
    killed_run(tmp_path, [task], "delay=0")
    (run_json,) = (tmp_path / "res").glob("*/run.json")
    partial = run_json.parent / "samples" / ".task_a.jsonl.partial"
    assert len(partial.read_text().splitlines()) == 1024  # the first chunk, streamed to disk
    assert not (run_json.parent / "samples" / "task_a.jsonl").exists()
    check_resumed_equals_clean(tmp_path, [task], ["task_a"], "delay=0", {"task_a": 2100})
