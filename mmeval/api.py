"""Python entry point: ``mmeval.evaluate(model, tasks, ...) -> RunResult``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmeval.engine.runner import RunConfig
from mmeval.engine.runner import evaluate as _evaluate
from mmeval.models.base import parse_model_args
from mmeval.types import RunResult


def evaluate(
    model: str,
    tasks: str | Sequence[str],
    model_args: str | dict[str, str] | None = None,
    *,
    metric_args: str | dict[str, str] | None = None,
    batch_size: int = 1,
    limit: int | float | None = None,
    seed: int = 0,
    output: str | Path = "results",
    run_id: str | None = None,
    use_cache: bool = True,
    cache_path: str | Path | None = None,
    strict: bool = False,
    progress: bool = False,
) -> RunResult:
    """Evaluate ``model`` on ``tasks`` (names, groups or YAML paths) and write a run directory.

    >>> run = evaluate("constant", "demo_vqa", limit=10, output="results")  # doctest: +SKIP
    >>> run.tasks["demo_vqa"].metric("vqa_accuracy").value  # doctest: +SKIP
    """
    names = [t for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
    args = parse_model_args(model_args) if isinstance(model_args, str) or model_args is None else dict(model_args)
    cfg = RunConfig(
        model=model,
        tasks=names,
        model_args=args,
        metric_args=parse_model_args(metric_args, "metric_args", "inception_weights=PATH")
        if isinstance(metric_args, str) or metric_args is None
        else dict(metric_args),
        batch_size=batch_size,
        limit=limit,
        seed=seed,
        output=Path(output),
        run_id=run_id,
        use_cache=use_cache,
        cache_path=Path(cache_path) if cache_path else None,
        strict=strict,
        progress=progress,
        log=lambda _msg: None,
    )
    return _evaluate(cfg)
