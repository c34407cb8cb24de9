"""Score a task's responses: parse -> per-sample scores -> aggregate with 95% CIs.

Failed responses (model errors, unreadable media) are counted in ``n_errors`` and excluded
from every metric's n: a failure is never scored as a wrong answer. Unparsed answers *are*
scored (as wrong, by the metric) and reported through the extraction rate.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmeval.metrics.base import Metric, MetricArgsError, ParseContext, get_parser, metric_class
from mmeval.metrics.stats import mean_ci, to_metric_value
from mmeval.tasks.prompts import ENV, PromptRenderer
from mmeval.tasks.spec import TaskSpec
from mmeval.types import MetricValue, Response, SampleRecord, TaskResult

UNPARSED = "unparsed"
# Extraction stages that mean "nothing usable was extracted": an unparsed answer, or a
# generation response without the requested media (mmeval.metrics.media).
NOT_EXTRACTED = (UNPARSED, "no_media")


class Scorer:
    """``root``: the run directory (generated media are relative to it). ``metric_args``:
    run-time settings (``--metric-args``); each metric takes the keys in its ``run_args``."""

    def __init__(self, spec: TaskSpec, seed: int = 0, root: Path | None = None, metric_args: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self.seed = seed
        self.root = root
        self.parser = get_parser(spec.parse.name, **spec.parse.kwargs)
        self.metrics: list[Metric] = [build_metric(m.name, m.kwargs, metric_args or {}) for m in spec.metrics]
        self.renderer = PromptRenderer(spec)
        self._target_tmpl = ENV.from_string(spec.target) if "{{" in spec.target else None
        self._cluster_tmpl = ENV.from_string(spec.cluster_by) if spec.cluster_by and "{{" in spec.cluster_by else None

    def cluster(self, doc: dict[str, Any]) -> str | None:
        """The sample's cluster label: a column's value, or a template over the document
        (``"{{ (index | int) % 1000000 }}"`` groups MMBench's circular variants)."""
        if self._cluster_tmpl is not None:
            return self._cluster_tmpl.render({**doc, "doc": doc})
        return str(doc.get(self.spec.cluster_by)) if self.spec.cluster_by else None

    def target(self, doc: dict[str, Any]) -> Any:
        if self._target_tmpl is not None:
            return self._target_tmpl.render(doc)
        return doc[self.spec.target]

    def context(self, doc_id: str, doc: dict[str, Any]) -> ParseContext:
        opts = self.renderer.options(doc) if self.spec.choices else None
        return ParseContext(doc_id=doc_id, choices=opts[0] if opts else None, options=opts[1] if opts else None, doc=doc, root=self.root)

    def score(
        self,
        doc_ids: Sequence[str],
        docs: Sequence[dict[str, Any]],
        responses: Sequence[Response],
        prompt_hashes: Sequence[str | None],
    ) -> tuple[TaskResult, list[SampleRecord]]:
        """Score a whole task held in memory (the runner streams through ``TaskScore``)."""
        acc = TaskScore(self)
        records = acc.add(doc_ids, docs, responses, prompt_hashes)
        result, corpus_scores = acc.finish()
        add_corpus_scores(records, corpus_scores)
        return result, records


def add_corpus_scores(records: Iterable[SampleRecord], corpus_scores: list[dict[str, float]]) -> None:
    """Per-sample values of corpus metrics (CIDEr, ...), known only at the end, into the
    records of the samples that were scored (those without an error), in order."""
    if not corpus_scores:
        return
    ok = (r for r in records if r.error is None)
    for rec, scores in zip(ok, corpus_scores, strict=True):
        rec.scores.update(scores)


class TaskScore:
    """One task's scores, accumulated chunk by chunk in document order.

    ``add`` parses and scores a chunk with the per-sample metrics and returns its sample
    records (the runner writes them out at once); only compact columns are kept: each score
    with the index of its sample, the cluster labels and breakdown values. Corpus metrics
    (BLEU, CIDEr, FID) need every answer together: their inputs are kept until ``finish``."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        spec = scorer.spec
        self.n = self.n_cached = self.n_ok = 0
        self.stages: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.values: dict[str, array] = {}  # score name -> values, in the order scored
        self.index: dict[str, array] = {}  # score name -> the ok-sample index of each value
        self.names: dict[str, list[str]] = {m.name: [] for m in scorer.metrics}  # score names each metric produced
        self.clusters: list[str] | None = [] if spec.cluster_by else None
        self._labels: dict[str, str] = {}  # one string object per distinct label
        self._breakdown_tmpls = [(col, ENV.from_string(t)) for col, t in spec.breakdown]
        self.bvalues: list[list[str]] = [[] for _ in spec.breakdown]  # per breakdown column, per ok sample
        self.corpus = [m for m in scorer.metrics if m.corpus]
        self.live = [m for m in scorer.metrics if not m.corpus]
        self.kept: tuple[list[Any], list[Any], list[ParseContext]] = ([], [], [])  # parsed, targets, ctxs for corpus metrics
        self.all_targets: list[Any] | None = [] if any(m.wants_all_targets for m in self.corpus) else None
        self.metric_errors: dict[str, str] = {}

    def add(
        self,
        doc_ids: Sequence[str],
        docs: Sequence[dict[str, Any]],
        responses: Sequence[Response],
        prompt_hashes: Sequence[str | None],
    ) -> list[SampleRecord]:
        scorer = self.scorer
        records: list[SampleRecord] = []
        ok: list[SampleRecord] = []
        ctxs: list[ParseContext] = []
        for doc_id, doc, resp, phash in zip(doc_ids, docs, responses, prompt_hashes, strict=True):
            rec = SampleRecord(
                doc_id=doc_id,
                prompt_hash=phash,
                target=scorer.target(doc),
                response=resp.text if resp.ok else None,
                error=resp.error,
                cluster=scorer.cluster(doc),
                cached=resp.cached,
                artifacts=[_artifact(a) for a in resp.artifacts],
            )
            records.append(rec)
            if self.all_targets is not None:
                self.all_targets.append(rec.target)
            if not resp.ok:
                self.errors[_error_kind(resp.error or "")] += 1
                continue
            ctx = scorer.context(doc_id, doc)
            rec.parsed, rec.extraction = scorer.parser.parse_response(resp, ctx)
            self.stages[rec.extraction] += 1
            ok.append(rec)
            ctxs.append(ctx)
        self.n += len(records)
        self.n_cached += sum(r.cached for r in records)
        for metric in list(self.live):
            try:
                batch = metric.score_batch([r.parsed for r in ok], [r.target for r in ok], ctxs)
            except Exception as exc:  # a model-based metric (CLIP, CLAP) that cannot load or decode
                # Keep the samples and every other metric: the responses are cached, so `mmeval
                # run` again re-scores once the cause (weights, a bad file) is fixed.
                self.metric_errors[metric.name] = f"{type(exc).__name__}: {exc}"
                self.live.remove(metric)
                continue
            for rec, scores in zip(ok, batch, strict=True):
                for name in scores:
                    if name not in self.names[metric.name]:
                        self.names[metric.name].append(name)
                rec.scores.update(scores)
        for j, (rec, ctx) in enumerate(zip(ok, ctxs, strict=True)):
            self._keep(self.n_ok + j, rec.scores)
            if self.clusters is not None:
                label = rec.cluster or rec.doc_id
                self.clusters.append(self._labels.setdefault(label, label))
            for values, (_col, tmpl) in zip(self.bvalues, self._breakdown_tmpls, strict=True):
                value = tmpl.render({**ctx.doc, "doc": ctx.doc})
                values.append(self._labels.setdefault(value, value))
            if self.corpus:
                self.kept[0].append(rec.parsed)
                self.kept[1].append(rec.target)
                self.kept[2].append(ctx)
        self.n_ok += len(ok)
        return records

    def _keep(self, i: int, scores: Mapping[str, float]) -> None:
        for name, value in scores.items():
            if name not in self.values:
                self.values[name], self.index[name] = array("d"), array("q")
            self.values[name].append(value)
            self.index[name].append(i)

    def finish(self) -> tuple[TaskResult, list[dict[str, float]]]:
        """The task's result, and each ok sample's corpus-metric scores (empty without any)."""
        corpus_scores: list[dict[str, float]] = [{} for _ in range(self.n_ok)] if self.corpus else []
        metric_values: list[MetricValue] = []
        for metric in self.scorer.metrics:
            if metric.name in self.metric_errors:
                continue
            if not metric.corpus:
                metric_values.extend(to_metric_value(name, mean_ci(*self._column(name))) for name in self.names[metric.name])
                continue
            try:
                values = self._corpus(metric, corpus_scores)
            except Exception as exc:
                self.metric_errors[metric.name] = f"{type(exc).__name__}: {exc}"
                continue
            metric_values.extend(values)
        for i, scores in enumerate(corpus_scores):
            self._keep(i, scores)
        result = TaskResult(
            task=self.scorer.spec.task,
            version=self.scorer.spec.version,
            n=self.n,
            n_errors=self.n - self.n_ok,
            n_cached=self.n_cached,
            metrics=metric_values,
            extraction_rate=(1 - sum(self.stages.get(s, 0) for s in NOT_EXTRACTED) / self.n_ok) if self.n_ok else None,
            extraction_stages=dict(sorted(self.stages.items())),
            errors=dict(self.errors.most_common()),
            breakdown=self._breakdown(),
            metric_errors=self.metric_errors,
        )
        return result, corpus_scores

    def _column(self, name: str, members: np.ndarray | None = None) -> tuple[np.ndarray, list[str] | None]:
        """A score's values (of the ok samples in ``members``, a boolean mask) and their clusters."""
        values = np.frombuffer(self.values[name], dtype=np.float64)
        index = np.frombuffer(self.index[name], dtype=np.int64)
        if members is not None:
            keep = members[index]
            values, index = values[keep], index[keep]
        clusters = [self.clusters[i] for i in index] if self.clusters is not None else None
        return values, clusters

    def _breakdown(self) -> dict[str, dict[str, dict[str, MetricValue]]]:
        """Every per-sample score, again for each value of each ``breakdown`` column."""
        out: dict[str, dict[str, dict[str, MetricValue]]] = {}
        failed = {name for m in self.metric_errors for name in self.names.get(m, [])}
        for (col, _tmpl), values in zip(self._breakdown_tmpls, self.bvalues, strict=True):
            labels = np.array(values, dtype=object)
            out[col] = {}
            for value in sorted(set(values)):
                members = labels == value
                out[col][value] = {}
                for name in (n for n in self.values if n not in failed):
                    vals, clusters = self._column(name, members)
                    if len(vals):
                        out[col][value][name] = to_metric_value(name, mean_ci(vals, clusters))
        return out

    def _corpus(self, metric: Metric, corpus_scores: list[dict[str, float]]) -> list[MetricValue]:
        parsed, targets, ctxs = self.kept
        clusters = self.clusters
        out = []
        extra = {"all_targets": self.all_targets} if metric.wants_all_targets else {}
        scores = metric.corpus_score(parsed, targets, ctxs, seed=self.scorer.seed, **extra)
        for name, cs in scores.items():
            if cs.per_sample is not None:
                for sample_scores, value in zip(corpus_scores, cs.per_sample, strict=True):
                    sample_scores[name] = value
                stats = mean_ci(cs.per_sample, clusters, binary_aware=False)
                # A pooled corpus value (METEOR) need not equal the per-sample mean: keep the
                # interval's width, centred on the value reported.
                shift = cs.value - stats["value"]
                stats["value"] = cs.value
                if stats["ci_low"] is not None:
                    stats["ci_low"] += shift
                    stats["ci_high"] += shift
                out.append(to_metric_value(name, stats))
            else:
                out.append(
                    MetricValue(
                        name=name,
                        value=cs.value,
                        n=len(parsed) if cs.n is None else cs.n,
                        stderr=cs.stderr,
                        ci_low=cs.ci_low,
                        ci_high=cs.ci_high,
                        ci_method=cs.ci_method or ("bootstrap" if cs.ci_low is not None else "none"),
                        n_clusters=cs.n_clusters,
                    )
                )
        return out


def build_metric(name: str, kwargs: Mapping[str, Any], run_args: Mapping[str, str]) -> Metric:
    """The task's metric config, with the run-time args this metric takes laid over it."""
    cls = metric_class(name)
    return cls(**{**kwargs, **{k: v for k, v in run_args.items() if k in cls.run_args}})


def check_metric_args(specs: Sequence[TaskSpec], run_args: Mapping[str, str]) -> None:
    """Build every metric of the planned tasks once, before any model loads, so a bad argument
    or a missing weights file fails in seconds rather than after hours of generation; and
    refuse a --metric-args key that no metric takes (a typo would otherwise go unnoticed)."""
    accepted: set[str] = set()
    for spec in specs:
        for m in spec.metrics:
            accepted |= metric_class(m.name).run_args
            try:
                build_metric(m.name, m.kwargs, run_args)
            except MetricArgsError as exc:
                raise MetricArgsError(f"task {spec.task}, metric {m.name}: {exc}") from exc
    unknown = sorted(set(run_args) - accepted)
    if unknown:
        raise MetricArgsError(
            f"--metric-args {unknown}: no metric of these tasks takes "
            f"{'it' if len(unknown) == 1 else 'them'}; they take {sorted(accepted) or 'no run-time arguments'}"
        )


def _error_kind(error: str) -> str:
    """Group errors for the run summary: the message up to the first detail."""
    head = error.split(":", 1)[0].strip()
    return head[:80] or "error"


def _artifact(a: Any) -> dict[str, Any]:
    return {"modality": a.modality, "path": a.path, "sha256": a.sha256, "format": a.format, **a.meta}
