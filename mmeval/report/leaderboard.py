"""Leaderboard definitions (``leaderboards/*.yaml``): which benchmarks, how each is normalised,
which way is better, which card columns to show, and what feeds the arena.

A definition is data, not code, so a new leaderboard is a YAML file, and every rule that turns
raw metric values into a ranking is written down where users read it::

    name: opencompass
    title: OpenCompass-style image understanding
    description: ...
    columns: [params, llm_backbone, modality_encoder, input_projector, open_weights]
    benchmarks:
      - {task: mme, metric: mme_total, label: MME, group: perception, normalise: {divide: 28}}
      - {task: coco_t2i_30k, metric: fid, label: FID, group: generation, direction: lower}
    arena: {benchmarks: [MME], rounds: 1000, anchor: {model: constant, rating: 1000}}

Normalisation maps a metric onto the 0-100 scale the average is taken on, and is applied
identically to the value and both CI bounds: ``scale: k`` multiplies (``scale: 100`` for [0, 1]
accuracies), ``divide: k`` divides (``divide: 28`` for MME's perception + cognition total, out of
2,800: what OpenCompass's leaderboard does), ``{min: a, max: b}`` maps a range linearly onto
0-100 and clips there. No ``normalise``: the value as reported.

Lower-is-better metrics (FID, FAD, FVD: ``direction: lower``). Every per-benchmark rank and every
sort respects the direction, and the average rank counts them like any other benchmark. They
are left out of the average *score* by default, because a distance has no natural 0-100 scale
and averaging "FID 12" with "accuracy 80" means nothing. To put one in the average, declare a
range and ``average: true``: with ``direction: lower`` a range maps ``min`` to 100 and ``max`` to
0 (``100 * (max - x) / (max - min)``, clipped), so the normalised column reads higher-is-better
and says so. The choice is explicit per benchmark; nothing is inferred.

Errors name the file and the field (``leaderboards/x.yaml: benchmarks[2].normalise: ...``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from mmeval.models.base import ArchitectureCard
from mmeval.tasks.spec import yaml_problem

Direction = Literal["higher", "lower"]
CARD_COLUMNS = tuple(f.name for f in fields(ArchitectureCard))
TOP_KEYS = {"name", "title", "description", "benchmarks", "columns", "arena"}
BENCH_KEYS = {"task", "metric", "label", "group", "normalise", "direction", "average", "description"}
ARENA_KEYS = {"benchmarks", "rounds", "anchor", "seed"}
DEFAULT_COLUMNS = ("params", "llm_backbone", "modality_encoder", "input_projector", "open_weights")


class LeaderboardError(ValueError):
    """A malformed leaderboard definition. The message starts with ``<file>: <field>:``."""


@dataclass(frozen=True)
class Normalise:
    """value -> normalised value; the same map for the CI bounds (a lower-is-better range swaps them)."""

    scale: float = 1.0
    low: float | None = None  # range mode: ``min``
    high: float | None = None  # range mode: ``max``
    invert: bool = False  # range mode with direction lower: min -> 100, max -> 0

    @property
    def is_range(self) -> bool:
        return self.low is not None

    def apply(self, x: float | None) -> float | None:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return None
        if self.low is None or self.high is None:
            return float(x) * self.scale
        frac = (self.high - x) / (self.high - self.low) if self.invert else (x - self.low) / (self.high - self.low)
        return 100.0 * min(1.0, max(0.0, frac))

    def apply_ci(self, low: float | None, high: float | None) -> tuple[float | None, float | None]:
        a, b = self.apply(low), self.apply(high)
        if a is not None and b is not None and a > b:
            a, b = b, a
        return a, b

    def describe(self) -> str:
        if self.is_range:
            return f"{self.low:g}..{self.high:g} -> {'100..0' if self.invert else '0..100'}"
        if self.scale == 1.0:
            return "as reported"
        return f"x {self.scale:g}" if self.scale >= 1 else f"/ {1 / self.scale:g}"


@dataclass(frozen=True)
class Benchmark:
    task: str
    metric: str
    label: str
    group: str
    normalise: Normalise
    direction: Direction  # of the *normalised* column (a lower metric with a range reads higher)
    average: bool
    raw_direction: Direction
    description: str = ""

    @property
    def key(self) -> str:
        return self.label


@dataclass(frozen=True)
class ArenaSettings:
    benchmarks: tuple[str, ...]  # benchmark labels whose per-sample scores feed battles
    rounds: int = 1000
    anchor_model: str | None = None
    anchor_rating: float = 1000.0
    seed: int = 0


@dataclass(frozen=True)
class Leaderboard:
    name: str
    title: str
    description: str
    benchmarks: tuple[Benchmark, ...]
    columns: tuple[str, ...] = DEFAULT_COLUMNS
    arena: ArenaSettings | None = None
    source: str = ""
    groups: tuple[str, ...] = field(default=())

    def benchmark(self, label: str) -> Benchmark:
        for b in self.benchmarks:
            if b.label == label:
                return b
        raise KeyError(f"{self.source}: no benchmark labelled {label!r}; have {[b.label for b in self.benchmarks]}")

    @property
    def averaged(self) -> tuple[Benchmark, ...]:
        return tuple(b for b in self.benchmarks if b.average)


def load_leaderboard(path: str | Path) -> Leaderboard:
    p = Path(path)
    if not p.exists():
        raise LeaderboardError(f"{p}: leaderboard definition not found (see leaderboards/*.yaml for examples)")
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise LeaderboardError(f"{p}: {yaml_problem(exc, 'leaderboard definition')}") from exc
    return parse_leaderboard(doc, source=str(p))


def parse_leaderboard(doc: Any, source: str = "<leaderboard>") -> Leaderboard:
    def err(where: str, msg: str) -> LeaderboardError:
        return LeaderboardError(f"{source}: {where}: {msg}")

    if not isinstance(doc, dict):
        raise LeaderboardError(f"{source}: expected a mapping with name, title, benchmarks; got {type(doc).__name__}")
    _unknown(doc, TOP_KEYS, "(top level)", err)
    name = _text(doc, "name", "name", err, required=True)
    title = _text(doc, "title", "title", err) or name
    description = _text(doc, "description", "description", err) or ""
    raw = doc.get("benchmarks")
    if not isinstance(raw, list) or not raw:
        raise err("benchmarks", "must be a non-empty list of {task, metric, label, group, ...}")
    benches = tuple(_benchmark(b, f"benchmarks[{i}]", err) for i, b in enumerate(raw))
    seen: dict[str, int] = {}
    for i, b in enumerate(benches):
        if b.label in seen:
            raise err(f"benchmarks[{i}].label", f"{b.label!r} is already used by benchmarks[{seen[b.label]}]; labels must be unique")
        seen[b.label] = i
    columns = doc.get("columns", list(DEFAULT_COLUMNS))
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise err("columns", f"must be a list of card fields ({', '.join(CARD_COLUMNS)})")
    for i, c in enumerate(columns):
        if c not in CARD_COLUMNS:
            raise err(f"columns[{i}]", f"unknown card field {c!r}; one of {', '.join(CARD_COLUMNS)}")
    arena = _arena(doc.get("arena"), seen, err) if doc.get("arena") is not None else None
    groups = tuple(dict.fromkeys(b.group for b in benches))
    return Leaderboard(name, title, description, benches, tuple(columns), arena, source, groups)


def _unknown(d: dict[str, Any], allowed: set[str], where: str, err: Any) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise err(where, f"unknown key(s) {extra}; allowed: {', '.join(sorted(allowed))}")


def _text(d: dict[str, Any], key: str, where: str, err: Any, required: bool = False) -> str | None:
    v = d.get(key)
    if v is None:
        if required:
            raise err(where, "is required")
        return None
    if not isinstance(v, str) or not v.strip():
        raise err(where, f"must be a non-empty string, got {v!r}")
    return v.strip()


def _number(v: Any, where: str, err: Any, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise err(where, f"must be a number, got {v!r}")
    if positive and v <= 0:
        raise err(where, f"must be > 0, got {v!r}")
    return float(v)


def _benchmark(b: Any, where: str, err: Any) -> Benchmark:
    if not isinstance(b, dict):
        raise err(where, f"must be a mapping with task and metric, got {b!r}")
    _unknown(b, BENCH_KEYS, where, err)
    task = _text(b, "task", f"{where}.task", err, required=True)
    metric = _text(b, "metric", f"{where}.metric", err, required=True)
    label = _text(b, "label", f"{where}.label", err) or f"{task}/{metric}"
    group = _text(b, "group", f"{where}.group", err) or "other"
    direction = b.get("direction", "higher")
    if direction not in ("higher", "lower"):
        raise err(f"{where}.direction", f"must be 'higher' or 'lower', got {direction!r}")
    norm = _normalise(b.get("normalise"), direction, f"{where}.normalise", err)
    average = b.get("average", direction == "higher")
    if not isinstance(average, bool):
        raise err(f"{where}.average", f"must be true or false, got {average!r}")
    if average and direction == "lower" and not norm.is_range:
        raise err(
            f"{where}.average",
            "a lower-is-better metric can enter the average only with a declared range, "
            "e.g. normalise: {min: 0, max: 100} (maps min -> 100, max -> 0); or set average: false",
        )
    shown: Direction = "higher" if norm.is_range else direction  # a range always reads higher-is-better
    return Benchmark(task, metric, label, group, norm, shown, average, direction, str(b.get("description") or ""))  # type: ignore[arg-type]


def _normalise(n: Any, direction: str, where: str, err: Any) -> Normalise:
    if n is None:
        return Normalise()
    if not isinstance(n, dict) or not n:
        raise err(where, f"must be one of {{scale: k}}, {{divide: k}}, {{min: a, max: b}}; got {n!r}")
    keys = set(n)
    if keys == {"scale"}:
        return Normalise(scale=_number(n["scale"], f"{where}.scale", err, positive=True))
    if keys == {"divide"}:
        return Normalise(scale=1.0 / _number(n["divide"], f"{where}.divide", err, positive=True))
    if keys == {"min", "max"}:
        lo, hi = _number(n["min"], f"{where}.min", err), _number(n["max"], f"{where}.max", err)
        if hi <= lo:
            raise err(where, f"max ({hi:g}) must be greater than min ({lo:g})")
        return Normalise(low=lo, high=hi, invert=direction == "lower")
    raise err(where, f"keys {sorted(keys)}: use exactly one of {{scale: k}}, {{divide: k}} or {{min: a, max: b}}")


def _arena(a: Any, labels: dict[str, int], err: Any) -> ArenaSettings:
    if not isinstance(a, dict):
        raise err("arena", f"must be a mapping (benchmarks, rounds, anchor, seed), got {a!r}")
    _unknown(a, ARENA_KEYS, "arena", err)
    benches = a.get("benchmarks", list(labels))
    if not isinstance(benches, list) or not benches:
        raise err("arena.benchmarks", "must be a non-empty list of benchmark labels")
    for i, lab in enumerate(benches):
        if lab not in labels:
            raise err(f"arena.benchmarks[{i}]", f"{lab!r} is not a benchmark label here; labels: {', '.join(labels)}")
    rounds = a.get("rounds", 1000)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise err("arena.rounds", f"must be a whole number >= 0 (bootstrap rounds), got {rounds!r}")
    seed = a.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise err("arena.seed", f"must be an integer, got {seed!r}")
    anchor = a.get("anchor")
    model, rating = None, 1000.0
    if anchor is not None:
        if not isinstance(anchor, dict) or set(anchor) - {"model", "rating"}:
            raise err("arena.anchor", f"must be {{model: <label>, rating: <number>}}, got {anchor!r}")
        model = anchor.get("model")
        if model is not None and not isinstance(model, str):
            raise err("arena.anchor.model", f"must be a model label, got {model!r}")
        rating = _number(anchor.get("rating", 1000.0), "arena.anchor.rating", err)
    return ArenaSettings(tuple(benches), rounds, model, rating, seed)


def check_tasks(board: Leaderboard, known: set[str]) -> list[str]:
    """Benchmarks whose task is not in ``known`` (e.g. the catalogue): warnings, not errors,
    since a leaderboard may rank a user's own task files."""
    return [
        f"{board.source}: benchmark {b.label!r}: task {b.task!r} is not in the catalogue" for b in board.benchmarks if b.task not in known
    ]
