"""The runner: tasks -> requests -> (cache | model, batched) -> responses -> scores -> run store.

Each task streams through in chunks of documents, so memory stays flat as datasets grow:
1. open the dataset (one pass counts it, checks columns and ids; ``--limit`` takes the first N);
2. per chunk: render requests, hash them (media by sha256), look the hashes up in the
   response cache, send the misses to the model in length-aware batches (longest first, so
   memory errors surface at once and padding is minimal), committing each batch's responses
   to the cache before the next one starts;
3. parse and score the chunk, append its sample lines to the samples file;
4. at the task's end: corpus metrics, aggregates with CIs, and run.json, written atomically.

Under torchrun / accelerate (mmeval.engine.distributed) every rank generates its share of the
documents into a shard and rank 0 merges them in document order and scores.

A crash or Ctrl-C loses at most the batch in flight; re-running the same command (with any
number of ranks) finds the incomplete run (same configuration hash) and completes it from
the cache.
"""

from __future__ import annotations

import contextlib
import heapq
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mmeval.engine import distributed
from mmeval.engine.artifacts import ArtifactStore
from mmeval.engine.cache import ResponseCache, cache_key
from mmeval.engine.distributed import Dist
from mmeval.engine.manifest import config_hash, device_info, git_state, library_versions, mmeval_version
from mmeval.engine.progress import RunProgress
from mmeval.engine.store import RankShard, RunLock, RunWriter, SampleSink, lock_run_dir
from mmeval.models.base import Model, build_model, get_model_class, redact_args
from mmeval.tasks.loading import DocStream, open_docs
from mmeval.tasks.prompts import PromptError, PromptRenderer
from mmeval.tasks.registry import ResolvedTask, resolve_tasks
from mmeval.tasks.scoring import Scorer, TaskScore, check_metric_args
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
    dist: Dist | None = None  # default: from the launcher's environment (torchrun, accelerate)


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
    dist = cfg.dist or distributed.from_env()
    try:
        return _evaluate(cfg, dist)
    finally:
        if cfg.dist is None:
            dist.close()


def _evaluate(cfg: RunConfig, dist: Dist) -> RunResult:
    random.seed(cfg.seed)
    if not dist.is_main:  # one voice: rank 0 logs, shows progress and writes run.json
        cfg = replace(cfg, log=lambda _m: None, progress=False)
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
    chash = config_hash(identity)  # not the world size: a run resumes with any number of ranks
    lock: RunLock | None = None
    run_dir: Path | None = None
    if dist.is_main:
        run_dir, lock = lock_run_dir(cfg.output, chash, cfg.model, cfg.run_id)
    try:
        run_dir = Path(dist.broadcast(str(run_dir) if dist.is_main else None))
        return _run(cfg, dist, tasks, skipped, chash, run_dir)
    finally:
        if lock is not None:
            lock.release()


def _run(cfg: RunConfig, dist: Dist, tasks: list[ResolvedTask], skipped: dict[str, str], chash: str, run_dir: Path) -> RunResult:
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
    if dist.active:
        manifest["distributed"] = dist.describe()
    writer = RunWriter(run_dir, manifest) if dist.is_main else None
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
        if writer is not None:
            writer.flush()
        with RunProgress(enabled=cfg.progress) as progress:
            ctx = _TaskContext(cfg, model, fingerprint, cache, artifacts, run_dir, writer, progress, dist)
            for rt in tasks:
                result = _run_task(rt, ctx)
                if result is not None:
                    results[rt.spec.task] = result
            if writer is not None:  # rank 0: lm-eval tasks run in one process
                for name in lmeval_tasks(cfg):
                    results[name] = _run_lmeval_task(name, cfg, model, writer)
    except KeyboardInterrupt:
        if writer is not None:
            writer.set_status("interrupted", interrupted=_now())
        cfg.log(f"Interrupted. Finished tasks and every completed batch are saved; run the same command again to resume {run_dir}.")
        raise
    finally:
        if cache is not None:
            cache.close()
        if model is not None:
            model.close()
    if dist.active and writer is not None:
        with contextlib.suppress(OSError):  # every rank is past its last shard now
            (run_dir / "samples" / ".shards").rmdir()
    if writer is None:  # a worker rank: its share is in the shards rank 0 merged
        return RunResult(run_id=run_dir.name, path=run_dir, manifest={"rank": dist.rank, "world_size": dist.world_size}, tasks={})
    # Adapters that load lazily know their exact card and device only after generating.
    manifest["model"].update(info=model.info(), card=model.card.to_dict())
    total_errors = sum(r.n_errors for r in results.values())
    writer.set_status("complete", finished=_now(), n_errors=total_errors)
    run = RunResult(run_id=run_dir.name, path=run_dir, manifest=writer.manifest, tasks=results)
    if cfg.strict and total_errors:
        raise StrictModeError(f"--strict: {total_errors} sample(s) failed; see {run_dir / 'run.json'}")
    return run


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class _TaskContext:
    """What every task of a run shares."""

    cfg: RunConfig
    model: Model
    fingerprint: str
    cache: ResponseCache | None
    artifacts: ArtifactStore
    run_dir: Path
    writer: RunWriter | None  # None on ranks other than 0
    progress: RunProgress
    dist: Dist


@dataclass
class _Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - since
        return now


Generated = tuple[int, str | None, Response]  # (document index, prompt hash, response)


def chunk_size(batch_size: int) -> int:
    """Documents per chunk: enough for length-aware batching, few enough to keep memory flat."""
    return max(1024, 8 * batch_size)


def _run_task(rt: ResolvedTask, ctx: _TaskContext) -> TaskResult | None:
    """One task; on a rank other than 0 only its share of the generation (returns None)."""
    cfg, dist = ctx.cfg, ctx.dist
    spec = rt.spec
    if "seed" not in (spec.raw.get("generation") or {}):
        spec = replace(spec, generation=replace(spec.generation, seed=cfg.seed))
    timer = _Timer()
    t0 = time.perf_counter()
    stream = open_docs(spec, cfg.limit, cfg.fixture_root)
    timer.add("load_s", t0)
    renderer = PromptRenderer(spec, protocol=ctx.model.prompt_protocol)
    if ctx.writer is not None:
        ctx.writer.manifest["tasks"][spec.task] = {
            "version": spec.version,
            "content_hash": spec.content_hash,
            "source": str(spec.source),
            "dataset": stream.info,
            "n_docs_total": stream.total,
            "n_docs": len(stream),
            "generation": spec.generation.to_dict(),
            "cluster_by": spec.cluster_by,
            "prompt_variant": renderer.variant,  # which of the task's prompts the model's protocol selected
            "parse": spec.parse.name,
            "metrics": [m.name for m in spec.metrics],
        }
    share = len(range(dist.rank, len(stream), dist.world_size))  # this rank's documents (all of them in one process)
    ctx.progress.start_task(spec.task, total=share, done=0)
    size = chunk_size(ctx.cfg.batch_size)
    if dist.active:
        shard = RankShard(ctx.run_dir, spec.task, dist.rank, dist.world_size)
        for chunk in stream.chunks(size, select=dist.owns):
            shard.write(_respond(chunk, spec, renderer, ctx, timer))
        shard.close()
        t = time.perf_counter()
        dist.barrier()  # every rank's shard is complete
        timer.add("wait_s", t)
        if not dist.is_main:
            return None
        pairs = _aligned(stream, _merged_shards(shard.dir, dist.world_size), size)
    else:
        pairs = ((chunk, _respond(chunk, spec, renderer, ctx, timer)) for chunk in stream.chunks(size))
    assert ctx.writer is not None
    scorer = Scorer(spec, cfg.seed, root=ctx.run_dir, metric_args=cfg.metric_args)
    acc = TaskScore(scorer)
    sink = SampleSink(ctx.writer.samples_path(spec.task))
    try:
        for chunk, rows in pairs:
            t = time.perf_counter()
            records = acc.add([c[1] for c in chunk], [c[2] for c in chunk], [r[2] for r in rows], [r[1] for r in rows])
            sink.write(records)
            timer.add("score_s", t)
        t = time.perf_counter()
        result, corpus_scores = acc.finish()
        sink.close(corpus_scores)
        timer.add("score_s", t)
    finally:
        sink.abort()
    if dist.active:  # merged; only this task's folder: the other ranks may be writing the next task's shards
        shutil.rmtree(shard.dir, ignore_errors=True)
    # The settings each metric ran with, defaults resolved (extractor, CLIP model, bootstrap...).
    ctx.writer.manifest["tasks"][spec.task]["metric_config"] = [{"name": m.name, **redact_args(m.kwargs)} for m in scorer.metrics]
    total = time.perf_counter() - t0
    result.timings = {
        **{k: timer.seconds.get(k, 0.0) for k in ("load_s", "render_s", "generate_s", "score_s")},
        **({"wait_s": timer.seconds.get("wait_s", 0.0)} if dist.active else {}),
        "total_s": total,
        "samples_per_s": result.n / total if total > 0 else 0.0,
    }
    ctx.writer.record_task(result)
    ctx.progress.finish_task(result)
    return result


def _respond(
    chunk: list[tuple[int, str, dict[str, Any]]], spec: Any, renderer: PromptRenderer, ctx: _TaskContext, timer: _Timer
) -> list[Generated]:
    """Responses for a chunk of documents, in chunk order: from the cache, else the model."""
    t = time.perf_counter()
    n = len(chunk)
    requests: list[Request | None] = [None] * n
    responses: list[Response | None] = [None] * n
    phashes: list[str | None] = [None] * n
    keys: list[str | None] = [None] * n
    for j, (_i, doc_id, doc) in enumerate(chunk):
        rid = f"{spec.task}/{doc_id}"
        try:
            req = renderer.render(doc, rid)
            phashes[j] = req.prompt_hash()
            keys[j] = cache_key(ctx.fingerprint, req.content_hash(phashes[j]))
            requests[j] = req
        except (MediaError, PromptError) as exc:
            kind = "media" if isinstance(exc, MediaError) else "prompt"
            responses[j] = Response.failed(rid, f"{kind}: {exc}")
    if ctx.cache is not None:
        hits = ctx.cache.get_many([k for k in keys if k is not None])
        for j, k in enumerate(keys):
            # A hit whose generated media are gone from the cache folder is regenerated.
            if k is not None and k in hits and ctx.artifacts.restore(hits[k]):
                responses[j] = hits[k]
    todo = [j for j in range(n) if responses[j] is None]
    ctx.progress.advance(n - len(todo))
    t = timer.add("render_s", t)
    batch_size = max(1, ctx.cfg.batch_size if ctx.model.capabilities.batchable else 1)
    # Longest first; ties by document order, so the schedule is deterministic.
    todo.sort(key=lambda j: (-_request_size(requests[j]), j))  # type: ignore[arg-type]
    for start in range(0, len(todo), batch_size):
        idx = todo[start : start + batch_size]
        out = _generate_isolated(ctx.model, [requests[j] for j in idx])  # type: ignore[misc]
        for j, resp in zip(idx, out, strict=True):
            responses[j] = ctx.artifacts.store(resp)
        if ctx.cache is not None:
            ctx.cache.put_many((keys[j], ctx.fingerprint, responses[j]) for j in idx)  # type: ignore[misc]
        ctx.progress.advance(len(idx))
    timer.add("generate_s", t)
    return [(i, phashes[j], responses[j]) for j, (i, _, _) in enumerate(chunk)]  # type: ignore[misc]


def _merged_shards(shard_dir: Path, world_size: int) -> Iterator[Generated]:
    """The ranks' shards merged into document order (each shard is already in order)."""
    paths = [RankShard.file(shard_dir, r, world_size) for r in range(world_size)]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise RuntimeError(f"data-parallel merge: shard(s) {missing} are missing; did a rank fail? Re-run to resume from the cache.")
    return heapq.merge(*(RankShard.read(p) for p in paths), key=lambda g: g[0])


def _aligned(
    stream: DocStream, generated: Iterator[Generated], size: int
) -> Iterator[tuple[list[tuple[int, str, dict[str, Any]]], list[Generated]]]:
    """Chunks of documents beside their responses; any gap or surplus is an error, not a shift."""
    for chunk in stream.chunks(size):
        rows = [next(generated, None) for _ in chunk]
        for (i, doc_id, _), row in zip(chunk, rows, strict=True):
            if row is None or row[0] != i:
                got = "nothing" if row is None else f"document {row[0]}"
                raise RuntimeError(f"responses out of step with documents at document {i} ({doc_id}): got {got}")
        yield chunk, rows  # type: ignore[misc]
    extra = next(generated, None)
    if extra is not None:
        raise RuntimeError(f"a response for document {extra[0]} beyond the dataset's {len(stream)} documents")


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
            # An unreadable file the adapter found while decoding is a media fault, not the model's.
            why = f"media: {exc}" if isinstance(exc, MediaError) else f"model: {type(exc).__name__}: {exc}"
            return [Response.failed(batch[0].id, why)]
        return [r for req in batch for r in _generate_isolated(model, [req])]
    by_id = {r.id: r for r in out}
    return [by_id.get(req.id) or Response.failed(req.id, "model: returned no response for this request") for req in batch]
