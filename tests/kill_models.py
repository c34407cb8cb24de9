"""Planted crashes for the kill/resume tests: a model and a metric that SIGKILL their own
process at a chosen point, once (a marker file records that the crash happened, so the
re-run of the same command passes the point)."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmeval.metrics.base import ParseContext
from mmeval.metrics.text import ExactMatch
from mmeval.types import Request, Response
from tests.fake_models import HashModel


def crash_once(marker: str | Path) -> None:
    """SIGKILL this process unless ``marker`` exists; create it first."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        os.kill(os.getpid(), signal.SIGKILL)


class KillingModel(HashModel):
    """HashModel that dies on the first batch holding a request whose id contains ``kill_on``."""

    name = "test-kill"
    allowed_args = HashModel.allowed_args | {"kill_on", "marker"}

    def __init__(self, **args: str) -> None:
        super().__init__(**args)
        self.kill_on = args.get("kill_on", "")
        self.marker = args.get("marker", "")

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        if self.kill_on and any(self.kill_on in r.id for r in requests):
            crash_once(self.marker)
        return super().generate(requests)


class KillingExactMatch(ExactMatch):
    """exact_match that dies on its ``kill_at_call``-th batch: while the runner scores a chunk."""

    name = "test_kill_exact_match"

    def __init__(self, marker: str = "", kill_at_call: int = 2, **kwargs: Any) -> None:
        super().__init__(marker=marker, kill_at_call=kill_at_call, **kwargs)
        self.marker = marker
        self.kill_at_call = int(kill_at_call)
        self.calls = 0

    def score_batch(self, parsed: Sequence[Any], targets: Sequence[Any], ctxs: Sequence[ParseContext]) -> list[dict[str, float]]:
        self.calls += 1
        if self.marker and self.calls == self.kill_at_call:
            crash_once(self.marker)
        return super().score_batch(parsed, targets, ctxs)
