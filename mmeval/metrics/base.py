"""Metric and answer-parser contracts, and their registries.

A *parser* turns a response text into a parsed answer plus the extraction stage that produced
it (``"unparsed"`` when nothing could be extracted: counted, never replaced by a guess).

A *metric* is either
- per-sample: ``score(parsed, target, ctx) -> {sub_metric: float}``; aggregated by the runner
  as a mean with a 95% CI (clustered when the task has ``cluster_by``), or
- corpus-level (``corpus = True``): ``corpus_score(parsed_list, targets, ctxs)`` returns
  ``{sub_metric: CorpusScore}`` with the value and, where possible, per-sample contributions
  or a bootstrap CI.

Metrics are pure functions of (responses, references); they never see models.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from mmeval.types import Response


class MetricArgsError(ValueError):
    """Bad metric arguments (task YAML or --metric-args): raised before any model is built."""


@dataclass(frozen=True)
class ParseContext:
    """What a parser or metric may know about a sample besides the response."""

    doc_id: str
    choices: tuple[str, ...] | None = None  # option labels, e.g. ("A", "B", "C", "D")
    options: tuple[str, ...] | None = None  # option texts, aligned with ``choices``
    doc: dict[str, Any] = field(default_factory=dict)
    root: Path | None = None  # the run directory: generated media paths are relative to it


class Parser:
    name: ClassVar[str] = "parser"

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def parse(self, text: str, ctx: ParseContext) -> tuple[Any, str]:
        raise NotImplementedError

    def parse_response(self, response: Response, ctx: ParseContext) -> tuple[Any, str]:
        """What the scorer calls. Text parsers read the text; media parsers the artifacts."""
        return self.parse(response.text, ctx)


@dataclass
class CorpusScore:
    value: float
    per_sample: list[float] | None = None  # when the corpus value is the mean of these
    ci_low: float | None = None
    ci_high: float | None = None
    stderr: float | None = None
    # What the value is computed over when that is not the samples (circular groups, MME
    # images), and how its CI was formed; None: the runner's defaults (samples, bootstrap).
    n: int | None = None
    ci_method: str | None = None
    n_clusters: int | None = None


class Metric:
    name: ClassVar[str] = "metric"
    corpus: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True
    # Keys a user may set at run time (``mmeval run --metric-args inception_weights=PATH``):
    # machine-specific things such as local weight paths and devices, never task semantics.
    run_args: ClassVar[frozenset[str]] = frozenset()
    # True: ``corpus_score`` also gets ``all_targets``, every evaluated document's reference
    # (failed samples included), because the reference set must not depend on the model.
    wants_all_targets: ClassVar[bool] = False

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def score(self, parsed: Any, target: Any, ctx: ParseContext) -> dict[str, float]:
        raise NotImplementedError

    def score_batch(self, parsed: Sequence[Any], targets: Sequence[Any], ctxs: Sequence[ParseContext]) -> list[dict[str, float]]:
        """Per-sample scores for all samples at once (what the scorer calls). Model-based
        metrics (CLIPScore, CLAP score) override it to batch their forward passes. A sample
        may get ``{}``: no value (e.g. no generated media), so it is left out of that n."""
        return [self.score(p, t, c) for p, t, c in zip(parsed, targets, ctxs, strict=True)]

    def corpus_score(
        self, parsed: Sequence[Any], targets: Sequence[Any], ctxs: Sequence[ParseContext], seed: int = 0
    ) -> dict[str, CorpusScore]:
        raise NotImplementedError


class UnknownNameError(MetricArgsError, KeyError):
    """A metric or parser name that is not in the registry (a task file's error, so the CLI
    reports it as one, before any model loads)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _lookup(kind: str, table: dict[str, str], name: str) -> Any:
    # Only a registry key reaches importlib: a task YAML names metrics and parsers, never modules.
    if name not in table:
        close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        if ":" in name or "." in name:
            hint += f" A {kind} is named from mmeval's registry, not by a module path."
        raise UnknownNameError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(table))}")
    module, _, attr = table[name].partition(":")
    return getattr(importlib.import_module(module), attr)


class UntrustedHookError(MetricArgsError):
    """A ``module:attr`` hook named in a task or metric argument that lives outside trusted code."""


# The source checkout mmeval runs from (it has pyproject.toml); None when mmeval is installed.
_CHECKOUT = Path(__file__).resolve().parents[2]
PROJECT_ROOT: Path | None = _CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() else None


def _plugin_packages() -> set[str]:
    """Top-level packages of installed plugins: those that register ``mmeval.*`` entry points."""
    from importlib.metadata import distributions

    return {ep.module.split(".")[0] for dist in distributions() for ep in dist.entry_points if ep.group.startswith("mmeval.")}


def _distrust(top: str) -> str | None:
    """None when top-level package ``top`` is trusted code; else why it is not. The package is
    located (``find_spec`` of a top-level name executes nothing), never imported, here."""
    import importlib.util
    import sys

    if top == "mmeval" or top in _plugin_packages():
        return None
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return f"no module named {top!r} (is it installed, or on PYTHONPATH?)"
    places = [spec.origin] if spec.origin and spec.has_location else list(spec.submodule_search_locations or [])
    # In the checkout but not in an interpreter or virtualenv: a .venv inside the checkout
    # holds the stdlib's links and every installed package.
    outside = [Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)]
    paths = [Path(p).resolve() for p in places]
    if PROJECT_ROOT and paths and all(p.is_relative_to(PROJECT_ROOT) and not any(p.is_relative_to(o) for o in outside) for p in paths):
        return None
    where = f"this project's checkout ({PROJECT_ROOT}), " if PROJECT_ROOT else ""
    return (
        f"module {top!r} is not trusted code; a hook must live in mmeval, {where}or an installed plugin "
        "(a package that registers mmeval.* entry points). Nothing was imported"
    )


def load_hook(target: str, what: str) -> Any:
    """The callable ``pkg.module:attr`` that a task or metric argument names (a user's feature
    extractor), imported only from trusted code: mmeval itself, this project's checkout, or an
    installed plugin (a package that registers ``mmeval.*`` entry points). Anything else (``os``,
    ``subprocess``, any other installed package) is refused *before* it is imported, so a task
    file cannot make mmeval run code of its choosing."""
    module, _, attr = target.partition(":")
    if not module or not attr or not all(part.isidentifier() for part in (*module.split("."), attr)):
        raise UntrustedHookError(f"{what}: expected <package.module>:<callable>")
    why = _distrust(module.split(".")[0])
    if why:
        raise UntrustedHookError(f"{what}: {why}")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UntrustedHookError(f"{what}: cannot import {target}: {exc}") from exc
    if not callable(obj):
        raise UntrustedHookError(f"{what}: {module}.{attr} is not callable")
    return obj


# Name -> "module:Class". Imported only when a task uses the name.
METRICS: dict[str, str] = {
    "exact_match": "mmeval.metrics.text:ExactMatch",
    "vqa_accuracy": "mmeval.metrics.vqa:VQAAccuracy",
    "choice_accuracy": "mmeval.metrics.choice:ChoiceAccuracy",
    "caption": "mmeval.metrics.caption:CaptionMetrics",
    "mmmu_accuracy": "mmeval.metrics.mmmu:MMMUAccuracy",
    "circular_accuracy": "mmeval.metrics.circular:CircularAccuracy",
    "pope": "mmeval.metrics.pope:POPEMetrics",
    "mme": "mmeval.metrics.mme:MMEMetrics",
    "clotho_aqa_accuracy": "mmeval.metrics.audio:ClothoAQAAccuracy",
    "mmau_accuracy": "mmeval.metrics.audio:MMAUAccuracy",
    "wer": "mmeval.metrics.wer:WER",
    # generation quality (any-to-any): distribution metrics over generated media
    "fid": "mmeval.metrics.image_gen:FID",
    "kid": "mmeval.metrics.image_gen:KID",
    "inception_score": "mmeval.metrics.image_gen:InceptionScore",
    "clip_score": "mmeval.metrics.image_gen:CLIPScore",
    "fad": "mmeval.metrics.audio_gen:FAD",
    "clap_score": "mmeval.metrics.audio_gen:CLAPScore",
    "clipsim": "mmeval.metrics.video_gen:CLIPSIM",
    "fvd": "mmeval.metrics.video_gen:FVD",
    "signal_token_rate": "mmeval.metrics.media:SignalTokenRate",
}

PARSERS: dict[str, str] = {
    "text": "mmeval.metrics.text:TextParser",
    "choice": "mmeval.metrics.choice:ChoiceParser",
    "mmmu": "mmeval.metrics.mmmu:MMMUParser",
    "yes_no": "mmeval.metrics.yesno:YesNoParser",
    "airbench": "mmeval.metrics.audio:AIRBenchParser",
    "media": "mmeval.metrics.media:MediaParser",
}


def get_metric(name: str, **kwargs: Any) -> Metric:
    return _lookup("metric", METRICS, name)(**kwargs)


def metric_class(name: str) -> type[Metric]:
    return _lookup("metric", METRICS, name)


def get_parser(name: str, **kwargs: Any) -> Parser:
    return _lookup("parser", PARSERS, name)(**kwargs)
