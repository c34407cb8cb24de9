"""Image generation quality: FID, KID, Inception Score (corpus) and CLIPScore (per sample).

Distribution metrics compare the *generated* set (the first image of every sample whose response
carried one; samples without media are left out and n says how many remain) with the *reference*
set: every evaluated document's reference image (``all_targets``), so the target distribution is
the same whichever model runs and however many of its calls failed. A missing or unreadable
reference is a MediaError naming it; the reference set must be complete. Reference features are
cached on disk (:func:`mmeval.metrics.features.reference_features`).

- FID (Heusel et al. 2017): Fréchet distance between Gaussians fitted to the two feature sets
  (:mod:`mmeval.metrics.frechet`); CI by resampling the generated set (kwarg ``bootstrap``,
  default 100 resamples, 0 disables).
- KID (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel
  k(x, y) = (x·y / d + 1)³, averaged over ``subsets`` (100) random subsets of ``subset_size``
  (1000, capped at both set sizes: then every subset is the whole set and the spread is 0)
  drawn without replacement, seeded by the run seed; stderr = the std over subsets (ddof 0, as
  torch-fidelity and torchmetrics report it). Matches ``torchmetrics``' KID on the same subsets.
- Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) from the extractor's
  logits, in ``splits`` (10, capped at the sample count) consecutive chunks of the shuffled
  (seeded) set, chunk i = [i·N/k, (i+1)·N/k) as in the original code and torch-fidelity; value
  = mean over splits, stderr = std over splits with ddof 0 (the original code's and
  torch-fidelity's; torchmetrics uses ddof 1, a factor sqrt(k/(k-1)) larger).
- CLIPScore: ``scale * max(cos(E_image, E_caption), 0)`` with ``scale`` 100 by default, the
  convention of torchmetrics and most text-to-image papers. Hessel et al. (2021)'s CLIP-S uses
  ``w = 2.5``: CLIP-S = 2.5 * max(cos, 0) = CLIPScore(scale=100) / 40. The caption is kwarg
  ``caption``: a jinja2 template over the document (``"{{ caption }}"``) or a column name.

Metric keys: ``fid``, ``kid``, ``inception_score`` with the default (Inception) extractor;
with another extractor the key gets its name (``fid_clip``, ``kid_tiny_image``), so a task may
report FID in Inception and in CLIP space side by side.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmeval.metrics.base import CorpusScore, Metric, MetricArgsError, ParseContext
from mmeval.metrics.extractors.clip import ClipEmbedder, batch_size_arg
from mmeval.metrics.features import (
    FeatureExtractor,
    MediaSource,
    extractor_arg_names,
    generated_sources,
    get_extractor,
    media_part,
    reference_features,
    source_hash,
)
from mmeval.metrics.frechet import Gaussian, bootstrap_frechet, frechet_distance
from mmeval.types import MediaError

CLIP_RUN_ARGS = frozenset({"clip_model", "clip_revision", "device", "feature_batch_size"})
IMAGE_EXTRACTOR_RUN_ARGS = CLIP_RUN_ARGS | {"inception_weights"}

# ----------------------------------------------------------------------------- shared pieces

_SHARED: dict[tuple[str, tuple[tuple[str, str], ...]], FeatureExtractor] = {}
_MEMO: OrderedDict[tuple[str, str, tuple[str, ...]], np.ndarray] = OrderedDict()
_MEMO_SIZE = 4


def shared_extractor(name: str, args: Mapping[str, Any]) -> FeatureExtractor:
    """One extractor instance per (name, arguments) in the process: FID, KID and IS of a task
    load the Inception network once."""
    key = (name, tuple(sorted((k, str(v)) for k, v in args.items())))
    if key not in _SHARED:
        _SHARED[key] = get_extractor(name, dict(args))
    return _SHARED[key]


def generated_features(extractor: FeatureExtractor, sources: Sequence[MediaSource], kind: str = "features") -> np.ndarray:
    """Features or logits of the generated set, memoised for the few most recent sets (FID, KID
    and IS of one task ask for the same images); an extractor with ``features_and_logits``
    computes both in one pass."""
    key = (extractor.id, kind, tuple(source_hash(extractor.modality, s) for s in sources))
    if key not in _MEMO:
        both = getattr(extractor, "features_and_logits", None)
        if both is not None:
            feats, logits = both(sources)
            _remember((extractor.id, "features", key[2]), np.asarray(feats, dtype=np.float64))
            _remember((extractor.id, "logits", key[2]), np.asarray(logits, dtype=np.float64))
        else:
            _remember(key, np.asarray(extractor.logits(sources) if kind == "logits" else extractor.features(sources), dtype=np.float64))
    _MEMO.move_to_end(key)
    return _MEMO[key]


def _remember(key: tuple[str, str, tuple[str, ...]], value: np.ndarray) -> None:
    _MEMO[key] = value
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)


def check_references(modality: str, refs: Sequence[Any]) -> list[MediaSource]:
    """Every reference as a readable source, or a MediaError naming the first bad one."""
    out: list[MediaSource] = []
    for i, ref in enumerate(refs):
        if isinstance(ref, Path):
            ref = str(ref)
        where = f"reference {i + 1} of {len(refs)}"
        if ref is None or ref == "":
            raise MediaError(f"{where}: no {modality} (target is {ref!r}); every document needs a reference {modality}")
        if not isinstance(ref, (str, bytes, bytearray, dict)):
            raise MediaError(f"{where}: expected a file path or encoded bytes, got {type(ref).__name__}")
        try:
            source_hash(modality, ref)  # type: ignore[arg-type]
        except MediaError as exc:
            raise MediaError(f"{where}: {exc}") from exc
        out.append(ref)  # type: ignore[arg-type]
    return out


def metric_key(base: str, extractor: str, default: str) -> str:
    return base if extractor == default else f"{base}_{re.sub(r'[^0-9a-zA-Z]+', '_', extractor.removeprefix('module:')).strip('_')}"


def _check_kwargs(metric: str, kwargs: Mapping[str, Any], allowed: set[str] | frozenset[str]) -> None:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise MetricArgsError(f"{metric}: unknown argument(s) {unknown}; it takes {sorted(allowed)}")


def _int_arg(metric: str, name: str, value: Any, minimum: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = minimum - 1
    if n < minimum:
        raise MetricArgsError(f"{metric}: {name} must be an integer >= {minimum}, got {value!r}")
    return n


class DistributionMetric(Metric):
    """Base of FID, KID and FVD: generated features vs cached reference features."""

    corpus: ClassVar[bool] = True
    wants_all_targets: ClassVar[bool] = True
    higher_is_better: ClassVar[bool] = False
    modality: ClassVar[str] = "image"
    default_extractor: ClassVar[str] = "inception"
    own_args: ClassVar[frozenset[str]] = frozenset({"extractor"})
    extra_extractor_args: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        passable = extractor_arg_names() | self.extra_extractor_args
        _check_kwargs(self.name, kwargs, self.own_args | passable)
        self.extractor_name = str(kwargs.get("extractor") or self.default_extractor)
        self.extractor = shared_extractor(self.extractor_name, {k: v for k, v in kwargs.items() if k in passable})
        if self.extractor.modality != self.modality:
            raise MetricArgsError(f"{self.name}: extractor {self.extractor_name!r} reads {self.extractor.modality}, not {self.modality}")
        self.key = metric_key(self.name, self.extractor_name, self.default_extractor)
        self.reference_from_cache: bool | None = None  # how the last call got its reference features

    def feature_sets(
        self, parsed: Sequence[Any], targets: Sequence[Any], ctxs: Sequence[ParseContext], all_targets: Sequence[Any] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        root = ctxs[0].root if ctxs else None
        gen, _ = generated_sources(parsed, root)
        if len(gen) < 2:
            raise ValueError(
                f"{self.name} needs at least 2 generated {self.modality}s, got {len(gen)} "
                f"({len(parsed)} scored samples; the others produced no {self.modality})"
            )
        refs = check_references(self.modality, list(all_targets if all_targets is not None else targets))
        if len(refs) < 2:
            raise ValueError(f"{self.name} needs at least 2 reference {self.modality}s, got {len(refs)}")
        ref_feats, self.reference_from_cache = reference_features(self.extractor, refs)
        return generated_features(self.extractor, gen), ref_feats


class FrechetMetric(DistributionMetric):
    """Base of FID and FVD: the Fréchet distance of the two feature sets, with its bootstrap CI
    over the generated set (``bootstrap`` resamples, default 100; 0 disables)."""

    own_args: ClassVar[frozenset[str]] = frozenset({"extractor", "bootstrap"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bootstrap = _int_arg(self.name, "bootstrap", kwargs.get("bootstrap", 100), 0)

    def corpus_score(
        self,
        parsed: Sequence[Any],
        targets: Sequence[Any],
        ctxs: Sequence[ParseContext],
        seed: int = 0,
        all_targets: Sequence[Any] | None = None,
    ) -> dict[str, CorpusScore]:
        gen, ref = self.feature_sets(parsed, targets, ctxs, all_targets)
        return {self.key: frechet_score(gen, ref, self.bootstrap, seed)}


class FID(FrechetMetric):
    name: ClassVar[str] = "fid"
    run_args: ClassVar[frozenset[str]] = IMAGE_EXTRACTOR_RUN_ARGS


def frechet_score(gen: np.ndarray, ref: np.ndarray, n_boot: int, seed: int) -> CorpusScore:
    """FID / FVD from two feature sets, with the bootstrap CI over the generated set."""
    ref_g, gen_g = Gaussian.fit(ref), Gaussian.fit(gen)
    value = frechet_distance(ref_g.mu, ref_g.sigma, gen_g.mu, gen_g.sigma)
    boot = bootstrap_frechet(gen, ref_g, n_boot, seed=seed)
    if boot is None:
        return CorpusScore(value=value, n=len(gen), ci_method="none")
    stderr, low, high = boot
    return CorpusScore(value=value, stderr=stderr, ci_low=low, ci_high=high, n=len(gen), ci_method="bootstrap_se")


def polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² of two equal-size samples with k(a, b) = (a·b / d + 1)³."""
    m, d = x.shape
    kxx, kyy, kxy = ((a @ b.T / d + 1.0) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.sum() / (m * m))


def kid_subsets(real: np.ndarray, fake: np.ndarray, subsets: int, subset_size: int, seed: int) -> np.ndarray:
    """MMD² on ``subsets`` random subset pairs of size min(subset_size, |real|, |fake|)."""
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples in each set, got {len(real)} reference and {len(fake)} generated")
    rng = np.random.default_rng(seed)
    out = np.empty(subsets)
    for i in range(subsets):
        out[i] = polynomial_mmd2(real[rng.choice(len(real), m, replace=False)], fake[rng.choice(len(fake), m, replace=False)])
    return out


class KID(DistributionMetric):
    name: ClassVar[str] = "kid"
    run_args: ClassVar[frozenset[str]] = IMAGE_EXTRACTOR_RUN_ARGS
    own_args: ClassVar[frozenset[str]] = frozenset({"extractor", "subsets", "subset_size"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.subsets = _int_arg(self.name, "subsets", kwargs.get("subsets", 100), 1)
        self.subset_size = _int_arg(self.name, "subset_size", kwargs.get("subset_size", 1000), 2)

    def corpus_score(
        self,
        parsed: Sequence[Any],
        targets: Sequence[Any],
        ctxs: Sequence[ParseContext],
        seed: int = 0,
        all_targets: Sequence[Any] | None = None,
    ) -> dict[str, CorpusScore]:
        gen, ref = self.feature_sets(parsed, targets, ctxs, all_targets)
        mmd = kid_subsets(ref, gen, self.subsets, self.subset_size, seed)
        return {self.key: CorpusScore(value=float(mmd.mean()), stderr=float(mmd.std()), n=len(gen), ci_method="none")}


def inception_score(logits: np.ndarray, splits: int = 10, seed: int | None = 0) -> np.ndarray:
    """Per-split Inception Scores of (N, classes) logits; ``seed=None``: no shuffle."""
    x = np.asarray(logits, dtype=np.float64)
    n = x.shape[0]
    if seed is not None:
        x = x[np.random.default_rng(seed).permutation(n)]
    log_p = x - x.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    k = max(1, min(splits, n))
    scores = np.empty(k)
    for i in range(k):
        lo, hi = i * n // k, (i + 1) * n // k
        log_marginal = np.log(p[lo:hi].mean(axis=0))
        scores[i] = np.exp((p[lo:hi] * (log_p[lo:hi] - log_marginal)).sum(axis=1).mean())
    return scores


class InceptionScore(Metric):
    name: ClassVar[str] = "inception_score"
    corpus: ClassVar[bool] = True
    run_args: ClassVar[frozenset[str]] = frozenset({"inception_weights", "device", "feature_batch_size"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_kwargs(self.name, kwargs, {"extractor", "splits"} | extractor_arg_names())
        self.extractor_name = str(kwargs.get("extractor") or "inception")
        self.extractor = shared_extractor(self.extractor_name, {k: v for k, v in kwargs.items() if k in extractor_arg_names()})
        self.splits = _int_arg(self.name, "splits", kwargs.get("splits", 10), 1)
        self.key = metric_key(self.name, self.extractor_name, "inception")

    def corpus_score(
        self, parsed: Sequence[Any], targets: Sequence[Any], ctxs: Sequence[ParseContext], seed: int = 0
    ) -> dict[str, CorpusScore]:
        gen, _ = generated_sources(parsed, ctxs[0].root if ctxs else None)
        if len(gen) < 2:
            raise ValueError(f"inception_score needs at least 2 generated images, got {len(gen)} of {len(parsed)} scored samples")
        scores = inception_score(generated_features(self.extractor, gen, "logits"), self.splits, seed)
        return {self.key: CorpusScore(value=float(scores.mean()), stderr=float(scores.std()), n=len(gen), ci_method="none")}


# ----------------------------------------------------------------------------- CLIPScore


class CaptionSource:
    """The caption of a document: a jinja2 template (when it contains ``{{``) or a column name."""

    def __init__(self, metric: str, spec: Any) -> None:
        if not spec or not isinstance(spec, str):
            raise MetricArgsError(
                f'{metric} needs caption: a column name or a jinja2 template over the document, e.g. caption: "{{{{caption}}}}"'
            )
        self.metric, self.spec = metric, spec
        self.template = None
        if "{{" in spec or "{%" in spec:
            from jinja2 import StrictUndefined, TemplateError
            from jinja2.sandbox import SandboxedEnvironment

            try:
                self.template = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False).from_string(spec)
            except TemplateError as exc:
                raise MetricArgsError(f"{metric}: caption template {spec!r}: {exc}") from exc

    def render(self, ctx: ParseContext) -> str:
        doc = ctx.doc
        if self.template is not None:
            from jinja2 import UndefinedError

            try:
                return self.template.render({**doc, "doc": doc})
            except UndefinedError as exc:
                raise ValueError(f"{ctx.doc_id}: {self.metric} caption template {self.spec!r}: {exc}") from exc
        if self.spec not in doc:
            raise ValueError(f"{ctx.doc_id}: {self.metric} caption column {self.spec!r} is not in the document (columns: {sorted(doc)})")
        value = doc[self.spec]
        if not isinstance(value, str):
            raise ValueError(
                f"{ctx.doc_id}: {self.metric} caption column {self.spec!r} holds {type(value).__name__}, not a string; "
                f'pick one with a template, e.g. caption: "{{{{ {self.spec}[0] }}}}"'
            )
        return value


def sample_media(parsed: Any, ctx: ParseContext) -> str | None:
    """The sample's first generated media file (absolute), or None."""
    paths, _ = generated_sources([parsed], ctx.root)
    return paths[0] if paths else None


class ClipMetric(Metric):
    """Base of CLIPScore and CLIPSIM: a caption per document and a ClipEmbedder."""

    default_scale: ClassVar[float] = 100.0
    chunk: ClassVar[int] = 256  # samples decoded at a time (bounds memory)
    own_args: ClassVar[frozenset[str]] = frozenset({"caption", "scale"})
    run_args: ClassVar[frozenset[str]] = CLIP_RUN_ARGS

    def __init__(self, **kwargs: Any) -> None:
        _check_kwargs(self.name, kwargs, self.own_args | CLIP_RUN_ARGS)
        self.caption = CaptionSource(self.name, kwargs.get("caption"))
        try:
            self.scale = float(kwargs.get("scale", self.default_scale))
        except (TypeError, ValueError) as exc:
            raise MetricArgsError(f"{self.name}: scale must be a number, got {kwargs.get('scale')!r}") from exc
        self.embedder = ClipEmbedder(
            kwargs.get("clip_model"),
            kwargs.get("clip_revision"),
            str(kwargs.get("device") or "cpu"),
            batch_size_arg(kwargs.get("feature_batch_size")),
        )
        # Record the checkpoint actually used (the default included) with the metric's settings.
        super().__init__(**{**kwargs, "clip_model": self.embedder.clip_model})

    def score(self, parsed: Any, target: Any, ctx: ParseContext) -> dict[str, float]:
        return self.score_batch([parsed], [target], [ctx])[0]

    def score_batch(self, parsed: Sequence[Any], targets: Sequence[Any], ctxs: Sequence[ParseContext]) -> list[dict[str, float]]:
        out: list[dict[str, float]] = [{} for _ in parsed]
        todo = [(i, path) for i, (p, c) in enumerate(zip(parsed, ctxs, strict=True)) if (path := sample_media(p, c)) is not None]
        for start in range(0, len(todo), self.chunk):
            chunk = todo[start : start + self.chunk]
            texts = self.embedder.text_embeddings([self.caption.render(ctxs[i]) for i, _ in chunk])
            for (i, _), value in zip(chunk, self.similarities([path for _, path in chunk], texts), strict=True):
                out[i] = {self.name: value}
        return out

    def similarities(self, paths: list[str], texts: np.ndarray) -> list[float]:
        raise NotImplementedError


class CLIPScore(ClipMetric):
    name: ClassVar[str] = "clip_score"

    def similarities(self, paths: list[str], texts: np.ndarray) -> list[float]:
        images = self.embedder.image_embeddings([media_part("image", p).load_image() for p in paths])
        return [self.scale * max(float(c), 0.0) for c in (images * texts).sum(axis=1)]
