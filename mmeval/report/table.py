"""Score tables: one row per (run, task, metric) with n, 95% CI, failures and extraction."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from rich.table import Table

from mmeval.report.store import model_label
from mmeval.types import RunResult

COLUMNS = ["model", "task", "metric", "value", "ci_low", "ci_high", "n", "failed", "extraction", "cached", "run"]


def scores_frame(runs: Iterable[RunResult]) -> pd.DataFrame:
    rows = []
    for run in runs:
        label = model_label(run)
        for task, res in run.tasks.items():
            for m in res.metrics:
                rows.append(
                    {
                        "model": label,
                        "task": task,
                        "metric": m.name,
                        "value": m.value,
                        "ci_low": m.ci_low,
                        "ci_high": m.ci_high,
                        "n": m.n,
                        "failed": res.n_errors,
                        "extraction": res.extraction_rate,
                        "cached": res.n_cached,
                        "run": run.run_id,
                    }
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def _fmt(v: object, digits: int = 4) -> str:
    if _missing(v):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and pd.isna(v))


def _ci(row: tuple) -> str:
    return "-" if _missing(row.ci_low) else f"[{_fmt(row.ci_low)}, {_fmt(row.ci_high)}]"  # type: ignore[attr-defined]


def _ext(row: tuple) -> str:
    return "-" if _missing(row.extraction) else f"{row.extraction:.1%}"  # type: ignore[attr-defined]


def rich_table(frame: pd.DataFrame, title: str | None = None) -> Table:
    table = Table(title=title, show_lines=False)
    for col, justify in [
        ("model", "left"),
        ("task", "left"),
        ("metric", "left"),
        ("value", "right"),
        ("95% CI", "right"),
        ("n", "right"),
        ("failed", "right"),
        ("extraction", "right"),
        ("cached", "right"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in frame.itertuples(index=False):
        ci, ext = _ci(row), _ext(row)
        table.add_row(row.model, row.task, row.metric, _fmt(row.value), ci, str(row.n), str(row.failed), ext, str(row.cached))
    return table


def markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| model | task | metric | value | 95% CI | n | failed | extraction |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for row in frame.itertuples(index=False):
        ci, ext = _ci(row), _ext(row)
        lines.append(f"| {row.model} | {row.task} | {row.metric} | {_fmt(row.value)} | {ci} | {row.n} | {row.failed} | {ext} |")
    return "\n".join(lines)
