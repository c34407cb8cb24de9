"""The runner: tasks -> requests -> (cache | model, batched) -> responses -> scores -> run store.

Order of work for each task:
1. load documents (deterministic order, ``--limit`` takes the first N) and render requests;
2. hash every request (media by sha256) and look the hashes up in the response cache;
3. send the misses to the model in length-aware batches (longest first, so memory errors
   surface at once and padding is minimal), committing each batch's responses to the cache
   before the next one starts;
4. score in document order and write samples/<task>.jsonl and run.json atomically.

A crash or Ctrl-C loses at most the batch in flight; re-running the same command finds the
incomplete run (same configuration hash) and completes it from the cache.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mmeval.engine.artifacts import ArtifactStore
from mmeval.engine.cache import ResponseCache, cache_key
from mmeval.engine.manifest import config_hash, device_info, git_state, library_versions, mmeval_version
from mmeval.engine.progress import RunProgress
from mmeval.engine.store import RunWriter, claim_run_dir, find_resumable, slug
from mmeval.models.base import Model, build_model, get_model_class, redact_args
from mmeval.tasks.loading import load_docs
from mmeval.tasks.prompts import PromptError, PromptRenderer
from mmeval.tasks.registry import ResolvedTask, resolve_tasks
from mmeval.tasks.scoring import Scorer, check_metric_args
from mmeval.types import MediaError, Request, Response, RunResult, TaskResult


class ModalityMismatchError(ValueError):
    """A task needs modalities the model does not have; raised before any weights load."""


class StrictModeError(RuntimeError):
    """``--strict``: at least one sample failed. The run is saved; the exit code says so."""


@dataclass
class RunConfig:
    model: str
    tasks: Sequence[str]
    model_args: dict[str, str] = field(default_factory=dict)
    metric_args: dict[str, str] = field(default_factory=dict)  # run-time metric settings (weights paths)
    batch_size: int = 1
    limit: int | float | None = None
    seed: int = 0
    output: Path = Path("results")
    run_id: str | None = None
    cache_path: Path | None = None  # default: <output>/cache.sqlite
    use_cache: bool = True
    strict: bool = False
    include_paths: Sequence[Path] = ()
    fixture_root: Path | None = None
    progress: bool = True
    command: str | None = None
    log: Callable[[str], None] = print


def plan_tasks(cfg: RunConfig) -> tuple[list[ResolvedTask], dict[str, str]]:
    """Resolve tasks and check modalities against the model's capabilities, before loading it.

    A task named explicitly that the model cannot serve is an error; one reached through a
    group is skipped with its reason (so ``--tasks demo`` runs what the model can do)."""
    resolved = resolve_tasks([t for t in cfg.tasks if not t.startswith(LMEVAL_PREFIX)], cfg.include_paths)
    model_cls = get_model_class(cfg.model)
    model_cls.check_args(cfg.model_args)  # before anything is written: run.json records the args
    caps = model_cls.capabilities_for(cfg.model_args)
    if lmeval_tasks(cfg) and "text" not in caps.input_modalities:
        raise ModalityMismatchError(f"model {cfg.model!r} takes no text input, so it cannot run lm-eval tasks")
    runnable, skipped = [], {}
    for rt in resolved:
        why = caps.refuses(rt.spec.input_modalities, rt.spec.output_modality)
        if why is None:
            runnable.append(rt)
        elif rt.explicit:
            raise ModalityMismatchError(f"model {cfg.model!r} cannot run task {rt.spec.task!r}: it {why}")
        else:
            skipped[rt.spec.task] = f"model {why}"
    if not runnable and not lmeval_tasks(cfg):
        raise ModalityMismatchError(f"model {cfg.model!r} can run none of the tasks {list(cfg.tasks)}: {skipped}")
    check_metric_args([rt.spec for rt in runnable], cfg.metric_args)
    return runnable, skipped


LMEVAL_PREFIX = "lm-eval:"


def lmeval_tasks(cfg: RunConfig) -> list[str]:
    """``--tasks lm-eval:<task>``: lm-evaluation-harness text tasks run on the same adapter."""
    return [t for t in cfg.tasks if t.startswith(LMEVAL_PREFIX)]


def evaluate(cfg: RunConfig) -> RunResult:
    random.seed(cfg.seed)
    tasks, skipped = plan_tasks(cfg)
    identity = {
        "model": cfg.model,
        "model_args": redact_args(cfg.model_args),
        "limit": cfg.limit,
        "seed": cfg.seed,
        "tasks": [(t.spec.task, t.spec.version, t.spec.content_hash) for t in tasks] + lmeval_tasks(cfg),
    }
    if cfg.metric_args:  # only when given, so earlier runs' hashes (and resumes) are unchanged
        identity["metric_args"] = redact_args(cfg.metric_args)
    chash = config_hash(identity)
    run_dir = _run_dir(cfg, chash)
    resumed = (run_dir / "run.json").exists()
    if resumed:
        cfg.log(f"Resuming incomplete run {run_dir} from the response cache.")
    manifest: dict[str, Any] = {
        "run_id": run_dir.name,
        "status": "running",
        "config_hash": chash,
        "started": _now(),
        "command": cfg.command,
        "mmeval_version": mmeval_version(),
        "git": git_state(),
        "seed": cfg.seed,
        "limit": cfg.limit,
        "batch_size": cfg.batch_size,
        "model": {"name": cfg.model, "args": redact_args(cfg.model_args)},
        "metric_args": redact_args(cfg.metric_args),
        "libraries": library_versions(),
        "tasks": {},
        "skipped_tasks": skipped,
    }
    writer = RunWriter(run_dir, manifest)
    cache_path = cfg.cache_path or cfg.output / "cache.sqlite"
    cache = ResponseCache(cache_path) if cfg.use_cache else None
    # Generated media: in the run, and hard-linked beside the cache so cache hits can restore them.
    artifacts = ArtifactStore(run_dir, cache_path.with_suffix(".artifacts") if cfg.use_cache else None)
    model: Model | None = None
    results: dict[str, TaskResult] = {}
    try:
        model = build_model(cfg.model, cfg.model_args)
        fingerprint = model.fingerprint()
        manifest["model"].update(
            {
                "fingerprint": fingerprint,
                "info": model.info(),
                "card": model.card.to_dict(),
                "capabilities": model.capabilities.to_dict(),
            }
        )
        manifest["device"] = device_info()
        writer.flush()
        with RunProgress(enabled=cfg.progress) as progress:
            for rt in tasks:
                results[rt.spec.task] = _run_task(rt, cfg, model, fingerprint, cache, artifacts, writer, progress)
            for name in lmeval_tasks(cfg):
                results[name] = _run_lmeval_task(name, cfg, model, writer)
    except KeyboardInterrupt:
        writer.set_status("interrupted", interrupted=_now())
        cfg.log(f"Interrupted. Finished tasks and every completed batch are saved; run the same command again to resume {run_dir}.")
        raise
    finally:
        if cache is not None:
            cache.close()
        if model is not None:
            model.close()
    # Adapters that load lazily know their exact card and device only after generating.
    manifest["model"].update(info=model.info(), card=model.card.to_dict())
    total_errors = sum(r.n_errors for r in results.values())
    writer.set_status("complete", finished=_now(), n_errors=total_errors)
    run = RunResult(run_id=run_dir.name, path=run_dir, manifest=writer.manifest, tasks=results)
    if cfg.strict and total_errors:
        raise StrictModeError(f"--strict: {total_errors} sample(s) failed; see {run_dir / 'run.json'}")
    return run


def _run_dir(cfg: RunConfig, chash: str) -> Path:
    if cfg.run_id:
        return cfg.output / slug(cfg.run_id)
    return find_resumable(cfg.output, chash) or claim_run_dir(cfg.output, cfg.model)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _run_task(
    rt: ResolvedTask,
    cfg: RunConfig,
    model: Model,
    fingerprint: str,
    cache: ResponseCache | None,
    artifacts: ArtifactStore,
    writer: RunWriter,
    progress: RunProgress,
) -> TaskResult:
    spec = rt.spec
    if "seed" not in (spec.raw.get("generation") or {}):
        spec = replace(spec, generation=replace(spec.generation, seed=cfg.seed))
    t0 = time.perf_counter()
    data = load_docs(spec, cfg.limit, cfg.fixture_root)
    t_load = time.perf_counter()
    renderer = PromptRenderer(spec, protocol=model.prompt_protocol)
    n = len(data.docs)
    requests: list[Request | None] = [None] * n
    responses: list[Response | None] = [None] * n
    phashes: list[str | None] = [None] * n
    keys: list[str | None] = [None] * n
    for i, (doc_id, doc) in enumerate(zip(data.doc_ids, data.docs, strict=True)):
        rid = f"{spec.task}/{doc_id}"
        try:
            req = renderer.render(doc, rid)
            phashes[i] = req.prompt_hash()
            keys[i] = cache_key(fingerprint, req.content_hash(phashes[i]))
            requests[i] = req
        except (MediaError, PromptError) as exc:
            kind = "media" if isinstance(exc, MediaError) else "prompt"
            responses[i] = Response.failed(rid, f"{kind}: {exc}")
    t_render = time.perf_counter()

    if cache is not None:
        live = [k for k in keys if k is not None]
        hits = cache.get_many(live)
        for i, k in enumerate(keys):
            # A hit whose generated media are gone from the cache folder is regenerated.
            if k is not None and k in hits and artifacts.restore(hits[k]):
                responses[i] = hits[k]
    todo = [i for i in range(n) if responses[i] is None]
    writer.manifest["tasks"][spec.task] = {
        "version": spec.version,
        "content_hash": spec.content_hash,
        "source": str(spec.source),
        "dataset": data.info,
        "n_docs_total": data.total,
        "n_docs": n,
        "generation": spec.generation.to_dict(),
        "cluster_by": spec.cluster_by,
        "prompt_variant": renderer.variant,  # which of the task's prompts the model's protocol selected
        "parse": spec.parse.name,
        "metrics": [m.name for m in spec.metrics],
    }
    progress.start_task(spec.task, total=n, done=n - len(todo))
    batch_size = max(1, cfg.batch_size if model.capabilities.batchable else 1)
    # Longest first; ties by document order, so the schedule is deterministic.
    todo.sort(key=lambda i: (-_request_size(requests[i]), i))  # type: ignore[arg-type]
    for start in range(0, len(todo), batch_size):
        idx = todo[start : start + batch_size]
        batch = [requests[i] for i in idx]
        out = _generate_isolated(model, batch)  # type: ignore[arg-type]
        for i, resp in zip(idx, out, strict=True):
            responses[i] = artifacts.store(resp)
        if cache is not None:
            cache.put_many((keys[i], fingerprint, responses[i]) for i in idx)  # type: ignore[misc]
        progress.advance(len(idx))
    t_gen = time.perf_counter()

    scorer = Scorer(spec, cfg.seed, root=writer.dir, metric_args=cfg.metric_args)
    result, records = scorer.score(data.doc_ids, data.docs, responses, phashes)  # type: ignore[arg-type]
    # The settings each metric ran with, defaults resolved (extractor, CLIP model, bootstrap...).
    writer.manifest["tasks"][spec.task]["metric_config"] = [{"name": m.name, **redact_args(m.kwargs)} for m in scorer.metrics]
    t_score = time.perf_counter()
    result.timings = {
        "load_s": t_load - t0,
        "render_s": t_render - t_load,
        "generate_s": t_gen - t_render,
        "score_s": t_score - t_gen,
        "total_s": t_score - t0,
        "samples_per_s": n / (t_score - t0) if t_score > t0 else 0.0,
    }
    writer.write_task(result, records)
    progress.finish_task(result)
    return result


def _run_lmeval_task(name: str, cfg: RunConfig, model: Model, writer: RunWriter) -> TaskResult:
    """An lm-evaluation-harness task on the model's text path, written like any other task."""
    from mmeval.lmeval_bridge import run_lmeval_task

    t0 = time.perf_counter()
    result, records = run_lmeval_task(model, name.removeprefix(LMEVAL_PREFIX), cfg.limit, cfg.seed, writer.dir, batch_size=cfg.batch_size)
    result.task = name
    result.timings = {**result.timings, "total_s": time.perf_counter() - t0}
    writer.manifest["tasks"][name] = {"source": "lm-evaluation-harness", "version": result.version, "n_docs": result.n}
    writer.write_task(result, records)
    return result


def _request_size(req: Request) -> int:
    return len(req.media()) * 10_000 + len(req.prompt_text())


def _generate_isolated(model: Model, batch: list[Request]) -> list[Response]:
    """Generate a batch; if the model raises, retry one by one so only the culprit fails."""
    try:
        out = model.generate(batch)
    except Exception as exc:
        if len(batch) == 1:
            return [Response.failed(batch[0].id, f"model: {type(exc).__name__}: {exc}")]
        return [r for req in batch for r in _generate_isolated(model, [req])]
    by_id = {r.id: r for r in out}
    return [by_id.get(req.id) or Response.failed(req.id, "model: returned no response for this request") for req in batch]
