"""Architecture view: leaderboard scores aggregated by architecture-card component.

"Which input projector aligns modalities best?" is a question about *models*, so the unit here
is the model, not the sample: for each component value (input projector type, modality
encoder, LLM backbone, LLM size bucket) the view reports the mean of the models' normalised
average scores, with a 95% CI across those models (n = number of models), and the same per
benchmark group (a model's group score is the mean of its normalised averaged benchmarks in
that group, when it has them all).

The CI is ``mean ± t(0.975, n-1) * se`` with ``se`` the standard error of the mean from
:func:`mmeval.metrics.stats.mean_ci`. Student's t rather than the normal quantile because n is
the number of models, often 2-5, where the normal interval is far too narrow. A group of one
model has no CI. The models in a group also differ in everything else (data, LLM, training
recipe), so the view is descriptive: a wide or overlapping interval is the honest answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from scipy.stats import t as student_t

from mmeval.metrics.stats import mean_ci
from mmeval.report.opencompass import LeaderboardTable, ModelRow

DIMENSIONS = {
    "input_projector": "Input projector",
    "modality_encoder": "Modality encoder",
    "llm_size": "LLM size",
    "llm_backbone": "LLM backbone",
}
OVERALL = "Avg score"


@dataclass
class Aggregate:
    mean: float
    ci_low: float | None
    ci_high: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}


@dataclass
class ComponentGroup:
    dimension: str
    value: str
    models: list[str]
    scores: dict[str, Aggregate] = field(default_factory=dict)  # OVERALL or a benchmark group -> aggregate

    def to_dict(self) -> dict[str, Any]:
        return {
            "dimension": self.dimension,
            "value": self.value,
            "models": self.models,
            "n": len(self.models),
            "scores": {k: a.to_dict() for k, a in self.scores.items()},
        }


def aggregate(values: list[float], level: float = 0.95) -> Aggregate:
    stats = mean_ci(values, binary_aware=False)
    n = len(values)
    if stats["stderr"] is None or n < 2:
        return Aggregate(float(stats["value"]), None, None, n)
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * stats["stderr"]
    return Aggregate(float(stats["value"]), stats["value"] - half, stats["value"] + half, n)


def component_value(row: ModelRow, dimension: str) -> str:
    if dimension == "llm_size":
        return row.size
    value = row.card.get(dimension)
    if value is None or (isinstance(value, str) and not value.strip()):
        return "unknown"
    return str(value).strip().lower() if dimension == "input_projector" else str(value).strip()


def group_scores(table: LeaderboardTable) -> dict[str, dict[str, float]]:
    """model label -> {OVERALL: avg, <benchmark group>: mean of its averaged benchmarks}."""
    out: dict[str, dict[str, float]] = {}
    groups: dict[str, list[str]] = {}
    for b in table.selected:
        if b.average:
            groups.setdefault(b.group, []).append(b.label)
    for r in table.rows:
        s: dict[str, float] = {}
        if r.avg is not None:
            s[OVERALL] = r.avg
        for g, labels in groups.items():
            if all(lab in r.scores for lab in labels):
                s[g] = sum(r.scores[lab].value for lab in labels) / len(labels)
        out[r.label] = s
    return out


@dataclass
class ArchitectureView:
    columns: list[str]  # OVERALL then the benchmark groups
    groups: list[ComponentGroup]
    note: str = (
        "Mean of the models' normalised scores per component; 95% CI across models (Student's t, n = models). "
        "Models differ in more than one component: descriptive, not causal."
    )

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "dimensions": DIMENSIONS, "groups": [g.to_dict() for g in self.groups], "note": self.note}

    def to_markdown(self) -> str:
        lines = [f"_{self.note}_", "", "| Component | Value | Models | " + " | ".join(self.columns) + " |"]
        lines.append("|---|---|---:|" + "---:|" * len(self.columns))
        for g in self.groups:
            cells = []
            for c in self.columns:
                a = g.scores.get(c)
                if a is None:
                    cells.append("-")
                elif a.ci_low is None:
                    cells.append(f"{a.mean:.2f} (n={a.n})")
                else:
                    cells.append(f"{a.mean:.2f} [{a.ci_low:.2f}, {a.ci_high:.2f}] (n={a.n})")
            lines.append(f"| {DIMENSIONS[g.dimension]} | {g.value.replace('|', '/')} | {len(g.models)} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def architecture_view(table: LeaderboardTable) -> ArchitectureView:
    per_model = group_scores(table)
    columns = [OVERALL, *dict.fromkeys(b.group for b in table.selected if b.average)]
    out: list[ComponentGroup] = []
    for dim in DIMENSIONS:
        members: dict[str, list[ModelRow]] = {}
        for r in table.rows:
            members.setdefault(component_value(r, dim), []).append(r)
        for value in sorted(members, key=lambda v: (v == "unknown", v)):
            rows = members[value]
            g = ComponentGroup(dim, value, [r.label for r in rows])
            for c in columns:
                vals = [per_model[r.label][c] for r in rows if c in per_model[r.label]]
                if vals and all(math.isfinite(v) for v in vals):
                    g.scores[c] = aggregate(vals)
            out.append(g)
    return ArchitectureView(columns, out)
