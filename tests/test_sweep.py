"""Many models over many tasks: `mmeval run --model a --model b` and `mmeval sweep FILE`,
skipping (model, task) pairs already finished under the output directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmeval.cli import app
from mmeval.engine.sweep import SweepError, load_sweep
from tests.conftest import QA_YAML, write_task

runner = CliRunner()


def tasks(tmp_path: Path) -> tuple[Path, Path]:
    rows = [{"id": f"q{i}", "question": f"question {i}?", "answer": ["red", "2", "yes"][i % 3], "group": i // 4} for i in range(12)]
    a = write_task(tmp_path / "a", rows, QA_YAML)
    b = write_task(tmp_path / "b", rows[:6], QA_YAML.replace("task: local_qa", "task: local_qa_b"))
    return a, b


def sweep_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(body)
    return path


def invoke(args: list[str]) -> tuple[int, dict]:
    res = runner.invoke(app, [*args, "--json"])
    try:
        return res.exit_code, json.loads(res.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"exit {res.exit_code}: {res.output}") from None


def statuses(doc: dict) -> dict[tuple[str, str], str]:
    return {(p["model"], p["task"]): p["status"] for p in doc["pairs"]}


def test_sweep_runs_each_model_then_skips_finished_pairs(tmp_path: Path) -> None:
    a, b = tasks(tmp_path)
    out = tmp_path / "res"
    body = f"tasks: [{a}, {b}]\nbatch_size: 4\nmodels:\n  - model: constant\n    model_args: {{answer: red}}\n  - test-hash\n"
    code, first = invoke(["sweep", str(sweep_file(tmp_path, body)), "--output", str(out)])
    assert code == 0
    assert set(statuses(first).values()) == {"to run"} and len(first["pairs"]) == 4
    assert len(first["runs"]) == 2 and all(set(r["results"]) == {"local_qa", "local_qa_b"} for r in first["runs"])
    n_runs = len(list(out.glob("*/run.json")))

    code, second = invoke(["sweep", str(sweep_file(tmp_path, body)), "--output", str(out)])
    assert code == 0 and set(statuses(second).values()) == {"finished"}
    assert len(list(out.glob("*/run.json"))) == n_runs  # nothing ran again
    # The summary still carries every pair's scores, from the runs that hold them.
    scores = {(r["path"], t): v["metrics"] for r in second["runs"] for t, v in r["results"].items()}
    assert scores == {(r["path"], t): v["metrics"] for r in first["runs"] for t, v in r["results"].items()}

    # A third model runs alone; a changed task runs again for every model; --rerun forces all.
    body3 = body + "  - {model: constant, model_args: 'answer=2'}\n"
    code, third = invoke(["sweep", str(sweep_file(tmp_path, body3)), "--output", str(out)])
    assert code == 0
    assert [k for k, v in statuses(third).items() if v == "to run"] == [
        ("constant (answer=2)", "local_qa"),
        ("constant (answer=2)", "local_qa_b"),
    ]
    b.write_text(b.read_text().replace("version: 1", "version: 2"))
    code, fourth = invoke(["sweep", str(sweep_file(tmp_path, body3)), "--output", str(out)])
    assert code == 0 and sorted(t for (_m, t), v in statuses(fourth).items() if v == "to run") == ["local_qa_b"] * 3
    code, fifth = invoke(["sweep", str(sweep_file(tmp_path, body3)), "--output", str(out), "--rerun", "--dry-run"])
    assert code == 0 and set(statuses(fifth).values()) == {"to run"} and fifth["runs"] == []


def test_run_with_several_models_skips_finished_pairs(tmp_path: Path) -> None:
    a, _b = tasks(tmp_path)
    out = tmp_path / "res"
    code, only = invoke(["run", "--model", "constant", "--tasks", str(a), "--output", str(out)])
    assert code == 0
    code, doc = invoke(["run", "--model", "constant", "--model", "test-hash", "--tasks", str(a), "--output", str(out)])
    assert code == 0
    assert statuses(doc) == {("constant", "local_qa"): "finished", ("test-hash", "local_qa"): "to run"}
    assert {r["path"] for r in doc["runs"]} >= {only["path"]}
    res = runner.invoke(app, ["run", "--model", "constant", "--model", "test-hash", "--model-args", "answer=red", "--tasks", str(a)])
    assert res.exit_code == 2 and "sweep file" in res.output


def test_an_interrupted_run_supplies_its_finished_tasks(tmp_path: Path) -> None:
    """Tasks written to run.json before a crash count as finished; the others run."""
    a, b = tasks(tmp_path)
    out = tmp_path / "res"
    code, doc = invoke(["run", "--model", "test-hash", "--tasks", f"{a},{b}", "--output", str(out)])
    assert code == 0
    run_json = Path(doc["path"]) / "run.json"
    manifest = json.loads(run_json.read_text())
    manifest["status"] = "running"
    del manifest["results"]["local_qa_b"]
    run_json.write_text(json.dumps(manifest))
    code, doc = invoke(["run", "--model", "test-hash", "--model", "constant", "--tasks", f"{a},{b}", "--output", str(out)])
    assert code == 0
    st = statuses(doc)
    assert st[("test-hash", "local_qa")] == "finished" and st[("test-hash", "local_qa_b")] == "to run"


def test_a_failing_model_does_not_stop_the_sweep(tmp_path: Path) -> None:
    a, _b = tasks(tmp_path)
    body = f"tasks: [{a}]\nmodels:\n  - model: no-such-model\n  - {{model: test-hash, model_args: {{fail_on: q3}}}}\n  - constant\n"
    code, doc = invoke(["sweep", str(sweep_file(tmp_path, body)), "--output", str(tmp_path / "res")])
    assert code == 1
    assert list(doc["failures"]) == ["no-such-model"] and "unknown model" in doc["failures"]["no-such-model"].lower()
    assert len(doc["runs"]) == 2  # the two that could run, ran
    code, doc = invoke(
        ["sweep", str(sweep_file(tmp_path, body.replace("  - model: no-such-model\n", ""))), "--output", str(tmp_path / "r2"), "--strict"]
    )
    assert code == 3 and list(doc["strict_failures"]) == ["test-hash (fail_on=q3)"] and len(doc["runs"]) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("tasks: [x]\n", "'models' must be a non-empty list"),
        ("models: [constant]\n", "'tasks' must be a list"),
        ("tasks: [x]\nmodels: [constant]\nbatchsize: 4\n", "unknown key(s) ['batchsize']"),
        ("tasks: [x]\nmodels:\n  - {model: constant, modelargs: {a: 1}}\n", "models[1] (constant): unknown key(s) ['modelargs']"),
        ("tasks: [x]\nmodels: [constant]\nbatch_size: -1\n", "batch_size must be a non-negative integer"),
        ("tasks: [x]\nmodels:\n  - {model: constant, model_args: 'novalue'}\n", "models[1].model_args"),
        ("tasks: [x\n", "invalid YAML"),
    ],
)
def test_bad_sweep_files_are_refused_with_the_file_and_entry(tmp_path: Path, body: str, message: str) -> None:
    path = sweep_file(tmp_path, body)
    with pytest.raises(SweepError) as err:
        load_sweep(path)
    assert str(path) in str(err.value) and message in str(err.value)
    res = runner.invoke(app, ["sweep", str(path)])
    assert res.exit_code == 2
