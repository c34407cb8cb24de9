"""Leaderboard definitions, OpenCompass-style tables and the architecture view.

Tables are built from synthetic RunResults (random scores), and every rank, average and CI is
checked against an independent brute-force computation written here."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy.stats import t as student_t

from mmeval.report.architecture import OVERALL, architecture_view
from mmeval.report.leaderboard import LeaderboardError, load_leaderboard, parse_leaderboard
from mmeval.report.opencompass import build_table, size_bucket
from mmeval.tasks.registry import task_index
from mmeval.types import MetricValue, RunResult, TaskResult

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "leaderboards").glob("*.yaml"))
CAPTION_KEYS = {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider", "meteor"}

BOARD = {
    "name": "t",
    "title": "T",
    "benchmarks": [
        {"task": "a", "metric": "acc", "label": "A", "group": "g1", "normalise": {"scale": 100}},
        {"task": "b", "metric": "acc", "label": "B", "group": "g1", "normalise": {"scale": 100}},
        {"task": "c", "metric": "total", "label": "C", "group": "g2", "normalise": {"divide": 28}},
        {"task": "d", "metric": "fid", "label": "D", "group": "gen", "direction": "lower"},
    ],
}


def make_run(
    run_id: str, name: str, scores: dict[str, tuple[str, float, float, float]], card: dict[str, Any] | None = None, t: int = 0
) -> RunResult:
    """scores: task -> (metric, value, ci_low, ci_high)."""
    tasks = {
        task: TaskResult(task=task, version=1, n=100, metrics=[MetricValue(metric, v, 100, None, lo, hi, "normal")])
        for task, (metric, v, lo, hi) in scores.items()
    }
    manifest = {
        "run_id": run_id,
        "status": "complete",
        "finished": f"2026-01-01T00:00:{t:02d}+00:00",
        "model": {"name": name, "args": {}, "card": card or {}, "capabilities": {"input_modalities": ["image", "text"]}},
        "tasks": {task: {"n_docs": 100, "n_docs_total": 100} for task in scores},
    }
    return RunResult(run_id, Path("/nonexistent") / run_id, manifest, tasks)


def random_runs(rng: np.random.Generator, n_models: int, drop: set[tuple[int, str]] = frozenset()) -> list[RunResult]:  # type: ignore[assignment]
    runs = []
    projectors = ["linear", "mlp", "q-former"]
    for i in range(n_models):
        scores = {}
        for task, metric, scale in (("a", "acc", 1), ("b", "acc", 1), ("c", "total", 2800), ("d", "fid", 50)):
            if (i, task) in drop:
                continue
            # Few distinct values, so ties happen and must share ranks.
            v = float(rng.integers(0, 6)) / 5 * scale
            hw = float(rng.uniform(0.01, 0.05)) * scale
            scores[task] = (metric, v, v - hw, v + hw)
        card = {"input_projector": projectors[i % 3], "params": int(rng.choice([1e9, 7e9, 13e9, 70e9])), "modality_encoder": "clip"}
        runs.append(make_run(f"run{i}", f"m{i}", scores, card, t=i))
    return runs


# --------------------------------------------------------------------------- definitions


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_leaderboards_name_catalogue_tasks_and_their_metrics(path: Path) -> None:
    board = load_leaderboard(path)
    index = task_index()
    for b in board.benchmarks:
        assert b.task in index, f"{path.name}: {b.task} is not a catalogue task"
        spec_metrics = [m.name for m in index[b.task].metrics]
        plausible = any(b.metric.startswith(m) for m in spec_metrics) or ("caption" in spec_metrics and b.metric in CAPTION_KEYS)
        assert plausible, f"{path.name}: {b.label}: metric {b.metric} does not come from {spec_metrics}"
        if b.raw_direction == "lower":
            assert not b.average  # shipped boards keep distances out of the average


def test_expected_shipped_boards() -> None:
    assert {p.stem for p in SHIPPED} >= {"opencompass", "audio", "any-to-any", "demo"}
    oc = load_leaderboard(ROOT / "leaderboards" / "opencompass.yaml")
    mme = oc.benchmark("MME")
    assert mme.normalise.apply(2800.0) == pytest.approx(100.0)  # MME total / 28, as OpenCompass
    assert {"mmbench_en_dev", "mme", "mmmu_val", "pope", "vqav2_val", "coco_karpathy_test"} <= {b.task for b in oc.benchmarks}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"colour": 1}, "(top level)"),
        ({"benchmarks": []}, "benchmarks"),
        ({"benchmarks": [{"task": "a"}]}, "benchmarks[0].metric"),
        ({"benchmarks": [{"task": "a", "metric": "m", "direction": "up"}]}, "benchmarks[0].direction"),
        ({"benchmarks": [{"task": "a", "metric": "m", "normalise": {"scale": 100, "divide": 2}}]}, "benchmarks[0].normalise"),
        ({"benchmarks": [{"task": "a", "metric": "m", "normalise": {"divide": 0}}]}, "benchmarks[0].normalise.divide"),
        ({"benchmarks": [{"task": "a", "metric": "m", "normalise": {"min": 5, "max": 1}}]}, "benchmarks[0].normalise"),
        ({"benchmarks": [{"task": "a", "metric": "fid", "direction": "lower", "average": True}]}, "benchmarks[0].average"),
        ({"benchmarks": [{"task": "a", "metric": "m", "label": "X"}, {"task": "b", "metric": "m", "label": "X"}]}, "benchmarks[1].label"),
        ({"columns": ["params", "colour"]}, "columns[1]"),
        ({"arena": {"benchmarks": ["nope"]}}, "arena.benchmarks[0]"),
        ({"arena": {"rounds": -1}}, "arena.rounds"),
    ],
)
def test_validation_errors_name_file_and_field(tmp_path: Path, patch: dict[str, Any], field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BOARD, **patch}))
    with pytest.raises(LeaderboardError) as info:
        load_leaderboard(path)
    assert str(info.value).startswith(f"{path}: {field}:"), str(info.value)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(LeaderboardError, match="not found"):
        load_leaderboard(tmp_path / "nope.yaml")
    (tmp_path / "x.yaml").write_text("name: [unclosed")
    with pytest.raises(LeaderboardError, match="invalid YAML"):
        load_leaderboard(tmp_path / "x.yaml")


def test_normalisation_maps_value_and_ci() -> None:
    board = parse_leaderboard(
        {
            **BOARD,
            "benchmarks": [
                {"task": "a", "metric": "m", "normalise": {"scale": 100}},
                {"task": "b", "metric": "m", "normalise": {"min": 10, "max": 30}},
                {"task": "c", "metric": "fid", "direction": "lower", "average": True, "normalise": {"min": 0, "max": 50}},
            ],
        }
    )
    scale, rng_, fid = board.benchmarks
    assert scale.normalise.apply(0.734) == pytest.approx(73.4)
    assert rng_.normalise.apply(15) == pytest.approx(25.0) and rng_.normalise.apply(40) == 100.0 and rng_.normalise.apply(0) == 0.0
    # lower-is-better with a range: min -> 100, max -> 0, CI bounds swap, column reads higher
    assert fid.normalise.apply(10) == pytest.approx(80.0)
    assert fid.normalise.apply_ci(5, 15) == pytest.approx((70.0, 90.0))
    assert fid.direction == "higher" and fid.raw_direction == "lower" and fid.average
    assert scale.normalise.apply(float("nan")) is None


# --------------------------------------------------------------------------- tables


def brute_rank(values: list[float], higher: bool) -> list[int]:
    return [1 + sum((w > v) if higher else (w < v) for w in values) for v in values]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_table_ranks_averages_and_cis_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    board = parse_leaderboard(BOARD)
    runs = random_runs(rng, 9, drop={(3, "b"), (7, "d")})
    table = build_table(runs, board)
    norm = {"A": 100.0, "B": 100.0, "C": 1 / 28, "D": 1.0}
    raw = {r.manifest["model"]["name"]: {t: res.metrics[0] for t, res in r.tasks.items()} for r in runs}
    label_task = {"A": "a", "B": "b", "C": "c", "D": "d"}
    rows = {r.label: r for r in table.rows}
    # per-benchmark ranks, direction-aware, ties shared
    for lab, task in label_task.items():
        have = [m for m in raw if task in raw[m]]
        vals = [raw[m][task].value * norm[lab] for m in have]
        for m, want in zip(have, brute_rank(vals, lab != "D"), strict=True):
            assert rows[m].scores[lab].rank == want
            assert rows[m].scores[lab].value == pytest.approx(raw[m][task].value * norm[lab])
    complete = [m for m in raw if len(raw[m]) == 4]
    for m in raw:
        if m not in complete:
            assert rows[m].avg is None and rows[m].rank is None and rows[m].avg_rank is None
            continue
        vals = [raw[m][label_task[lab]].value * norm[lab] for lab in "ABC"]  # D (lower) is not averaged
        assert rows[m].avg == pytest.approx(np.mean(vals))
        hws = [(raw[m][label_task[lab]].ci_high - raw[m][label_task[lab]].ci_low) / 2 * norm[lab] for lab in "ABC"]
        assert rows[m].avg_half_width == pytest.approx(math.sqrt(sum(h * h for h in hws)) / 3)
        assert rows[m].avg_rank == pytest.approx(np.mean([rows[m].scores[lab].rank for lab in "ABCD"]))
    avgs = [rows[m].avg for m in complete]
    for m, want in zip(complete, brute_rank(avgs, True), strict=True):  # type: ignore[arg-type]
        assert rows[m].rank == want
    # ranked models first, in rank order; the incomplete ones after
    order = [r.label for r in table.rows]
    assert order[: len(complete)] == sorted(complete, key=lambda m: (rows[m].rank, rows[m].avg_rank, m))
    assert set(order[len(complete) :]) == {"m3", "m7"}


def test_newest_run_wins_on_conflict_and_runs_merge() -> None:
    board = parse_leaderboard(BOARD)
    old = make_run("old", "m", {"a": ("acc", 0.2, 0.1, 0.3), "b": ("acc", 0.5, 0.4, 0.6)}, t=1)
    new = make_run("new", "m", {"a": ("acc", 0.9, 0.8, 1.0)}, t=5)
    other = make_run("other", "m", {"c": ("total", 1400, 1300, 1500), "d": ("fid", 3.0, 2.0, 4.0)}, t=3)
    table = build_table([new, other, old], board)
    (row,) = table.rows
    assert row.scores["A"].value == pytest.approx(90.0) and row.scores["A"].run_id == "new"
    assert row.scores["B"].run_id == "old" and row.scores["C"].value == pytest.approx(50.0)
    assert row.avg == pytest.approx((90 + 50 + 50) / 3)
    assert any("A is in runs old and new" in w for w in table.warnings)


def test_selected_benchmarks_and_no_average_ranks_by_avg_rank() -> None:
    board = parse_leaderboard(BOARD)
    runs = [
        make_run("r1", "m1", {"d": ("fid", 5.0, 4.0, 6.0), "a": ("acc", 0.1, 0, 0.2)}),
        make_run("r2", "m2", {"d": ("fid", 9.0, 8.0, 10.0)}),
        make_run("r3", "m3", {"d": ("fid", 1.0, 0.5, 1.5)}),
    ]
    table = build_table(runs, board, selected=["D"])
    assert [r.label for r in table.rows] == ["m3", "m1", "m2"]  # lower FID first
    assert [r.rank for r in table.rows] == [1, 2, 3] and all(r.avg is None for r in table.rows)
    assert list(table.frame().columns)[-1] == "D" and "A" not in table.frame().columns
    only_a = build_table(runs, board, selected=["A"])
    assert [r.label for r in only_a.rows] == ["m1"] and only_a.rows[0].rank == 1  # no row without a selected benchmark


def test_exports_show_value_plus_minus_half_width() -> None:
    rng = np.random.default_rng(5)
    table = build_table(random_runs(rng, 4), parse_leaderboard(BOARD))
    frame = table.frame()
    parsed = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert len(parsed) == 4 and list(parsed[0]) == list(frame.columns)
    for row, rec in zip(table.rows, parsed, strict=True):
        s = row.scores["A"]
        value, hw = rec["A"].split(" ± ")
        assert float(value) == pytest.approx(s.value, abs=0.006) and float(hw) == pytest.approx(s.half_width, abs=0.006)
    md = table.to_markdown().splitlines()
    assert md[0].startswith("| Rank | Model | Params") and len(md) == 2 + 4 and "±" in md[2]
    doc = json.loads(table.to_json())
    assert [m["model"] for m in doc["models"]] == [r.label for r in table.rows]
    assert doc["models"][0]["scores"]["A"]["ci_low"] == pytest.approx(table.rows[0].scores["A"].ci_low)


def test_size_buckets() -> None:
    assert [size_bucket(p) for p in (0, 2.9e9, 3e9, 9.9e9, 13e9, 30e9, 70e9, None)] == [
        "<3B", "<3B", "3-10B", "3-10B", "10-30B", ">30B", ">30B", "unknown",
    ]  # fmt: skip


# --------------------------------------------------------------------------- architecture view


def test_architecture_view_matches_independent_mean_and_t_interval() -> None:
    rng = np.random.default_rng(11)
    table = build_table(random_runs(rng, 9), parse_leaderboard(BOARD))
    view = architecture_view(table)
    by = {(g.dimension, g.value): g for g in view.groups}
    for proj in ("linear", "mlp", "q-former"):
        avgs = [r.avg for r in table.rows if r.card["input_projector"] == proj]
        g = by[("input_projector", proj)]
        agg = g.scores[OVERALL]
        assert agg.n == len(avgs) == 3
        assert agg.mean == pytest.approx(np.mean(avgs))
        half = student_t.ppf(0.975, 2) * np.std(avgs, ddof=1) / math.sqrt(3)
        assert (agg.ci_low, agg.ci_high) == pytest.approx((np.mean(avgs) - half, np.mean(avgs) + half))
        # group column g1 = mean of A and B per model, then across models
        g1 = [np.mean([r.scores["A"].value, r.scores["B"].value]) for r in table.rows if r.card["input_projector"] == proj]
        assert g.scores["g1"].mean == pytest.approx(np.mean(g1))
    sizes = {g.value: len(g.models) for g in view.groups if g.dimension == "llm_size"}
    assert sum(sizes.values()) == 9 and set(sizes) <= {"<3B", "3-10B", "10-30B", ">30B"}
    assert "n = models" in view.note and "| Input projector | linear | 3 |" in view.to_markdown()
