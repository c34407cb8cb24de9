"""Shared fixtures: a hermetic cache root per test session and the test model adapters."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mmeval.models import base

ROOT = Path(__file__).resolve().parents[1]
TEST_MODELS = {
    "test-hash": "tests.fake_models:HashModel",
    "test-text-only": "tests.fake_models:TextOnlyModel",
    "test-faulty": "tests.fake_models:FaultyModel",
    "test-llava-faults": "tests.fake_models:FaultyTinyLlava",
}


@pytest.fixture(scope="session", autouse=True)
def mmeval_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fixtures and tiny models are built once per session, never into the user's ~/.cache."""
    root = Path(os.environ.get("MMEVAL_TEST_CACHE") or tmp_path_factory.mktemp("mmeval-cache"))
    os.environ["MMEVAL_CACHE"] = str(root)
    return root


@pytest.fixture(autouse=True)
def test_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "BUILTIN_MODELS", {**base.BUILTIN_MODELS, **TEST_MODELS})


def write_task(root: Path, rows: list[dict], yaml_text: str, name: str = "task.yaml") -> Path:
    """A local jsonl dataset plus its task YAML in ``root``; returns the YAML path."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "data.jsonl").open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    (root / name).write_text(yaml_text)
    return root / name


def sample_rows(run_dir: Path, task: str) -> list[dict]:
    """A run's samples/<task>.jsonl without the ``cached`` flag, the one field in which a resumed
    (or concurrent) run may rightly differ from a clean one."""
    lines = (run_dir / "samples" / f"{task}.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "cached"} for line in lines]


QA_YAML = """\
task: local_qa
version: 1
dataset: {path: data.jsonl}
doc_id: id
prompt:
  - text: "{{ question }}"
target: answer
generation: {max_new_tokens: 8}
metrics: [exact_match]
cluster_by: group
"""


@pytest.fixture
def qa_task(tmp_path: Path) -> Path:
    rows = [{"id": f"q{i}", "question": f"question number {i}?", "answer": ["red", "2", "yes"][i % 3], "group": i // 4} for i in range(40)]
    return write_task(tmp_path / "qa", rows, QA_YAML)
