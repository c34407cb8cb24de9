"""The mmeval CLI with the test models and metrics registered, for tests that need a real
process (SIGKILL, concurrent writers, torchrun):

    python tests/launch.py run --model test-hash ...
    torchrun --standalone --nproc-per-node 2 tests/launch.py run --model test-hash ...
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAUNCHED_MODELS = {"test-kill": "tests.kill_models:KillingModel"}
LAUNCHED_METRICS = {"test_kill_exact_match": "tests.kill_models:KillingExactMatch"}


def main() -> None:
    from mmeval.metrics import base as metrics_base
    from mmeval.models import base
    from tests.conftest import TEST_MODELS

    base.BUILTIN_MODELS.update({**TEST_MODELS, **LAUNCHED_MODELS})
    metrics_base.METRICS.update(LAUNCHED_METRICS)
    from mmeval.cli import app

    app(sys.argv[1:], prog_name="mmeval")


if __name__ == "__main__":
    main()
