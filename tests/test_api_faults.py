"""Planted serving faults, all in one task, end to end: an API server on 127.0.0.1
(tests/fake_api_server.py) that stalls, drops or cuts connections, rate limits, fails, and answers
200 with truncated JSON or without choices. Each persistent fault is one sample's error that
says what happened, counted by kind in run.json; the good samples are scored; ``--strict``
turns the errors into a non-zero exit after run.json is written. The same faults, once each
and then an answer, are retried away and are not errors."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mmeval.api import evaluate
from mmeval.cli import app
from mmeval.engine.runner import StrictModeError
from mmeval.types import RunResult
from tests.conftest import QA_YAML, write_task
from tests.fake_api_server import FakeApiServer
from tests.test_api_adapters import KEY_ENV, cached, margs, samples

TIMEOUT = 0.25  # seconds; a stalled attempt is abandoned at this
MAX_RETRIES = 2  # so every persistent fault is tried 3 times, then given up
ADAPTERS = ("openai-chat", "anthropic")

GOOD = [  # (doc id, what the server answers, the target): two right, one wrong
    ("good_red", "red", "red"),
    ("good_blue", "blue", "blue"),
    ("good_wrong", "green", "red"),
]
# (doc id, server script, error kind in run.json, what the error must say besides the kind)
FAULTS = [
    ("stall", "stall", "api timeout", f"no complete answer within {TIMEOUT:g}s"),
    ("drop", "drop", "api connection error", "connection dropped: the server closed it without answering"),
    ("cut", "cut", "api connection error", "connection dropped in the middle of the answer"),
    ("limited", "429", "api HTTP 429 Too Many Requests", "scripted 429"),
    ("limited_retry_after", "429:0", "api HTTP 429 Too Many Requests", "scripted 429"),
    ("server_error", "500", "api HTTP 500 Internal Server Error", "scripted 500"),
    ("badjson", "badjson", "api invalid JSON", "HTTP 200 body is not valid JSON (Unterminated string"),
    ("nochoices", "nochoices", "api malformed response", "in the answer (it has keys: id, object)"),
]
EXPECTED_KINDS = dict(Counter(kind for _, _, kind, _ in FAULTS))


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    srv = FakeApiServer(stall_s=1.0).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-faults")  # anthropic sends nothing without one


def fault_task(root: Path, transient: bool = False) -> Path:
    """The good rows and one row per fault: persistent (the fault on every attempt) or
    transient (the fault once, then a normal answer)."""
    rows = [{"id": i, "question": f"{i}: say:{said}", "answer": target, "group": 0} for i, said, target in GOOD]
    for doc_id, script, _, _ in FAULTS:
        steps = f"{script},ok" if transient else script
        rows.append({"id": doc_id, "question": f"{doc_id} [[{steps}]] say:red", "answer": "red", "group": 1})
    return write_task(root, rows, QA_YAML)


def model_args(server: FakeApiServer) -> dict[str, str]:
    return margs(server, timeout=TIMEOUT, max_retries=MAX_RETRIES, backoff=0.01, backoff_max=0.02)


def run_json(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run.json").read_text())


def check_faults_counted(run_dir: Path, server: FakeApiServer) -> None:
    """Per-sample errors, scores of the good samples, counts in run.json, attempts at the server."""
    doc = run_json(run_dir)
    assert doc["status"] == "complete" and doc["n_errors"] == len(FAULTS)
    res = doc["results"]["local_qa"]
    assert res["n"] == len(GOOD) + len(FAULTS) and res["n_errors"] == len(FAULTS)
    assert res["errors"] == EXPECTED_KINDS
    em = res["metrics"]["exact_match"]
    assert em["n"] == len(GOOD) and em["value"] == pytest.approx(2 / 3)  # faults are not scored as wrong
    rows = samples(run_dir, "local_qa")
    for doc_id, said, target in GOOD:
        row = rows[doc_id]
        assert row["error"] is None and row["response"] == said
        assert row["scores"] == {"exact_match": float(said == target)}
    for doc_id, _, kind, detail in FAULTS:
        row = rows[doc_id]
        err = row["error"]
        assert err.startswith(kind + ":") and detail in err, (doc_id, err)
        assert err.endswith(f"(gave up after {MAX_RETRIES + 1} attempts)"), (doc_id, err)
        assert row["response"] is None and row["scores"] == {}
        assert len(server.matching(f"{doc_id} [[")) == MAX_RETRIES + 1  # retries were exhausted
    for doc_id, _, _ in GOOD:
        assert len(server.matching(f"{doc_id}:")) == 1


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_persistent_faults_fail_only_their_samples_through_evaluate(tmp_path: Path, server: FakeApiServer, adapter: str) -> None:
    task = fault_task(tmp_path / "task")
    run = evaluate(adapter, [str(task)], model_args(server), batch_size=16, output=tmp_path / "res", use_cache=False)
    res = run.tasks["local_qa"]
    assert res.n_errors == len(FAULTS) and res.errors == EXPECTED_KINDS
    check_faults_counted(run.path, server)


def test_strict_raises_after_writing_run_json(tmp_path: Path, server: FakeApiServer) -> None:
    task = fault_task(tmp_path / "task")
    with pytest.raises(StrictModeError, match=f"{len(FAULTS)} sample\\(s\\) failed"):
        evaluate("openai-chat", [str(task)], model_args(server), batch_size=16, output=tmp_path / "res", strict=True)
    (run_dir,) = [p.parent for p in (tmp_path / "res").glob("*/run.json")]
    check_faults_counted(run_dir, server)


def invoke_run(task: Path, out: Path, server: FakeApiServer, *extra: str) -> Any:
    args = ",".join(f"{k}={v}" for k, v in model_args(server).items())
    cmd = ["run", "--model", "openai-chat", "--model-args", args, "--tasks", str(task), "--batch-size", "16", "--output", str(out)]
    return CliRunner().invoke(app, [*cmd, "--no-cache", *extra], catch_exceptions=False)


def test_persistent_faults_through_the_cli_and_strict_exit(tmp_path: Path, server: FakeApiServer) -> None:
    task = fault_task(tmp_path / "task")
    plain = invoke_run(task, tmp_path / "plain", server, "--json")
    assert plain.exit_code == 0, plain.output
    printed = json.loads(plain.stdout)
    assert printed["results"]["local_qa"]["errors"] == EXPECTED_KINDS
    check_faults_counted(Path(printed["path"]), server)

    strict_server = FakeApiServer(stall_s=1.0).start()  # fresh attempt counts for the second run
    try:
        strict = invoke_run(task, tmp_path / "strict", strict_server, "--strict")
        assert strict.exit_code == 3, strict.output
        assert f"{len(FAULTS)} sample(s) failed" in strict.output
        (run_dir,) = [p.parent for p in (tmp_path / "strict").glob("*/run.json")]
        check_faults_counted(run_dir, strict_server)
    finally:
        strict_server.stop()


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_transient_faults_are_retried_away_and_are_not_errors(tmp_path: Path, server: FakeApiServer, adapter: str) -> None:
    task = fault_task(tmp_path / "task", transient=True)
    out = tmp_path / "res"
    # strict: a fault that was retried away must not count as a failure.
    run: RunResult = evaluate(adapter, [str(task)], model_args(server), batch_size=16, output=out, strict=True)
    res = run.tasks["local_qa"]
    assert res.n == len(GOOD) + len(FAULTS) and res.n_errors == 0 and res.errors == {}
    em = res.metric("exact_match")
    assert em.n == len(GOOD) + len(FAULTS) and em.value == pytest.approx((len(FAULTS) + 2) / em.n)
    rows, responses = samples(run.path, "local_qa"), cached(out)
    for doc_id, script, _, _ in FAULTS:
        assert rows[doc_id]["error"] is None and rows[doc_id]["response"] == "red", doc_id
        first, second = server.matching(f"{doc_id} [[")
        assert (first.step, second.step) == (script, "ok")
        assert responses[f"local_qa/{doc_id}"]["meta"]["attempts"] == 2
    assert run_json(run.path)["results"]["local_qa"]["n_errors"] == 0
