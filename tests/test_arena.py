"""Arena leaderboard math: Bradley-Terry against an independent logistic regression, bootstrap
coverage on simulated battles, ties, anchor, direction, votes loader, and battles from real runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from mmeval.engine.runner import RunConfig, evaluate
from mmeval.report.arena import (
    ArenaError,
    PairCounts,
    PairedScores,
    ScoreBlock,
    Selection,
    arena_from_runs,
    compute_arena,
    fit_bradley_terry,
    load_votes,
    model_label,
    paired_battles,
    paired_scores,
)
from mmeval.report.store import iter_samples
from mmeval.report.table import scores_frame

ELO = 400.0 / math.log(10.0)
MCQ = Selection("demo_mcq", "choice_accuracy", True)


def simulate(seed: int, m: int = 10, n: int = 3000) -> tuple[np.ndarray, pd.DataFrame]:
    """Battles from known ratings (mean 1000). Ties occur with probability t = 0.8 p (1 - p) and
    take t/2 from each side's win probability, so E[wins + ties/2] = p: the model the fit assumes."""
    rng = np.random.default_rng(seed)
    true = rng.uniform(700, 1300, m)
    true += 1000 - true.mean()
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    p = 1 / (1 + 10 ** ((true[b] - true[a]) / 400))
    tie = 0.8 * p * (1 - p)
    u = rng.random(n)
    winner = np.where(u < tie, "tie", np.where(u < tie + p - tie / 2, "a", "b"))
    names = np.array([f"m{i}" for i in range(m)])
    return true, pd.DataFrame({"model_a": names[a], "model_b": names[b], "winner": winner})


def by_name(models: tuple[str, ...], values: np.ndarray) -> dict[str, float]:
    return dict(zip(models, values.tolist(), strict=True))


# --------------------------------------------------------------------------- Bradley-Terry


def test_fit_matches_plain_logistic_regression_on_the_battles() -> None:
    _, battles = simulate(1, m=6, n=800)
    models = sorted(set(battles.model_a) | set(battles.model_b))
    col = {x: k for k, x in enumerate(models)}
    # One row per battle (+1 for model_a, -1 for model_b); a tie is two half-weighted rows, y=1 and y=0.
    rows, y, weight = [], [], []
    for a, b, w in battles.itertuples(index=False):
        x = np.zeros(len(models))
        x[col[a]], x[col[b]] = 1.0, -1.0
        for outcome, wt in [(1.0, 1.0)] if w == "a" else [(0.0, 1.0)] if w == "b" else [(1.0, 0.5), (0.0, 0.5)]:
            rows.append(x)
            y.append(outcome)
            weight.append(wt)
    design, y_arr, w_arr = np.array(rows)[:, 1:], np.array(y), np.array(weight)  # model 0 is the reference (beta_0 = 0)

    def nll(beta: np.ndarray) -> tuple[float, np.ndarray]:
        z = design @ beta
        loss = np.sum(w_arr * (np.logaddexp(0.0, z) - y_arr * z))
        return float(loss), design.T @ (w_arr * (1.0 / (1.0 + np.exp(-z)) - y_arr))

    opt = minimize(nll, np.zeros(len(models) - 1), jac=True, method="BFGS", options={"gtol": 1e-10})
    beta = np.concatenate([[0.0], opt.x])
    expected = 1000.0 + ELO * (beta - beta.mean())
    fit = fit_bradley_terry(PairCounts.from_battles(battles))
    assert fit.models == tuple(models) and fit.prior == 0.0 and not fit.warnings
    np.testing.assert_allclose(fit.ratings, expected, rtol=0, atol=1e-6)
    assert fit.ratings.mean() == pytest.approx(1000.0)


def test_ties_count_half_a_win_each() -> None:
    # 3 wins, 2 ties, 1 loss: effective score 4 of 6, so P(a beats b) = 2/3 and the gap is 400 log10(2).
    battles = pd.DataFrame({"model_a": ["a"] * 6, "model_b": ["b"] * 6, "winner": ["a", "a", "a", "tie", "tie", "b"]})
    fit = fit_bradley_terry(PairCounts.from_battles(battles))
    r = by_name(fit.models, fit.ratings)
    assert r["a"] - r["b"] == pytest.approx(400 * math.log10(2), abs=1e-9)
    assert (r["a"] + r["b"]) / 2 == pytest.approx(1000.0)
    # Two ties between b and c are the same evidence as one win each way.
    two_ties = pd.DataFrame({"model_a": ["a", "b", "c"] * 2, "model_b": ["b", "c", "a"] * 2, "winner": ["a", "tie", "a", "a", "tie", "b"]})
    split = two_ties.copy()
    split.loc[1, "winner"], split.loc[4, "winner"] = "a", "b"
    f1, f2 = fit_bradley_terry(PairCounts.from_battles(two_ties)), fit_bradley_terry(PairCounts.from_battles(split))
    np.testing.assert_allclose(f1.ratings, f2.ratings, atol=1e-9)
    # Only ties: everyone is rated the centre.
    only_ties = two_ties.assign(winner="tie")
    res = compute_arena(only_ties, rounds=50)
    np.testing.assert_allclose(res.ratings, 1000.0, atol=1e-9)
    assert (res.table()["win_rate"] == 0.5).all()


def test_swapping_sides_changes_nothing() -> None:
    _, battles = simulate(2, m=5, n=600)
    swapped = battles.rename(columns={"model_a": "model_b", "model_b": "model_a"})
    swapped["winner"] = swapped["winner"].map({"a": "b", "b": "a", "tie": "tie"})
    a, b = compute_arena(battles, rounds=100, seed=3), compute_arena(swapped[["model_a", "model_b", "winner"]], rounds=100, seed=3)
    pd.testing.assert_frame_equal(a.table(), b.table(), atol=1e-8, rtol=0)
    pd.testing.assert_frame_equal(a.win_matrix, b.win_matrix)


def test_anchor_fixes_one_model_and_keeps_the_gaps() -> None:
    _, battles = simulate(3, m=6, n=1000)
    centred = compute_arena(battles, rounds=100)
    anchored = compute_arena(battles, rounds=100, anchor="m2", center=1500.0)
    r = by_name(anchored.counts.models, anchored.ratings)
    assert r["m2"] == pytest.approx(1500.0, abs=1e-9)
    gaps = anchored.ratings - anchored.ratings[0]
    np.testing.assert_allclose(gaps, centred.ratings - centred.ratings[0], atol=1e-8)
    row = anchored.table().set_index("model").loc["m2"]
    assert row.ci_low == pytest.approx(1500.0) and row.ci_high == pytest.approx(1500.0)  # CIs are relative to the anchor
    with pytest.raises(ArenaError, match="anchor model 'nope'"):
        compute_arena(battles, rounds=10, anchor="nope")


def test_recovers_known_ratings_within_bootstrap_cis() -> None:
    """A correct 95% interval covers the truth 95% of the time, so over 200 intervals the share is
    ~Binomial(200, 0.95)/200: below 0.90 or above 0.99 happens with probability < 0.5% each.
    (Over 1,000 intervals, 100 seeds, this implementation measured 0.946.)"""
    hits, errors = [], []
    for seed in range(20):
        true, battles = simulate(seed)
        res = compute_arena(battles, seed=seed)
        truth = true[[int(x[1:]) for x in res.counts.models]]
        hits.extend((res.ci_low <= truth) & (truth <= res.ci_high))
        errors.extend(res.ratings - truth)
    coverage = float(np.mean(hits))
    assert 0.90 <= coverage <= 0.99, coverage
    assert abs(np.mean(errors)) < 5 and np.sqrt(np.mean(np.square(errors))) < 40


def test_multinomial_bootstrap_matches_resampling_battles_one_by_one() -> None:
    _, battles = simulate(4, m=4, n=400)
    res = compute_arena(battles, rounds=1000, seed=0)
    rng = np.random.default_rng(123)
    naive = []
    for _ in range(400):
        sample = battles.iloc[rng.integers(0, len(battles), len(battles))]
        naive.append(fit_bradley_terry(PairCounts.from_battles(sample)).ratings)
    low, high = np.quantile(np.array(naive), [0.025, 0.975], axis=0)
    width = res.ci_high - res.ci_low
    np.testing.assert_allclose(res.ci_low, low, atol=0.15 * width.mean())
    np.testing.assert_allclose(res.ci_high, high, atol=0.15 * width.mean())


def test_model_that_never_wins_gets_a_finite_rating_and_a_warning() -> None:
    battles = pd.DataFrame(
        {"model_a": ["a", "b", "a", "c", "c", "a"], "model_b": ["b", "a", "c", "b", "a", "c"], "winner": ["a", "a", "a", "b", "b", "a"]}
    )  # c beats nobody and ties nobody
    res = compute_arena(battles, rounds=100)
    assert "'c' never won or tied" in " ".join(res.warnings) and res.settings["prior"] > 0
    table = res.table()
    assert table.model.iloc[-1] == "c" and np.isfinite(table.rating).all()
    winners = battles.replace({"winner": {"a": "b", "b": "a"}})  # now c never loses
    assert "'c' never lost" in " ".join(compute_arena(winners, rounds=20).warnings)


def test_seeded_bootstrap_is_deterministic() -> None:
    _, battles = simulate(5, m=5, n=500)
    a, b, c = (
        compute_arena(battles, rounds=200, seed=7),
        compute_arena(battles, rounds=200, seed=7),
        compute_arena(battles, rounds=200, seed=8),
    )
    pd.testing.assert_frame_equal(a.table(), b.table())
    np.testing.assert_array_equal(a.ratings, c.ratings)
    assert not np.allclose(a.ci_low, c.ci_low)


def test_table_win_matrix_and_exports() -> None:
    _, battles = simulate(6, m=6, n=900)
    res = compute_arena(battles, rounds=100)
    table = res.table()
    assert list(table.columns) == ["rank_ub", "model", "rating", "ci_low", "ci_high", "votes", "win_rate"]
    assert table.rating.is_monotonic_decreasing and table.votes.sum() == 2 * len(battles)
    for row in table.itertuples():
        assert row.rank_ub == 1 + int((table.ci_low > row.ci_high).sum())
    # Win rates from the battles directly, ties counted half, both orientations.
    score = battles.winner.map({"a": 1.0, "b": 0.0, "tie": 0.5})
    both = pd.concat(
        [
            pd.DataFrame({"m": battles.model_a, "o": battles.model_b, "s": score}),
            pd.DataFrame({"m": battles.model_b, "o": battles.model_a, "s": 1 - score}),
        ]
    )
    expected = both.pivot_table(index="m", columns="o", values="s", aggfunc="mean")
    got = res.win_matrix
    for m in expected.index:
        for o in expected.columns:
            assert got.loc[m, o] == pytest.approx(expected.loc[m, o]) if m != o else np.isnan(got.loc[m, o])
        assert table.set_index("model").win_rate[m] == pytest.approx(both[both.m == m].s.mean())
    pred = res.predicted_win_matrix
    top, bottom = table.model.iloc[0], table.model.iloc[-1]
    assert pred.loc[top, bottom] + pred.loc[bottom, top] == pytest.approx(1.0) and pred.loc[top, bottom] > 0.5
    doc = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert [r["model"] for r in doc["models"]] == table.model.tolist() and doc["rounds"] == 100
    assert doc["win_matrix"]["win_rate"][0][0] is None
    assert top in res.to_markdown() and res.to_csv().splitlines()[0] == ",".join(table.columns)


# --------------------------------------------------------------------------- paired battles


def test_pair_counts_from_scores_match_the_battles_table() -> None:
    rng = np.random.default_rng(0)
    discrete = rng.integers(0, 3, (5, 40)).astype(float)  # matrix-product path
    continuous = rng.random((5, 30)).round(1) + 5 * rng.random((5, 1)).round(0)  # broadcast path (> 32 levels)
    for s in (discrete, continuous):
        s[rng.random(s.shape) < 0.2] = np.nan
    models = [f"m{i}" for i in range(5)]
    scores = PairedScores(
        models,
        [
            ScoreBlock("t1", "x", [f"d{k}" for k in range(40)], discrete),
            ScoreBlock("t2", "y", list("abcdefghijklmnopqrstuvwxyz1234"), continuous),
        ],
    )
    battles = scores.battles()
    for a, b, w, task, _, doc, *_ in battles.itertuples(index=False):  # every battle agrees with its raw scores
        s = discrete if task == "t1" else continuous
        d = int(doc[1:]) if task == "t1" else "abcdefghijklmnopqrstuvwxyz1234".index(doc)
        va, vb = s[models.index(a), d], s[models.index(b), d]
        assert w == ("a" if va > vb else "b" if va < vb else "tie")
    assert len(battles) == sum(
        int((~np.isnan(s[i]) & ~np.isnan(s[j])).sum()) for s in (discrete, continuous) for i in range(5) for j in range(i + 1, 5)
    )
    direct, via_table = scores.counts(), PairCounts.from_battles(battles)
    order = [direct.models.index(m) for m in via_table.models]
    np.testing.assert_array_equal(direct.wins[np.ix_(order, order)], via_table.wins)
    np.testing.assert_array_equal(direct.ties[np.ix_(order, order)], via_table.ties)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, mmeval_cache: Path) -> list:
    out = tmp_path_factory.mktemp("arena-runs")

    def run(model: str, **args: str):
        return evaluate(RunConfig(model=model, model_args=args, tasks=["demo_mcq"], output=out, progress=False, log=lambda _m: None))

    return [run("constant", answer="A"), run("random-choice"), run("random-choice", seed="3")]


def test_paired_battles_from_real_runs(runs: list) -> None:
    battles, warnings = paired_battles(runs[:2], [MCQ])
    assert not warnings
    labels = [model_label(r) for r in runs[:2]]
    assert labels == ["constant (answer=A)", "random-choice"] and set(scores_frame(runs[:2]).model) == set(labels)
    a = {r["doc_id"]: r["scores"]["choice_accuracy"] for r in iter_samples(runs[0], "demo_mcq")}
    b = {r["doc_id"]: r["scores"]["choice_accuracy"] for r in iter_samples(runs[1], "demo_mcq")}
    expected = {d: "a" if a[d] > b[d] else "b" if a[d] < b[d] else "tie" for d in a}
    assert dict(zip(battles.doc_id, battles.winner, strict=True)) == expected
    assert set(battles.model_a) == {labels[0]} and (battles.source == "paired").all() and (battles.task == "demo_mcq").all()
    # A lower-is-better metric flips every decided battle.
    flipped, _ = paired_battles(runs[:2], [("demo_mcq", "choice_accuracy", False)])
    assert flipped.winner.tolist() == battles.winner.map({"a": "b", "b": "a", "tie": "tie"}).tolist()


def test_duplicate_model_keeps_the_newest_run(runs: list, tmp_path: Path) -> None:
    again = evaluate(RunConfig(model="random-choice", tasks=["demo_mcq"], output=runs[1].path.parent, progress=False, log=lambda _m: None))
    scores = paired_scores([again, *runs], [MCQ])
    assert scores.models == ["random-choice", "constant (answer=A)", "random-choice (seed=3)"]
    assert any(f"kept the newest ({again.run_id})" in w and runs[1].run_id in w for w in scores.warnings)


def test_arena_from_runs_merges_votes(runs: list, tmp_path: Path) -> None:
    path = tmp_path / "votes.jsonl"
    votes = [
        {"model_a": "constant (answer=A)", "model_b": "random-choice", "winner": "model_b", "task": "demo_mcq", "doc_id": "mcq000"}
    ] * 5
    votes.append({"model_a": "human-favourite", "model_b": "random-choice", "winner": "model_a"})
    path.write_text("\n".join(json.dumps(v) for v in votes) + "\n")
    res = arena_from_runs(runs, [MCQ, ("demo_mcq", "no_such_metric", True)], votes=load_votes(path), keep_battles=True, rounds=100)
    assert set(res.counts.models) == {"constant (answer=A)", "random-choice", "random-choice (seed=3)", "human-favourite"}
    assert any("models only in votes" in w and "human-favourite" in w for w in res.warnings)
    assert any("no_such_metric" in w for w in res.warnings)
    assert res.battles is not None and (res.battles.source == "vote").sum() == 6 and res.counts.n_battles == len(res.battles)
    paired_only = paired_scores(runs, [MCQ]).counts()
    i, j = res.counts.models.index("random-choice"), res.counts.models.index("constant (answer=A)")
    k, n = paired_only.models.index("random-choice"), paired_only.models.index("constant (answer=A)")
    assert res.counts.wins[i, j] == paired_only.wins[k, n] + 5


# --------------------------------------------------------------------------- votes


def test_votes_loader_reads_lmarena_style_lines(tmp_path: Path) -> None:
    path = tmp_path / "votes.jsonl"
    lines = [
        {"model_a": "x", "model_b": "y", "winner": "model_a", "question_id": 17, "judge": "arena_user_1", "tstamp": 1.7e9, "turn": 1},
        {
            "model_a": "y",
            "model_b": "x",
            "winner": "tie (bothbad)",
            "prompt_id": "p2",
            "conversation_a": [{"role": "user", "content": "hi"}],
        },
        {"model_a": "x", "model_b": "z", "winner": "tie", "task": "demo_vqa", "doc_id": "q1", "timestamp": "2025-01-01T00:00:00Z"},
        {"model_a": "z", "model_b": "y", "winner": "model_b"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    votes = load_votes(path)
    assert votes.winner.tolist() == ["a", "tie", "tie", "b"] and (votes.source == "vote").all()
    assert votes.doc_id.tolist() == ["17", "p2", "q1", None] and votes.judge.iloc[0] == "arena_user_1"
    assert votes.task.tolist() == [None, None, "demo_vqa", None]


def test_votes_loader_names_every_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"model_a": "x", "model_b": "y", "winner": "model_a"}),
                "{not json",
                json.dumps({"model_a": "x", "winner": "model_a"}),
                json.dumps({"model_a": "x", "model_b": "x", "winner": "tie"}),
                json.dumps({"model_a": "x", "model_b": "y", "winner": "A"}),
                json.dumps(["x", "y"]),
            ]
        )
    )
    with pytest.raises(ArenaError) as err:
        load_votes(path)
    msg = str(err.value)
    assert "5 bad vote line(s)" in msg and str(path) in msg
    for expected in [
        "line 2: invalid JSON",
        "line 3: field 'model_b'",
        "line 4: model_a and model_b are both 'x'",
        "line 5: field 'winner' is 'A'",
        "line 6: expected a JSON object",
    ]:
        assert expected in msg
    with pytest.raises(ArenaError, match="cannot read"):
        load_votes(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ArenaError, match="no votes"):
        load_votes(tmp_path / "empty.jsonl")


def test_bad_battles_table_and_options_are_clear_errors() -> None:
    with pytest.raises(ArenaError, match="lacks column"):
        PairCounts.from_battles(pd.DataFrame({"model_a": ["x"], "winner": ["a"]}))
    with pytest.raises(ArenaError, match="winner must be one of"):
        PairCounts.from_battles(pd.DataFrame({"model_a": ["x"], "model_b": ["y"], "winner": ["model_a"]}))
    ok = pd.DataFrame({"model_a": ["x", "y"], "model_b": ["y", "x"], "winner": ["a", "a"]})
    with pytest.raises(ArenaError, match="rounds must be at least 2"):
        compute_arena(ok, rounds=1)
    with pytest.raises(ArenaError, match="prior must be"):
        compute_arena(ok, prior=0.0)
    with pytest.raises(ArenaError, match="at least two models"):
        compute_arena(pd.DataFrame({"model_a": ["x"], "model_b": ["y"], "winner": ["a"]}).iloc[:0])
