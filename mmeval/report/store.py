"""Read run directories back (for `mmeval show`, leaderboards and the gate)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmeval.engine.store import RUN_FILE, SCHEMA_VERSION, samples_file_name
from mmeval.models.base import args_label
from mmeval.types import RunResult, TaskResult


class RunStoreError(ValueError):
    pass


def load_run(path: str | Path) -> RunResult:
    p = Path(path)
    run_json = p / RUN_FILE if p.is_dir() else p
    if not run_json.exists():
        raise RunStoreError(f"{p}: not a run directory (no {RUN_FILE})")
    try:
        doc = json.loads(run_json.read_text())
    except json.JSONDecodeError as exc:
        raise RunStoreError(f"{run_json}: line {exc.lineno}: invalid JSON: {exc.msg}") from exc
    version = doc.get("schema_version")
    if version is None or version > SCHEMA_VERSION:
        raise RunStoreError(f"{run_json}: schema_version {version!r} is not readable by this mmeval (reads <= {SCHEMA_VERSION})")
    results = {name: TaskResult.from_dict(r) for name, r in doc.get("results", {}).items()}
    return RunResult(run_id=doc.get("run_id", run_json.parent.name), path=run_json.parent, manifest=doc, tasks=results)


def find_runs(root: str | Path) -> list[RunResult]:
    """A run directory, or every run directory below ``root``."""
    p = Path(root)
    if (p / RUN_FILE).exists():
        return [load_run(p)]
    return [load_run(r.parent) for r in sorted(p.glob(f"*/{RUN_FILE}"))]


def iter_samples(run: RunResult, task: str) -> Iterator[dict[str, Any]]:
    path = run.path / "samples" / samples_file_name(task)
    if not path.exists():
        raise RunStoreError(f"{run.path}: no samples for task {task!r} (have: {sorted(run.tasks)})")
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def model_label(run: RunResult) -> str:
    """A run's model as tables, leaderboards and the arena name it: adapter name plus its args."""
    model = run.manifest.get("model", {})
    return args_label(str(model.get("name", "?")), model.get("args") or {})
