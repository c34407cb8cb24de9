"""Score a task's responses: parse -> per-sample scores -> aggregate with 95% CIs.

Failed responses (model errors, unreadable media) are counted in ``n_errors`` and excluded
from every metric's n: a failure is never scored as a wrong answer. Unparsed answers *are*
scored (as wrong, by the metric) and reported through the extraction rate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
        spec = self.spec
        records: list[SampleRecord] = []
        ok_idx: list[int] = []
        ctxs: list[ParseContext] = []
        stages: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        for i, (doc_id, doc, resp, phash) in enumerate(zip(doc_ids, docs, responses, prompt_hashes, strict=True)):
            cluster = self.cluster(doc)
            rec = SampleRecord(
                doc_id=doc_id,
                prompt_hash=phash,
                target=self.target(doc),
                response=resp.text if resp.ok else None,
                error=resp.error,
                cluster=cluster,
                cached=resp.cached,
                artifacts=[_artifact(a) for a in resp.artifacts],
            )
            records.append(rec)
            if not resp.ok:
                errors[_error_kind(resp.error or "")] += 1
                continue
            ctx = self.context(doc_id, doc)
            rec.parsed, rec.extraction = self.parser.parse_response(resp, ctx)
            stages[rec.extraction] += 1
            ok_idx.append(i)
            ctxs.append(ctx)

        metric_values: list[MetricValue] = []
        metric_errors: dict[str, str] = {}
        ok = [records[i] for i in ok_idx]
        clusters = [r.cluster or r.doc_id for r in ok] if spec.cluster_by else None
        for metric in self.metrics:
            if metric.corpus:
                everything = [r.target for r in records] if metric.wants_all_targets else None
                try:
                    metric_values.extend(self._corpus(metric, ok, ctxs, clusters, everything))
                except Exception as exc:
                    # Keep the samples and every other metric: the responses are cached, so
                    # `mmeval run` again re-scores once the cause (weights, a bad file) is fixed.
                    metric_errors[metric.name] = f"{type(exc).__name__}: {exc}"
            else:
                per: dict[str, list[float]] = {}
                per_cluster: dict[str, list[str]] = {}  # aligned with per[name]: a sample may have no value
                try:
                    batch = metric.score_batch([r.parsed for r in ok], [r.target for r in ok], ctxs)
                except Exception as exc:  # a model-based metric (CLIP, CLAP) that cannot load or decode
                    metric_errors[metric.name] = f"{type(exc).__name__}: {exc}"
                    continue
                for j, (rec, scores) in enumerate(zip(ok, batch, strict=True)):
                    for name, value in scores.items():
                        rec.scores[name] = value
                        per.setdefault(name, []).append(value)
                        if clusters is not None:
                            per_cluster.setdefault(name, []).append(clusters[j])
                metric_values.extend(
                    to_metric_value(name, mean_ci(vals, per_cluster[name] if clusters is not None else None)) for name, vals in per.items()
                )

        n_ok = len(ok)
        breakdown = self._breakdown(ok, ctxs, clusters)
        result = TaskResult(
            task=spec.task,
            version=spec.version,
            n=len(records),
            n_errors=len(records) - n_ok,
            n_cached=sum(r.cached for r in records),
            metrics=metric_values,
            extraction_rate=(1 - sum(stages.get(s, 0) for s in NOT_EXTRACTED) / n_ok) if n_ok else None,
            extraction_stages=dict(sorted(stages.items())),
            errors=dict(errors.most_common()),
            breakdown=breakdown,
            metric_errors=metric_errors,
        )
        return result, records

    def _breakdown(
        self, ok: list[SampleRecord], ctxs: list[ParseContext], clusters: list[str] | None
    ) -> dict[str, dict[str, dict[str, MetricValue]]]:
        """Every per-sample score, again for each value of each ``breakdown`` column."""
        out: dict[str, dict[str, dict[str, MetricValue]]] = {}
        for col, template in self.spec.breakdown:
            tmpl = ENV.from_string(template)
            members: dict[str, list[int]] = {}
            for i, ctx in enumerate(ctxs):
                members.setdefault(tmpl.render({**ctx.doc, "doc": ctx.doc}), []).append(i)
            out[col] = {}
            for value, idx in sorted(members.items()):
                names = dict.fromkeys(name for i in idx for name in ok[i].scores)
                out[col][value] = {
                    name: to_metric_value(
                        name,
                        mean_ci(
                            [ok[i].scores[name] for i in idx if name in ok[i].scores],
                            [clusters[i] for i in idx if name in ok[i].scores] if clusters else None,
                        ),
                    )
                    for name in names
                }
        return out

    def _corpus(
        self,
        metric: Metric,
        ok: list[SampleRecord],
        ctxs: list[ParseContext],
        clusters: list[str] | None,
        all_targets: list[Any] | None = None,
    ) -> list[MetricValue]:
        out = []
        extra = {"all_targets": all_targets} if all_targets is not None else {}
        scores = metric.corpus_score([r.parsed for r in ok], [r.target for r in ok], ctxs, seed=self.seed, **extra)
        for name, cs in scores.items():
            if cs.per_sample is not None:
                for rec, value in zip(ok, cs.per_sample, strict=True):
                    rec.scores[name] = value
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
                        n=len(ok) if cs.n is None else cs.n,
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
