"""Planted model faults, end to end: a model that raises on one sample of a batch, a tokenizer
that returns no tokens for one prompt, and a model whose answers decode to empty strings.

The first two are that sample's error (with what happened in it), counted in run.json, the
batchmates are scored as in a clean run, and ``--strict`` exits non-zero after run.json is
written. An empty answer is not an error: the model saw the prompt and said nothing, which is
scored as wrong like any other wrong answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mmeval.api import evaluate
from mmeval.cli import app
from mmeval.engine.runner import StrictModeError
from mmeval.models.hf_decoding import EMPTY_PROMPT, EmptyPromptError, generate_causal
from mmeval.types import GenerationConfig
from tests.conftest import QA_YAML, write_task
from tests.fake_models import FaultyModel, FaultyTinyLlava
from tests.image_requests import image_request as request
from tests.image_requests import noisy_png as png

MARKER = "[[fault]]"  # the model raises on it, or the tokenizer returns nothing for it
SILENT = "[[silent]]"  # the answer to it decodes to ""
QUESTIONS = [
    "what colour is the square?",
    "how many shapes are there?",
    f"is the circle left or right? {MARKER}",
    "yes or no?",
    f"which shape is red? {SILENT}",
    "what is on the left?",
]


def fault_task(root: Path) -> Path:
    """Six text questions; q2 holds MARKER and q4 SILENT, which the fault models react to."""
    rows = [{"id": f"q{i}", "question": q, "answer": "red", "group": i} for i, q in enumerate(QUESTIONS)]
    return write_task(root, rows, QA_YAML)


def samples(run_dir: Path) -> dict[str, dict[str, Any]]:
    lines = (run_dir / "samples" / "local_qa.jsonl").read_text().splitlines()
    return {r["doc_id"]: r for r in map(json.loads, lines)}


def run_json(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run.json").read_text())


def only_run_dir(out: Path) -> Path:
    (path,) = out.glob("*/run.json")
    return path.parent


def cli_strict(model: str, model_args: str, task: Path, out: Path) -> Any:
    args = ["run", "--model", model, "--model-args", model_args, "--tasks", str(task), "--batch-size", "4", "--output", str(out)]
    return CliRunner().invoke(app, [*args, "--no-cache", "--strict"], catch_exceptions=False)


# --------------------------------------------------------------------------- a model that raises


def test_a_model_raising_on_one_sample_fails_exactly_that_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FaultyModel, "calls", [])
    task = fault_task(tmp_path / "task")
    run = evaluate("test-faulty", [str(task)], {"raise_on": MARKER}, batch_size=4, output=tmp_path / "res", use_cache=False)
    res = run.tasks["local_qa"]
    assert res.n == 6 and res.n_errors == 1 and res.errors == {"model": 1}
    rows = samples(run.path)
    assert rows["q2"]["error"] == f"model: PlantedFault: cannot answer local_qa/q2: its prompt contains {MARKER!r}"
    assert rows["q2"]["response"] is None and rows["q2"]["scores"] == {}
    # The culprit's batch of 4 raised and was retried one request at a time; the other batch
    # went through whole.
    calls = FaultyModel.calls
    (failed_at,) = [i for i, ids in enumerate(calls) if "local_qa/q2" in ids and len(ids) == 4]
    batch = calls[failed_at]
    assert calls[failed_at + 1 : failed_at + 5] == [[rid] for rid in batch]
    assert sorted(len(ids) for ids in calls) == [1, 1, 1, 1, 2, 4]
    # Every batchmate is answered and scored, as in a clean run.
    clean = samples(evaluate("test-hash", [str(task)], batch_size=4, output=tmp_path / "clean", use_cache=False).path)
    for doc_id, row in rows.items():
        if doc_id != "q2":
            assert row["error"] is None and row["response"] == clean[doc_id]["response"]
            assert row["scores"] == {"exact_match": float(row["response"] == "red")}
    assert res.metric("exact_match").n == 5
    doc = run_json(run.path)
    assert doc["results"]["local_qa"]["n_errors"] == 1 and doc["results"]["local_qa"]["errors"] == {"model": 1}


def test_a_model_raising_on_one_sample_under_strict(tmp_path: Path) -> None:
    task = fault_task(tmp_path / "task")
    with pytest.raises(StrictModeError, match="1 sample"):
        evaluate("test-faulty", [str(task)], {"raise_on": MARKER}, batch_size=4, output=tmp_path / "api", strict=True)
    assert run_json(only_run_dir(tmp_path / "api"))["results"]["local_qa"]["errors"] == {"model": 1}
    result = cli_strict("test-faulty", f"raise_on={MARKER}", task, tmp_path / "cli")
    assert result.exit_code == 3 and "1 sample(s) failed" in result.output
    doc = run_json(only_run_dir(tmp_path / "cli"))
    assert doc["status"] == "complete" and doc["results"]["local_qa"]["n_errors"] == 1
    clean = cli_strict("test-faulty", "raise_on=absent", task, tmp_path / "clean")
    assert clean.exit_code == 0, clean.output


# --------------------------------------------------------------------------- tokenizer faults


@pytest.fixture(scope="module")
def faulty_llava() -> FaultyTinyLlava:
    # CPU float32: batch invariance is exact there, so batchmates can be compared to a clean batch.
    model = FaultyTinyLlava(device="cpu", empty_prompt_on=MARKER, empty_answer_on=SILENT)
    model._ensure_loaded()  # loaded on the first generate otherwise; some tests use its parts directly
    return model


def test_an_empty_tokenization_fails_only_its_request(faulty_llava: FaultyTinyLlava) -> None:
    good = [request("a", "What colour?", (png(1),), max_new_tokens=4), request("c", "Which shape?", (png(2),), max_new_tokens=4)]
    good.append(request("d", "yes or no?", max_new_tokens=4))
    empty_with_image = request("b", f"look {MARKER}", (png(3),), max_new_tokens=4)
    empty_text = request("e", MARKER, max_new_tokens=4)
    out = faulty_llava.generate([good[0], empty_with_image, good[1], empty_text, good[2]])
    assert [r.id for r in out] == ["a", "b", "c", "e", "d"]
    for r in (out[1], out[3]):
        assert r.error == EMPTY_PROMPT and r.finish_reason == "error" and r.text == ""
    answered = [out[0], out[2], out[4]]
    assert all(r.ok and r.text for r in answered)
    # Not generated from nothing, and the batchmates are untouched by it.
    assert [r.text for r in answered] == [r.text for r in faulty_llava.generate(good)]
    # A batch of only empty prompts (zero tokens wide) fails cleanly too, instead of crashing.
    assert [r.error for r in faulty_llava.generate([empty_text])] == [EMPTY_PROMPT]
    assert [r.error for r in faulty_llava.generate([empty_text, empty_with_image])] == [EMPTY_PROMPT, EMPTY_PROMPT]


def test_generate_causal_refuses_an_empty_encoding(faulty_llava: FaultyTinyLlava) -> None:
    """The encodings path (cascade, Qwen2-Audio) cannot fail one row alone: it raises, and the
    runner retries the batch one request at a time."""
    tok = faulty_llava.tokenizer
    ids = tok("USER: yes or no? ASSISTANT:")["input_ids"]
    gen = GenerationConfig(max_new_tokens=4)
    with pytest.raises(EmptyPromptError, match=r"no tokens .* \(row 1 of a batch of 2\)"):
        generate_causal(faulty_llava.model, tok, faulty_llava.eos_ids, gen, [ids, []])
    (decoded,), _ = generate_causal(faulty_llava.model, tok, faulty_llava.eos_ids, gen, [ids])
    assert decoded[0]


def test_an_empty_answer_is_an_answer(faulty_llava: FaultyTinyLlava) -> None:
    silent, spoken = faulty_llava.generate(
        [request("s", f"yes or no? {SILENT}", max_new_tokens=4), request("t", "yes or no?", max_new_tokens=4)]
    )
    assert silent.ok and silent.text == "" and silent.finish_reason in {"stop", "length"}
    assert spoken.ok and spoken.text


def test_tokenizer_faults_end_to_end_and_strict(tmp_path: Path) -> None:
    """In one batch: q2 tokenizes to nothing (an error), q4's answer decodes to "" (a wrong
    answer, not an error); the batchmates answer as in a clean run."""
    task = fault_task(tmp_path / "task")
    result = cli_strict("test-llava-faults", f"device=cpu,empty_prompt_on={MARKER},empty_answer_on={SILENT}", task, tmp_path / "res")
    assert result.exit_code == 3 and "1 sample(s) failed" in result.output
    run_dir = only_run_dir(tmp_path / "res")
    doc = run_json(run_dir)
    res = doc["results"]["local_qa"]
    assert doc["status"] == "complete" and res["n"] == 6 and res["n_errors"] == 1 and res["errors"] == {"empty prompt": 1}
    assert res["metrics"]["exact_match"]["n"] == 5 and sum(res["extraction_stages"].values()) == 5
    rows = samples(run_dir)
    assert rows["q2"]["error"] == EMPTY_PROMPT and rows["q2"]["response"] is None and rows["q2"]["scores"] == {}
    assert rows["q4"]["error"] is None and rows["q4"]["response"] == "" and rows["q4"]["scores"] == {"exact_match": 0.0}
    clean_run = evaluate("tiny-llava", [str(task)], {"device": "cpu"}, batch_size=4, output=tmp_path / "clean", use_cache=False)
    clean = samples(clean_run.path)
    assert clean["q2"]["response"] and clean["q4"]["response"]  # the clean model answers both
    for doc_id in ("q0", "q1", "q3", "q5"):
        assert rows[doc_id]["error"] is None and rows[doc_id]["response"] == clean[doc_id]["response"], doc_id
