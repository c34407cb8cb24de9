"""Guards over the whole catalogue: every task is tested end to end, every name resolves."""

from __future__ import annotations

import re
from pathlib import Path

from mmeval.metrics.base import METRICS, PARSERS, get_parser, metric_class
from mmeval.tasks.registry import groups, task_index

TESTS = Path(__file__).resolve().parent


def test_every_registered_metric_and_parser_resolves() -> None:
    for name in METRICS:  # classes only: generation metrics need weights paths to be built
        assert metric_class(name).name == name
    for name in PARSERS:
        parser = get_parser(name)
        assert parser.name == name


def test_every_catalogue_task_has_a_local_end_to_end_test() -> None:
    """Each hub task is run through `replay` on a local copy with its column schema
    (tests/catalogue.py); a new task without such a test fails here."""
    sources = "\n".join(p.read_text() for p in TESTS.glob("test_*.py") if "localize" in p.read_text())
    untested = [name for name in task_index() if not name.startswith("demo_") and not re.search(rf"[\"']{name}[\"']", sources)]
    assert not untested, f"catalogue tasks with no localize() end-to-end test: {untested}"


def test_catalogue_groups_and_pins() -> None:
    index = task_index()
    grp = groups(index)
    for group in ("vqa", "caption", "reasoning", "audio_qa"):
        assert grp.get(group), f"group {group} is empty"
        assert not any(t.startswith("demo_") for t in grp[group]), f"demo fixtures leak into group {group}"
    assert set(grp["demo"]) == {"demo_vqa", "demo_caption", "demo_mcq", "demo_audioqa"}
    for spec in index.values():
        assert spec.description, spec.task
        if spec.dataset.is_hub:
            assert spec.dataset.revision, spec.task
