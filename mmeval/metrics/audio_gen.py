"""Text-to-audio generation quality: Fréchet Audio Distance (FAD) and the CLAP score.

    metrics:
      - {name: fad, extractor: vggish}          # -> fad_vggish
      - {name: fad, extractor: clap}            # -> fad_clap
      - {name: clap_score, caption: "{{caption}}"}
    mmeval run ... --metric-args vggish_weights=/models/vggish-10086976.pth,clap_model=/models/clap-htsat-unfused

**FAD** (Kilgour et al., 2019) is the Fréchet distance between Gaussians fitted to embeddings
of the generated clips and of the reference clips (lower is better). The generated set is the
first audio artifact of every sample that has one (samples without media are left out; n is the
number of generated clips). The reference set is every evaluated document's target clip
(``all_targets``, failed samples included, so it does not depend on the model), deduplicated by
content (AudioCaps lists each clip once per caption in some layouts); its features are cached
(:func:`mmeval.metrics.features.reference_features`). An unreadable reference is an error
naming it: the reference set defines the target distribution and must be complete.

- VGGish (``extractor: vggish``): as in the reference implementation, the Gaussians are fitted
  over the embeddings of every VGGish window of every clip (about one per 0.5 s of audio, see
  :mod:`mmeval.metrics.extractors.vggish`), not over one mean per clip: the per-window
  distribution is what FAD was defined and validated on. Any extractor with a
  ``clip_frames(items) -> list[array]`` method is treated the same way.
- CLAP (``extractor: clap``) and other extractors: one embedding per clip.

The distance is :func:`mmeval.metrics.frechet.frechet_distance` (float64, symmetric square
root). Its 95% CI (kwarg ``bootstrap``, resamples, default 100; 0 disables) resamples the
generated *clips* with the reference statistics fixed: :func:`~mmeval.metrics.frechet.bootstrap_frechet`
for one embedding per clip; for per-window embeddings each resampled clip brings all its
windows (resampling windows independently would treat a clip's correlated windows as
independent draws and give too narrow an interval).

The sub-metric is ``fad_<extractor>`` (``fad_vggish``, ``fad_clap``, ``fad_tiny_audio``; a
``module:`` extractor uses its factory's name), or ``fad_<label>`` with kwarg ``label``, so a
task can list FAD with several extractors.

**CLAP score** (per sample, higher is better): the cosine similarity between the CLAP
embeddings of the generated clip and of its caption, times kwarg ``scale`` (default 1.0, the
raw cosine in [-1, 1]: what audioldm_eval computes and the AudioLDM / AudioLDM 2 / Tango line of
text-to-audio papers report, e.g. 0.2-0.4 on AudioCaps; ``scale: 100`` gives the percent form
some tables use). The caption is kwarg ``caption``: a jinja2 template over the document
(``"{{caption}}"``) or a column name (default ``caption``); a list of captions scores the mean
cosine over them. Samples without generated audio get no value. A CLAP checkpoint other than
``laion/clap-htsat-unfused`` gives numbers on another scale: compare like with like.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from jinja2 import StrictUndefined, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from mmeval.metrics.base import CorpusScore, Metric, MetricArgsError, ParseContext
from mmeval.metrics.extractors.clap import ClapEmbedder
from mmeval.metrics.features import (
    EXTRACTORS,
    FeatureExtractor,
    MediaSource,
    extractor_arg_names,
    generated_sources,
    get_extractor,
    reference_features,
    source_hash,
)
from mmeval.metrics.frechet import Gaussian, bootstrap_frechet, frechet_distance
from mmeval.types import MediaError

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_FAD_OWN = frozenset({"extractor", "bootstrap", "label"})
_CLAP_ARGS = frozenset({"clap_model", "clap_revision", "device", "feature_batch_size"})


class _WindowView(FeatureExtractor):
    """An extractor's per-window embeddings, stacked, under their own cache id."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.modality = inner.modality  # type: ignore[misc]
        self.id = f"{inner.id}/windows"
        self.dim = inner.dim

    def features(self, items: Sequence[MediaSource]) -> np.ndarray:
        clips = self.inner.clip_frames(items)
        return np.concatenate(clips) if clips else np.zeros((0, self.dim))


def _label(extractor: str) -> str:
    base = extractor.rsplit(":", 1)[-1] if extractor.startswith("module:") else extractor
    return "".join(c if c.isalnum() else "_" for c in base.lower())


def unique_references(refs: Sequence[MediaSource]) -> list[MediaSource]:
    """The reference clips, each distinct content once; an unreadable one raises, naming it."""
    seen: dict[str, MediaSource] = {}
    for i, ref in enumerate(refs):
        try:
            seen.setdefault(source_hash("audio", ref), ref)
        except MediaError as exc:
            raise MediaError(f"FAD reference audio #{i} cannot be read: {exc}. The reference set must be complete.") from exc
    return list(seen.values())


class FAD(Metric):
    name: ClassVar[str] = "fad"
    corpus: ClassVar[bool] = True
    higher_is_better: ClassVar[bool] = False
    wants_all_targets: ClassVar[bool] = True
    run_args: ClassVar[frozenset[str]] = frozenset({"vggish_weights", "clap_model", "clap_revision", "device", "feature_batch_size"})

    def __init__(self, extractor: str = "vggish", bootstrap: int | str = 100, label: str | None = None, **kwargs: Any) -> None:
        super().__init__(extractor=extractor, bootstrap=bootstrap, label=label, **kwargs)
        name = str(extractor)
        if name in EXTRACTORS:  # a module: factory takes what it likes
            own = _extractor_args(name)
            unknown = sorted(set(kwargs) - extractor_arg_names() - own)
            if unknown:
                raise MetricArgsError(f"fad: unknown argument(s) {unknown}; it takes extractor, bootstrap, label and {sorted(own)}")
        try:
            self.bootstrap = int(bootstrap)
        except (TypeError, ValueError) as exc:
            raise MetricArgsError(f"fad: bootstrap={bootstrap!r} is not a whole number of resamples") from exc
        self.extractor = get_extractor(name, kwargs)
        if getattr(self.extractor, "modality", None) != "audio":
            raise MetricArgsError(f"fad: extractor {name!r} embeds {getattr(self.extractor, 'modality', '?')}, not audio")
        self.key = f"fad_{_label(str(label) if label else name)}"

    def corpus_score(
        self,
        parsed: Sequence[Any],
        targets: Sequence[Any],
        ctxs: Sequence[ParseContext],
        seed: int = 0,
        all_targets: Sequence[Any] | None = None,
    ) -> dict[str, CorpusScore]:
        generated, _ = generated_sources(parsed, ctxs[0].root if ctxs else None)
        if len(generated) < 2:  # a Gaussian needs two points; no value rather than a fake one
            return {self.key: CorpusScore(value=math.nan, n=len(generated), ci_method="none")}
        refs = unique_references(list(all_targets if all_targets is not None else targets))
        if len(refs) < 2:
            raise ValueError(f"FAD needs at least 2 distinct reference clips, got {len(refs)}")
        windows = callable(getattr(self.extractor, "clip_frames", None))
        view = _WindowView(self.extractor) if windows else self.extractor
        ref_feats, _ = reference_features(view, refs)
        reference = Gaussian.fit(ref_feats)
        if windows:
            clips = self.extractor.clip_frames(generated)
            gen = Gaussian.fit(np.concatenate(clips))
            ci = bootstrap_frechet(list(clips), reference, self.bootstrap, seed)
        else:
            feats = np.asarray(self.extractor.features(generated), dtype=np.float64)
            gen = Gaussian.fit(feats)
            ci = bootstrap_frechet(feats, reference, self.bootstrap, seed)
        value = frechet_distance(reference.mu, reference.sigma, gen.mu, gen.sigma)
        stderr, low, high = ci if ci is not None else (None, None, None)
        return {
            self.key: CorpusScore(
                value=value, stderr=stderr, ci_low=low, ci_high=high, n=len(generated), ci_method="bootstrap_se" if ci else "none"
            )
        }


def _extractor_args(name: str) -> frozenset[str]:
    import importlib

    module, _, attr = EXTRACTORS[name].partition(":")
    return frozenset(getattr(getattr(importlib.import_module(module), attr), "args", frozenset()))


class CLAPScore(Metric):
    name: ClassVar[str] = "clap_score"
    run_args: ClassVar[frozenset[str]] = _CLAP_ARGS

    def __init__(
        self,
        caption: str = "caption",
        scale: float | str = 1.0,
        clap_model: str | None = None,
        clap_revision: str | None = None,
        device: str = "cpu",
        feature_batch_size: int | str = 16,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise MetricArgsError(f"clap_score: unknown argument(s) {sorted(kwargs)}; it takes caption, scale and {sorted(_CLAP_ARGS)}")
        super().__init__(caption=caption, scale=scale, clap_model=clap_model, clap_revision=clap_revision, device=device)
        try:
            self.scale = float(scale)
        except (TypeError, ValueError) as exc:
            raise MetricArgsError(f"clap_score: scale={scale!r} is not a number") from exc
        self.caption = str(caption)
        self._template = _ENV.from_string(self.caption) if "{{" in self.caption else None
        self.embedder = ClapEmbedder(clap_model, clap_revision, device, int(feature_batch_size))

    def captions(self, ctx: ParseContext) -> list[str]:
        doc = ctx.doc
        if self._template is not None:
            try:
                value: Any = self._template.render({**doc, "doc": doc})
            except UndefinedError as exc:
                raise ValueError(f"clap_score: caption template {self.caption!r} on document {ctx.doc_id}: {exc}") from exc
        elif self.caption in doc:
            value = doc[self.caption]
        else:
            raise ValueError(
                f"clap_score: caption column {self.caption!r} is not in document {ctx.doc_id}; columns: {', '.join(sorted(doc))}"
            )
        texts = [value] if isinstance(value, str) else [str(v) for v in value or []]
        if not texts or not all(t.strip() for t in texts):
            raise ValueError(f"clap_score: document {ctx.doc_id} has an empty caption ({value!r})")
        return texts

    def score(self, parsed: Any, target: Any, ctx: ParseContext) -> dict[str, float]:
        return self.score_batch([parsed], [target], [ctx])[0]

    def score_batch(self, parsed: Sequence[Any], targets: Sequence[Any], ctxs: Sequence[ParseContext]) -> list[dict[str, float]]:
        out: list[dict[str, float]] = [{} for _ in parsed]
        todo: list[tuple[int, str, list[str]]] = []
        for i, (p, ctx) in enumerate(zip(parsed, ctxs, strict=True)):
            paths, _ = generated_sources([p], ctx.root)
            if paths:
                todo.append((i, paths[0], self.captions(ctx)))
        if not todo:
            return out
        audio = self.embedder.source_embeddings([path for _, path, _ in todo])
        text = self.embedder.text_embeddings([t for _, _, texts in todo for t in texts])
        pos = 0
        for row, (i, _, texts) in enumerate(todo):
            cosines = text[pos : pos + len(texts)] @ audio[row]
            pos += len(texts)
            out[i] = {"clap_score": self.scale * float(cosines.mean())}
        return out
