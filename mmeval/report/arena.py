"""Arena-style leaderboard: Bradley-Terry ratings with bootstrap CIs, from paired outcomes and votes.

Two sources of battles feed one table (``model_a, model_b, winner in a/b/tie, task, metric,
doc_id, source, judge``):

- *paired* battles: two runs scored the same document of the same task; the higher per-sample
  score wins, equal scores tie (a lower-is-better metric is negated first);
- *vote* battles: human (or judge-model) preferences, JSON lines as in docs/votes.md.

Everything numeric works on aggregated pair counts (:class:`PairCounts`: ``wins[i, j]`` = battles
i won against j, ``ties[i, j]`` = ties between them), never battle by battle: the likelihood only
depends on those counts, so 150M paired battles (100 models x 30 tasks x 1,000 docs) reduce to two
100x100 matrices, built straight from score matrices with one matrix product per distinct score
level. The per-battle table is only materialised on request (``keep_battles``).

Bradley-Terry: P(i beats j) = 1 / (1 + 10^((r_j - r_i) / 400)), a tie counting half a win for each
side; fitted by Newton's method with step halving on the concave log-likelihood, the shift
invariance removed by keeping sum(beta) = 0. Where the maximum-likelihood estimate does not exist
(a model, or a group of models, never lost or never won against the rest: pure MLE sends it to
+-inf) a weak L2 prior (``WEAK_PRIOR``) is used instead and a warning names the models.

Bootstrap: resampling N battles with replacement only matters through how many battles of each
type (pair, outcome) are drawn, which is multinomial(N, observed shares) (the trick of
``stats.bootstrap_mean_ci``); all rounds of a block are then fitted at once by batched Newton.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.special import expit, log_expit

from mmeval.engine.store import RUN_FILE
from mmeval.report.store import RunStoreError, iter_samples, model_label
from mmeval.types import RunResult

SCALE, BASE, CENTER = 400.0, 10.0, 1000.0
DEFAULT_ROUNDS = 1000
WEAK_PRIOR = 0.01  # L2 ridge on beta (log-odds units): a N(0, 10^2) prior, i.e. sd ~1,700 rating points
WINNERS = ("a", "b", "tie")
VOTE_WINNERS = {"model_a": "a", "model_b": "b", "tie": "tie", "tie (bothbad)": "tie"}
BATTLE_COLUMNS = ["model_a", "model_b", "winner", "task", "metric", "doc_id", "source", "judge"]
TABLE_COLUMNS = ["rank_ub", "model", "rating", "ci_low", "ci_high", "votes", "win_rate"]
_MATMUL_LEVELS = 32  # up to this many distinct scores, pair counts come from matrix products
_BLOCK_CELLS = 2_000_000  # bound on elements of the [rounds, M, M] / [M, M, docs] work arrays


class ArenaError(ValueError):
    """Bad arena input (votes file, battles table, anchor): the message says where and what to fix."""


@dataclass(frozen=True)
class Selection:
    task: str
    metric: str
    higher_is_better: bool = True


# --------------------------------------------------------------------------- runs -> paired scores


def _newest_key(run: RunResult) -> tuple[float, int, str]:
    stamp = run.manifest.get("finished") or run.manifest.get("started") or ""
    try:
        t = datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        t = -math.inf
    try:
        mtime = (run.path / RUN_FILE).stat().st_mtime_ns
    except OSError:
        mtime = 0
    return t, mtime, run.run_id


def select_runs(runs: Iterable[RunResult]) -> tuple[list[RunResult], list[str]]:
    """One run per model label: the newest (finish time, then run.json mtime); the rest are named in warnings."""
    groups: dict[str, list[RunResult]] = {}
    for run in runs:
        groups.setdefault(model_label(run), []).append(run)
    kept, warnings = [], []
    for label, group in groups.items():
        newest = max(group, key=_newest_key)
        if len(group) > 1:
            older = ", ".join(sorted(r.run_id for r in group if r is not newest))
            warnings.append(f"model {label!r} has {len(group)} runs: kept the newest ({newest.run_id}), left out {older}")
        kept.append(newest)
    return kept, warnings


@dataclass(frozen=True)
class ScoreBlock:
    """Per-sample scores of one (task, metric): ``scores[model, doc]``, oriented so higher is better, NaN if missing."""

    task: str
    metric: str
    doc_ids: list[str]
    scores: np.ndarray


@dataclass
class PairedScores:
    models: list[str]
    blocks: list[ScoreBlock]
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> PairCounts:
        m = len(self.models)
        wins, ties = np.zeros((m, m)), np.zeros((m, m))
        for block in self.blocks:
            w, t = _compare(block.scores)
            wins += w
            ties += t
        return PairCounts(tuple(self.models), wins, ties)

    def battles(self) -> pd.DataFrame:
        """One row per (model pair, task, metric, doc) that both models scored; model_a is the earlier model."""
        names = np.array(self.models, dtype=object)
        ia, ib = np.triu_indices(len(self.models), 1)
        frames = []
        for block in self.blocks:
            sa, sb = block.scores[ia], block.scores[ib]
            pair, doc = np.nonzero(~np.isnan(sa) & ~np.isnan(sb))
            va, vb = sa[pair, doc], sb[pair, doc]
            winner = np.where(va > vb, "a", np.where(va < vb, "b", "tie")).astype(object)
            docs = np.array(block.doc_ids, dtype=object)[doc]
            frames.append(
                pd.DataFrame(
                    {"model_a": names[ia[pair]], "model_b": names[ib[pair]], "winner": winner, "task": block.task, "metric": block.metric}
                ).assign(doc_id=docs, source="paired", judge=None)
            )
        return pd.concat(frames, ignore_index=True)[BATTLE_COLUMNS] if frames else pd.DataFrame(columns=BATTLE_COLUMNS)


def _read_scores(run: RunResult, sel: Selection) -> dict[str, float]:
    out = {}
    for rec in iter_samples(run, sel.task):
        value = (rec.get("scores") or {}).get(sel.metric)
        if rec.get("error") is None and isinstance(value, int | float) and math.isfinite(value):
            out[str(rec["doc_id"])] = float(value)
    return out


def paired_scores(runs: Iterable[RunResult], selections: Iterable[Selection | tuple[str, str, bool]]) -> PairedScores:
    """Score matrices for the selected (task, metric, higher_is_better), one row per model label."""
    kept, warnings = select_runs(runs)
    models = [model_label(r) for r in kept]
    blocks = []
    for sel in (s if isinstance(s, Selection) else Selection(*s) for s in selections):
        per_model: list[dict[str, float]] = []
        for run, label in zip(kept, models, strict=True):
            try:
                per_model.append(_read_scores(run, sel) if sel.task in run.tasks else {})
            except RunStoreError:
                per_model.append({})
            if sel.task not in run.tasks or not per_model[-1]:
                warnings.append(f"model {label!r} (run {run.run_id}) has no per-sample {sel.metric!r} scores for task {sel.task!r}")
        docs = list(dict.fromkeys(d for scores in per_model for d in scores))
        if not docs:
            warnings.append(f"task {sel.task!r}: no run has per-sample {sel.metric!r} scores (corpus metrics such as FID make no battles)")
            continue
        index = {d: k for k, d in enumerate(docs)}
        matrix = np.full((len(models), len(docs)), np.nan)
        for row, scores in enumerate(per_model):
            matrix[row, [index[d] for d in scores]] = list(scores.values())
        blocks.append(ScoreBlock(sel.task, sel.metric, docs, matrix if sel.higher_is_better else -matrix))
    return PairedScores(models, blocks, warnings)


def paired_battles(runs: Iterable[RunResult], selections: Iterable[Selection | tuple[str, str, bool]]) -> tuple[pd.DataFrame, list[str]]:
    scores = paired_scores(runs, selections)
    return scores.battles(), scores.warnings


def _compare(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """wins[i, j] = docs where i scored higher than j, ties[i, j] = docs where both scored the same (NaN: no battle)."""
    m, d = scores.shape
    wins, ties = np.zeros((m, m)), np.zeros((m, m))
    levels = np.unique(scores[~np.isnan(scores)])
    if levels.size <= _MATMUL_LEVELS:  # 0/1 accuracy, VQA's 4 levels...: a few BLAS calls
        for v in levels:
            at = (scores == v).astype(np.float64)
            wins += at @ (scores < v).astype(np.float64).T
            ties += at @ at.T
    else:
        step = max(1, _BLOCK_CELLS // (m * m))
        for start in range(0, d, step):
            s = scores[:, start : start + step]
            wins += (s[:, None, :] > s[None, :, :]).sum(axis=2)
            ties += (s[:, None, :] == s[None, :, :]).sum(axis=2)
    np.fill_diagonal(ties, 0.0)
    return wins, ties


# --------------------------------------------------------------------------- votes


def _vote(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    row: dict[str, Any] = {}
    for key in ("model_a", "model_b"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise ValueError(f"field {key!r} must be a non-empty string (the model's name), got {obj.get(key)!r}")
        row[key] = obj[key].strip()
    if row["model_a"] == row["model_b"]:
        raise ValueError(f"model_a and model_b are both {row['model_a']!r}: a model cannot battle itself")
    if obj.get("winner") not in VOTE_WINNERS:
        raise ValueError(f"field 'winner' is {obj.get('winner')!r}; expected one of {', '.join(VOTE_WINNERS)}")
    row["winner"] = VOTE_WINNERS[obj["winner"]]
    doc = next((obj[k] for k in ("doc_id", "prompt_id", "question_id") if obj.get(k) is not None), None)
    for key, value in (("task", obj.get("task")), ("doc_id", doc), ("judge", obj.get("judge"))):
        if value is not None and not isinstance(value, str | int):
            raise ValueError(f"field {key!r} must be a string or an integer, got {value!r}")
        row[key] = None if value is None else str(value)
    return {**row, "metric": None, "source": "vote"}


def load_votes(path: str | Path) -> pd.DataFrame:
    """Votes (JSON lines, docs/votes.md) as a battles table with source="vote"; every bad line is reported."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArenaError(f"{p}: cannot read the votes file: {exc}") from exc
    rows, errors = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(_vote(json.loads(line)))
        except json.JSONDecodeError as exc:
            errors.append(f"line {lineno}: invalid JSON: {exc.msg} (column {exc.colno})")
        except ValueError as exc:
            errors.append(f"line {lineno}: {exc}")
    if errors:
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise ArenaError(f"{p}: {len(errors)} bad vote line(s) (format: docs/votes.md):\n  " + "\n  ".join(errors[:10]) + more)
    if not rows:
        raise ArenaError(f"{p}: no votes (expected one JSON object per line, see docs/votes.md)")
    return pd.DataFrame(rows, columns=BATTLE_COLUMNS, dtype=object)


# --------------------------------------------------------------------------- counts


@dataclass(frozen=True)
class PairCounts:
    """Aggregated battles: ``wins[i, j]`` battles i won against j; ``ties`` symmetric, ``ties[i, j]`` = ties of i and j."""

    models: tuple[str, ...]
    wins: np.ndarray
    ties: np.ndarray

    @classmethod
    def from_battles(cls, battles: pd.DataFrame) -> PairCounts:
        missing = {"model_a", "model_b", "winner"} - set(battles.columns)
        if missing:
            raise ArenaError(f"battles table lacks column(s) {sorted(missing)}; it has {list(battles.columns)}")
        winner = battles["winner"].to_numpy(dtype=object)
        bad = ~np.isin(winner, WINNERS)
        if bad.any():
            raise ArenaError(f"battles table: winner must be one of {WINNERS}; row {int(np.argmax(bad))} has {winner[bad][0]!r}")
        a_names, b_names = battles["model_a"].astype(str).to_numpy(), battles["model_b"].astype(str).to_numpy()
        models = sorted(set(a_names) | set(b_names))
        code = {name: k for k, name in enumerate(models)}
        a = np.fromiter((code[x] for x in a_names), dtype=np.int64, count=len(a_names))
        b = np.fromiter((code[x] for x in b_names), dtype=np.int64, count=len(b_names))
        if (a == b).any():
            raise ArenaError(f"battles table: row {int(np.argmax(a == b))} has model {a_names[a == b][0]!r} against itself")
        m = len(models)

        def tally(mask: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return np.bincount(x[mask] * m + y[mask], minlength=m * m).reshape(m, m).astype(np.float64)

        tied = tally(winner == "tie", a, b)
        return cls(tuple(models), tally(winner == "a", a, b) + tally(winner == "b", b, a), tied + tied.T)

    def merge(self, other: PairCounts) -> PairCounts:
        models = list(dict.fromkeys([*self.models, *other.models]))
        m = len(models)
        wins, ties = np.zeros((m, m)), np.zeros((m, m))
        for part in (self, other):
            idx = np.array([models.index(x) for x in part.models], dtype=np.int64)
            wins[np.ix_(idx, idx)] += part.wins
            ties[np.ix_(idx, idx)] += part.ties
        return PairCounts(tuple(models), wins, ties)

    def subset(self, keep: np.ndarray) -> PairCounts:
        idx = np.flatnonzero(keep)
        return PairCounts(tuple(self.models[k] for k in idx), self.wins[np.ix_(idx, idx)], self.ties[np.ix_(idx, idx)])

    def battles_per_model(self) -> np.ndarray:
        return self.wins.sum(axis=1) + self.wins.sum(axis=0) + self.ties.sum(axis=1)

    @property
    def n_battles(self) -> int:
        return round(float(self.wins.sum() + self.ties.sum() / 2))

    def effective_wins(self) -> np.ndarray:
        """Wins with each tie counted as half a win for both sides: the Bradley-Terry sufficient statistic."""
        return self.wins + 0.5 * self.ties


# --------------------------------------------------------------------------- Bradley-Terry


def _objective(beta: np.ndarray, w: np.ndarray, lam: np.ndarray) -> np.ndarray:
    return (w * log_expit(beta[:, :, None] - beta[:, None, :])).sum(axis=(1, 2)) - 0.5 * lam * (beta**2).sum(axis=1)


def _newton(w: np.ndarray, lam: np.ndarray, beta0: np.ndarray | None = None, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Maximise sum w[i,j] log sigmoid(b_i - b_j) - lam/2 |b|^2 for each of R problems; w: [R, M, M].

    Keeps sum(b) = 0: the likelihood is shift-invariant, so its gradient sums to 0, and the 1/M
    term added to the Hessian fixes the free direction without changing any step orthogonal to it.
    Returns (beta [R, M], converged [R])."""
    r, m, _ = w.shape
    n = w + w.transpose(0, 2, 1)
    beta = np.zeros((r, m)) if beta0 is None else beta0 - beta0.mean(axis=1, keepdims=True)
    f = _objective(beta, w, lam)
    tol = 1e-11 * np.maximum(1.0, n.sum(axis=(1, 2)) / m)
    done = np.zeros(r, dtype=bool)
    for _ in range(max_iter):
        p = expit(beta[:, :, None] - beta[:, None, :])
        grad = (w - n * p).sum(axis=2) - lam[:, None] * beta
        done = np.abs(grad).max(axis=1) <= tol
        if done.all():
            break
        h = n * p * (1.0 - p)
        a = -h
        a[:, np.arange(m), np.arange(m)] = h.sum(axis=2) + lam[:, None]
        delta = np.linalg.solve(a + 1.0 / m, grad[..., None])[..., 0]
        delta[done] = 0.0
        step = np.ones(r)
        for _ in range(50):  # step halving: Newton on a concave function, guarded against overshoot
            cand = beta + step[:, None] * delta
            f_new = _objective(cand, w, lam)
            worse = f_new < f - 1e-12 * np.abs(f)
            if not worse.any():
                break
            step[worse] *= 0.5
        beta, f = cand - cand.mean(axis=1, keepdims=True), f_new
    return beta, done


def _mle_exists(w: np.ndarray) -> bool:
    """Ford's condition: the MLE is finite iff the 'i won (or tied) against j' graph is strongly connected."""
    return connected_components(csr_matrix(w > 0), directed=True, connection="strong")[0] == 1


def _why_no_mle(counts: PairCounts) -> str:
    w = counts.effective_wins() > 0
    n, comp = connected_components(csr_matrix(w), directed=True, connection="strong")
    parts = []
    for c in range(n):
        inside = comp == c
        members = [counts.models[k] for k in np.flatnonzero(inside)]
        names = ", ".join(repr(x) for x in members[:8]) + (" ..." if len(members) > 8 else "")
        won, lost = w[np.ix_(inside, ~inside)].any(), w[np.ix_(~inside, inside)].any()
        if not won and not lost:
            parts.append(f"{names} never battled the other models")
        elif not lost:
            parts.append(f"{names} never lost to the other models")
        elif not won:
            parts.append(f"{names} never won or tied against the other models")
    return "; ".join(parts)


@dataclass(frozen=True)
class BradleyTerryFit:
    models: tuple[str, ...]
    ratings: np.ndarray  # Elo scale, see to_ratings
    beta: np.ndarray  # natural log-odds strengths, sum 0
    prior: float  # the L2 strength used (0: pure maximum likelihood)
    warnings: list[str]


def to_ratings(beta: np.ndarray, models: Sequence[str], center: float = CENTER, anchor: str | None = None) -> np.ndarray:
    """rating = center + 400/ln(10) * beta, with beta of mean 0, or shifted so that ``anchor`` rates ``center``."""
    ratings = SCALE / math.log(BASE) * np.asarray(beta, dtype=np.float64)
    ref = ratings[..., list(models).index(anchor)] if anchor is not None else ratings.mean(axis=-1)
    return center + ratings - np.expand_dims(ref, -1)


def fit_bradley_terry(counts: PairCounts, prior: float | None = None, center: float = CENTER, anchor: str | None = None) -> BradleyTerryFit:
    """Bradley-Terry by maximum likelihood (ties half a win each); ``prior``: None = MLE, or WEAK_PRIOR where it does not exist."""
    if prior is not None and not prior > 0:
        raise ArenaError(f"prior must be a positive L2 strength, or None for maximum likelihood; got {prior!r}")
    if len(counts.models) < 2:
        raise ArenaError(f"a rating needs at least two models with battles; got {list(counts.models)}")
    if anchor is not None and anchor not in counts.models:
        raise ArenaError(f"anchor model {anchor!r} is not among the rated models: {list(counts.models)}")
    w = counts.effective_wins()
    warnings = []
    lam = prior
    if lam is None:
        lam = 0.0 if _mle_exists(w) else WEAK_PRIOR
        if lam:
            warnings.append(f"no finite maximum-likelihood rating ({_why_no_mle(counts)}): used a weak L2 prior ({WEAK_PRIOR})")
    beta, done = _newton(w[None], np.array([lam]))
    if not done[0]:
        warnings.append("the Bradley-Terry fit did not converge in 100 Newton steps")
    return BradleyTerryFit(counts.models, to_ratings(beta[0], counts.models, center, anchor), beta[0], lam, warnings)


def _bootstrap(counts: PairCounts, beta: np.ndarray, rounds: int, seed: int, prior: float | None) -> tuple[np.ndarray, int]:
    """beta for each of ``rounds`` resamples of the battles (multinomial over battle types); and how many needed the weak prior."""
    m = len(counts.models)
    ia, ib = np.triu_indices(m, 1)
    kinds = np.concatenate([counts.wins[ia, ib], counts.wins[ib, ia], counts.ties[ia, ib]])
    present = np.flatnonzero(kinds)
    total = round(float(kinds.sum()))
    probs = kinds[present] / kinds[present].sum()
    n_pairs = ia.size
    cell_ab, cell_ba = ia * m + ib, ib * m + ia
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // (m * m))
    out, n_prior = [], 0
    for start in range(0, rounds, block):
        b = min(block, rounds - start)
        draws = np.zeros((b, kinds.size))
        draws[:, present] = rng.multinomial(total, probs, size=b)
        half_ties = 0.5 * draws[:, 2 * n_pairs :]
        w = np.zeros((b, m * m))
        w[:, cell_ab] = draws[:, :n_pairs] + half_ties
        w[:, cell_ba] = draws[:, n_pairs : 2 * n_pairs] + half_ties
        w = w.reshape(b, m, m)
        lam = np.full(b, prior) if prior is not None else np.array([0.0 if _mle_exists(x) else WEAK_PRIOR for x in w])
        n_prior += int((lam > 0).sum()) if prior is None else 0
        out.append(_newton(w, lam, np.broadcast_to(beta, (b, m)))[0])
    return np.concatenate(out), n_prior


# --------------------------------------------------------------------------- result


@dataclass
class ArenaResult:
    counts: PairCounts
    ratings: np.ndarray  # in counts.models order
    ci_low: np.ndarray
    ci_high: np.ndarray
    boot_ratings: np.ndarray  # [rounds, models]
    settings: dict[str, Any]
    warnings: list[str]
    battles: pd.DataFrame | None = None

    def _order(self) -> np.ndarray:
        return np.argsort(-self.ratings, kind="stable")

    def table(self) -> pd.DataFrame:
        """rank_ub = 1 + models whose CI lower bound is above this model's CI upper bound; sorted by rating."""
        votes = self.counts.battles_per_model()
        win_rate = self.counts.effective_wins().sum(axis=1) / votes
        rank_ub = 1 + (self.ci_low[None, :] > self.ci_high[:, None]).sum(axis=1)
        frame = pd.DataFrame(
            {
                "rank_ub": rank_ub,
                "model": list(self.counts.models),
                "rating": self.ratings,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "votes": votes.astype(np.int64),
                "win_rate": win_rate,
            }
        )
        return frame.iloc[self._order()].reset_index(drop=True)[TABLE_COLUMNS]

    def _matrix(self, values: np.ndarray) -> pd.DataFrame:
        order = self._order()
        names = [self.counts.models[k] for k in order]
        frame = pd.DataFrame(values[np.ix_(order, order)], index=pd.Index(names, name="model"), columns=names)
        frame.columns.name = "opponent"
        return frame

    @property
    def win_matrix(self) -> pd.DataFrame:
        """Observed win rate of the row model against the column model (ties half); NaN where they never met."""
        n = self.counts.wins + self.counts.wins.T + self.counts.ties
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._matrix(np.where(n > 0, self.counts.effective_wins() / n, np.nan))

    @property
    def predicted_win_matrix(self) -> pd.DataFrame:
        """P(row beats column) under the fitted ratings: 1 / (1 + 10^((r_col - r_row) / 400))."""
        diff = self.ratings[None, :] - self.ratings[:, None]
        values = 1.0 / (1.0 + BASE ** (diff / SCALE))
        np.fill_diagonal(values, np.nan)
        return self._matrix(values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes None) summary for the leaderboard site."""
        matrix = self.win_matrix
        return _jsonable(
            {
                **self.settings,
                "n_battles": self.counts.n_battles,
                "models": self.table().to_dict(orient="records"),
                "win_matrix": {"models": list(matrix.index), "win_rate": matrix.to_numpy().tolist()},
                "predicted_win_matrix": self.predicted_win_matrix.to_numpy().tolist(),
                "warnings": self.warnings,
            }
        )

    def to_markdown(self) -> str:
        lines = ["| rank (UB) | model | rating | 95% CI | battles | win rate |", "|---:|---|---:|---:|---:|---:|"]
        for row in self.table().itertuples(index=False):
            ci = f"[{row.ci_low:.0f}, {row.ci_high:.0f}]" if not math.isnan(row.ci_low) else "-"
            lines.append(f"| {row.rank_ub} | {row.model} | {row.rating:.1f} | {ci} | {row.votes} | {row.win_rate:.1%} |")
        return "\n".join(lines)

    def to_csv(self, path: str | Path | None = None) -> str | None:
        return self.table().to_csv(path, index=False)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def compute_arena(
    source: pd.DataFrame | PairCounts,
    *,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    level: float = 0.95,
    prior: float | None = None,
    center: float = CENTER,
    anchor: str | None = None,
    warnings: Sequence[str] = (),
) -> ArenaResult:
    """Ratings, percentile bootstrap CIs (``rounds`` resamples of the battles, seeded) and win rates."""
    if rounds < 2:
        raise ArenaError(f"rounds must be at least 2 (100 or more for a usable 95% interval); got {rounds}")
    if not 0.0 < level < 1.0:
        raise ArenaError(f"level must be in (0, 1); got {level}")
    battles = source if isinstance(source, pd.DataFrame) else None
    counts = PairCounts.from_battles(source) if isinstance(source, pd.DataFrame) else source
    notes = list(warnings)
    played = counts.battles_per_model() > 0
    if not played.all():
        notes.append(f"models without any battle are not rated: {[x for x, p in zip(counts.models, played, strict=True) if not p]}")
        counts = counts.subset(played)
    fit = fit_bradley_terry(counts, prior, center, anchor)
    notes += fit.warnings
    boot_beta, n_prior = _bootstrap(counts, fit.beta, rounds, seed, prior)
    if n_prior:
        notes.append(f"{n_prior} of {rounds} bootstrap rounds had no finite maximum-likelihood rating and used the weak prior")
    boot = to_ratings(boot_beta, counts.models, center, anchor)
    low, high = np.quantile(boot, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)
    settings = {
        "method": "bradley-terry",
        "scale": SCALE,
        "base": BASE,
        "center": center,
        "anchor": anchor,
        "prior": fit.prior,
        "rounds": rounds,
        "seed": seed,
        "level": level,
    }
    return ArenaResult(counts, fit.ratings, low, high, boot, settings, notes, battles)


def arena_from_runs(
    runs: Iterable[RunResult],
    selections: Iterable[Selection | tuple[str, str, bool]],
    votes: pd.DataFrame | None = None,
    keep_battles: bool = False,
    **options: Any,
) -> ArenaResult:
    """Paired battles from ``runs`` on ``selections``, plus ``votes`` (load_votes), rated by compute_arena(**options)."""
    scores = paired_scores(runs, selections)
    counts, notes = scores.counts(), list(scores.warnings)
    battles = scores.battles() if keep_battles else None
    if votes is not None and len(votes):
        vote_counts = PairCounts.from_battles(votes)
        strangers = sorted(set(vote_counts.models) - set(counts.models))
        if strangers and counts.models:
            example = list(counts.models)[:5]
            notes.append(f"models only in votes, in no run: {strangers} (run models are named 'name (arg=value)', e.g. {example})")
        counts = counts.merge(vote_counts)
        battles = pd.concat([battles, votes[BATTLE_COLUMNS]], ignore_index=True) if battles is not None else None
    return replace(compute_arena(counts, warnings=notes, **options), battles=battles)
