"""OpenCompass-style leaderboard tables: one row per model, normalised benchmark columns,
an average score and an average rank, every score with its 95% CI.

Rules (the same in every export and in the site's JavaScript, which recomputes them when a
user narrows the benchmark selection):

- Runs are grouped by model label (adapter name + model args, as ``mmeval show`` prints it):
  several runs of one model on different tasks merge into one row. When two runs of one model
  both have a benchmark, the newest run (``finished``, else ``started``) wins and a warning says
  which runs collided.
- A benchmark's value and CI bounds are normalised by its definition (see ``leaderboard.py``).
- Rank on a benchmark: 1 + the number of models strictly better on it (direction-aware), so
  ties share a rank. Avg rank: the mean of those ranks over the selected benchmarks.
- Avg score: the mean of the normalised values of the benchmarks with ``average: true``. Its
  95% CI half-width is ``sqrt(sum h_i^2) / k`` from the benchmarks' half-widths ``h_i``: the
  benchmarks are different datasets, so their sampling errors are independent.
- A model with none of the selected benchmarks has no row. A model missing some has no average and no overall rank, and is listed after
  the ranked models (most benchmarks first). Overall rank: 1 + the number of ranked models with
  a strictly higher avg score (by avg rank when no benchmark enters the average).
- Exports show ``value ± half-width`` (half the CI's width; Wilson and bootstrap CIs are not
  symmetric, so the JSON export keeps the exact bounds).
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from rich.table import Table

from mmeval.report.leaderboard import Benchmark, Leaderboard
from mmeval.report.store import model_label
from mmeval.types import RunResult

COLUMN_TITLES = {
    "params": "Params",
    "llm_backbone": "LLM backbone",
    "modality_encoder": "Modality encoder",
    "input_projector": "Input projector",
    "output_projector": "Output projector",
    "modality_generator": "Generator",
    "license": "License",
    "open_weights": "Open",
}
SIZE_BUCKETS = ((3e9, "<3B"), (10e9, "3-10B"), (30e9, "10-30B"), (math.inf, ">30B"))


@dataclass
class Score:
    value: float  # normalised
    ci_low: float | None
    ci_high: float | None
    raw: float
    n: int | None
    ci_method: str | None
    run_id: str
    rank: int | None = None

    @property
    def half_width(self) -> float | None:
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_high - self.ci_low) / 2.0

    def text(self, digits: int = 2) -> str:
        hw = self.half_width
        return f"{self.value:.{digits}f}" + ("" if hw is None else f" ± {hw:.{digits}f}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "half_width": self.half_width,
            "raw": self.raw,
            "n": self.n,
            "ci_method": self.ci_method,
            "run": self.run_id,
            "rank": self.rank,
        }


@dataclass
class ModelRow:
    label: str
    card: dict[str, Any]
    capabilities: dict[str, Any]
    runs: list[str]
    scores: dict[str, Score] = field(default_factory=dict)
    rank: int | None = None
    avg: float | None = None
    avg_half_width: float | None = None
    avg_rank: float | None = None

    @property
    def size(self) -> str:
        return size_bucket(self.card.get("params"))

    @property
    def open_weights(self) -> bool | None:
        return self.card.get("open_weights")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.label,
            "rank": self.rank,
            "avg": self.avg,
            "avg_half_width": self.avg_half_width,
            "avg_rank": self.avg_rank,
            "card": self.card,
            "size": self.size,
            "inputs": list(self.capabilities.get("input_modalities") or []),
            "outputs": list(self.capabilities.get("output_modalities") or []),
            "runs": self.runs,
            "scores": {k: s.to_dict() for k, s in self.scores.items()},
        }


@dataclass
class LeaderboardTable:
    board: Leaderboard
    rows: list[ModelRow]
    warnings: list[str] = field(default_factory=list)
    selected: list[Benchmark] = field(default_factory=list)  # the columns shown and averaged

    def __post_init__(self) -> None:
        if not self.selected:
            self.selected = list(self.board.benchmarks)

    def frame(self, digits: int = 2) -> pd.DataFrame:
        """Display frame: strings, ``value ± half-width`` per benchmark (what CSV and Markdown show)."""
        cols = ["Rank", "Model", *(COLUMN_TITLES.get(c, c) for c in self.board.columns), "Avg score", "Avg rank"]
        cols += [b.label for b in self.selected]
        out = []
        for r in self.rows:
            row: list[Any] = ["-" if r.rank is None else str(r.rank), r.label]
            row += [format_card(c, r.card.get(c)) for c in self.board.columns]
            avg = (
                "-" if r.avg is None else f"{r.avg:.{digits}f}" + ("" if r.avg_half_width is None else f" ± {r.avg_half_width:.{digits}f}")
            )
            row += [avg, "-" if r.avg_rank is None else f"{r.avg_rank:.2f}"]
            row += [r.scores[b.label].text(digits) if b.label in r.scores else "-" for b in self.selected]
            out.append(row)
        return pd.DataFrame(out, columns=cols)

    def to_markdown(self) -> str:
        f = self.frame()
        lines = [
            "| " + " | ".join(f.columns) + " |",
            "|" + "|".join("---:" if i == 0 or i >= 2 + len(self.board.columns) else "---" for i in range(len(f.columns))) + "|",
        ]
        for row in f.itertuples(index=False):
            lines.append("| " + " | ".join(_md_cell(str(v)) for v in row) + " |")
        return "\n".join(lines)

    def to_csv(self) -> str:
        buf = io.StringIO()
        self.frame().to_csv(buf, index=False, quoting=csv.QUOTE_MINIMAL)
        return buf.getvalue()

    def to_dict(self) -> dict[str, Any]:
        b = self.board
        return {
            "name": b.name,
            "title": b.title,
            "description": b.description,
            "columns": list(b.columns),
            "column_titles": {c: COLUMN_TITLES.get(c, c) for c in b.columns},
            "groups": list(b.groups),
            "benchmarks": [benchmark_dict(x) for x in b.benchmarks],
            "selected": [x.label for x in self.selected],
            "models": [r.to_dict() for r in self.rows],
            "warnings": self.warnings,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False, default=str)

    def rich(self) -> Table:
        f = self.frame()
        t = Table(title=self.board.title)
        for i, c in enumerate(f.columns):
            t.add_column(c, justify="left" if 0 < i < 2 + len(self.board.columns) else "right")
        for row in f.itertuples(index=False):
            t.add_row(*map(str, row))
        return t


def benchmark_dict(b: Benchmark) -> dict[str, Any]:
    return {
        "label": b.label,
        "task": b.task,
        "metric": b.metric,
        "group": b.group,
        "direction": b.direction,
        "raw_direction": b.raw_direction,
        "average": b.average,
        "normalise": b.normalise.describe(),
        "description": b.description,
    }


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def size_bucket(params: Any) -> str:
    if params is None or isinstance(params, bool) or not isinstance(params, int | float):
        return "unknown"
    return next(name for bound, name in SIZE_BUCKETS if params < bound)


def format_card(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column == "params" and isinstance(value, int | float) and not isinstance(value, bool):
        for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
            if value >= div:
                return f"{value / div:.3g}{unit}"
        return str(int(value))
    if column == "open_weights":
        return "open" if value else "closed"
    return str(value)


def run_time(run: RunResult) -> float:
    """When the run finished (else started; else run.json's mtime), for "newest wins"."""
    for key in ("finished", "started"):
        stamp = run.manifest.get(key)
        if isinstance(stamp, str):
            try:
                return datetime.fromisoformat(stamp).timestamp()
            except ValueError:
                pass
    try:
        return (run.path / "run.json").stat().st_mtime
    except OSError:
        return 0.0


def _score(run: RunResult, b: Benchmark) -> Score | None:
    res = run.tasks.get(b.task)
    if res is None:
        return None
    metric = next((m for m in res.metrics if m.name == b.metric), None)
    if metric is None or metric.value is None or not math.isfinite(metric.value):
        return None
    value = b.normalise.apply(metric.value)
    lo, hi = b.normalise.apply_ci(metric.ci_low, metric.ci_high)
    return Score(value, lo, hi, metric.value, metric.n, metric.ci_method, run.run_id)  # type: ignore[arg-type]


def merge_runs(runs: Iterable[RunResult], board: Leaderboard) -> tuple[list[ModelRow], list[str]]:
    """One row per model label; newest run wins on a benchmark both runs have (warned)."""
    warnings: list[str] = []
    by_label: dict[str, ModelRow] = {}
    for run in sorted(runs, key=run_time):  # oldest first: later runs overwrite
        status = run.manifest.get("status")
        scores = {b.label: s for b in board.benchmarks if (s := _score(run, b)) is not None}
        if not scores:
            continue
        if status != "complete":
            warnings.append(f"run {run.run_id} is {status or 'of unknown status'}; its finished tasks are used")
        for b in board.benchmarks:
            info = run.manifest.get("tasks", {}).get(b.task, {})
            if b.label in scores and info.get("n_docs") and info.get("n_docs_total") and info["n_docs"] < info["n_docs_total"]:
                warnings.append(
                    f"run {run.run_id}: {b.label} evaluated on {info['n_docs']} of {info['n_docs_total']} documents (--limit): "
                    "not comparable with full-benchmark numbers"
                )
        label = model_label(run)
        model = run.manifest.get("model", {})
        row = by_label.get(label)
        if row is None:
            row = by_label[label] = ModelRow(label, dict(model.get("card") or {}), dict(model.get("capabilities") or {}), [])
        else:
            card = dict(model.get("card") or {})
            if card and card != row.card:
                warnings.append(f"model {label}: run {run.run_id} records a different architecture card; the newest is shown")
                row.card = card
        for key, s in scores.items():
            if key in row.scores:
                warnings.append(f"model {label}: {key} is in runs {row.scores[key].run_id} and {run.run_id}; using the newer {run.run_id}")
            row.scores[key] = s
        row.runs.append(run.run_id)
    return list(by_label.values()), warnings


def rank_values(values: Sequence[float], higher_is_better: bool) -> list[int]:
    """1 + number of values strictly better; ties share a rank."""
    ordered = sorted(values)
    if higher_is_better:
        return [1 + len(ordered) - bisect.bisect_right(ordered, v) for v in values]
    return [1 + bisect.bisect_left(ordered, v) for v in values]


def build_table(runs: Iterable[RunResult], board: Leaderboard, selected: Sequence[str] | None = None) -> LeaderboardTable:
    """The leaderboard table over ``selected`` benchmark labels (default: all of the board's)."""
    rows, warnings = merge_runs(runs, board)
    chosen = [board.benchmark(lab) for lab in selected] if selected is not None else list(board.benchmarks)
    rows = [r for r in rows if any(b.label in r.scores for b in chosen)]  # a model with none of them has no row
    for b in board.benchmarks:
        have = [r for r in rows if b.label in r.scores]
        for r, rank in zip(have, rank_values([r.scores[b.label].value for r in have], b.direction == "higher"), strict=True):
            r.scores[b.label].rank = rank
    averaged = [b for b in chosen if b.average]
    complete = [r for r in rows if all(b.label in r.scores for b in chosen)]
    for r in complete:
        if chosen:
            r.avg_rank = sum(r.scores[b.label].rank or 0 for b in chosen) / len(chosen)
        if averaged:
            r.avg = sum(r.scores[b.label].value for b in averaged) / len(averaged)
            hws = [r.scores[b.label].half_width for b in averaged]
            if all(h is not None for h in hws):
                r.avg_half_width = math.sqrt(sum(h * h for h in hws)) / len(averaged)  # type: ignore[operator]
    key = "avg" if averaged else "avg_rank"  # no averaged benchmark: rank by avg rank (lower is better)
    ranks = rank_values([getattr(r, key) for r in complete], bool(averaged))
    for r, rank in zip(complete, ranks, strict=True):
        r.rank = rank
    incomplete = [r for r in rows if r.rank is None]
    complete.sort(key=lambda r: (r.rank, r.avg_rank if r.avg_rank is not None else math.inf, r.label))
    incomplete.sort(key=lambda r: (-sum(b.label in r.scores for b in chosen), r.label))
    return LeaderboardTable(board, complete + incomplete, warnings, chosen)
