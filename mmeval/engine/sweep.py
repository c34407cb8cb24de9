"""Many models over many tasks: ``mmeval run --model a --model b`` or ``mmeval sweep sweep.yaml``.

A (model, task) pair is finished when some run under the output directory, complete or not,
holds that task's result for the same model, model args, limit, seed and metric args, and
the same task version and content hash. Finished pairs are skipped (``rerun`` forces them);
the rest of a model's tasks run as one ordinary run (which itself resumes from the cache).
One model failing (weights missing, out of memory) does not stop the others.

Sweep file (YAML)::

    tasks: [vqav2_val, mmbench_en]        # names, groups or task YAML paths
    limit: 500                             # optional, as on the command line
    seed: 0
    batch_size: 8                          # default for every model
    metric_args: {inception_weights: /w/pt_inception.pth}
    models:
      - model: hf-llava
        model_args: {pretrained: llava-hf/llava-1.5-7b-hf}
        batch_size: 16                     # this model only
      - model: hf-qwen2-vl
        model_args: "pretrained=Qwen/Qwen2-VL-2B-Instruct,dtype=bfloat16"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from mmeval.engine.runner import LMEVAL_PREFIX, RunConfig, evaluate, plan_tasks
from mmeval.engine.store import RUN_FILE, iter_manifests
from mmeval.models.base import ModelArgsError, args_label, parse_model_args, redact_args
from mmeval.types import RunResult


class SweepError(ValueError):
    """A sweep file that cannot be used as written."""


@dataclass
class SweepModel:
    model: str
    model_args: dict[str, str] = field(default_factory=dict)
    batch_size: int | None = None


@dataclass
class Sweep:
    models: list[SweepModel]
    tasks: list[str]
    limit: int | float | None = None
    seed: int = 0
    batch_size: int = 1
    metric_args: dict[str, str] = field(default_factory=dict)


@dataclass
class PairStatus:
    model: str
    task: str
    status: str  # finished | to run | skipped (the model cannot run it) | failed
    where: str = ""  # the run directory, the skip reason or the error


@dataclass
class SweepResult:
    runs: list[RunResult] = field(default_factory=list)  # new runs and the runs that hold finished pairs
    pairs: list[PairStatus] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # model label -> why it could not run
    strict_failures: dict[str, str] = field(default_factory=dict)  # model label -> failed samples (with --strict)


_MODEL_KEYS = {"model", "model_args", "batch_size"}
_TOP_KEYS = {"models", "tasks", "limit", "seed", "batch_size", "metric_args"}


def load_sweep(path: str | Path) -> Sweep:
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SweepError(f"{p}: cannot read the sweep file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise SweepError(f"{p}: invalid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise SweepError(f"{p}: a sweep file is a mapping with 'models' and 'tasks'")
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise SweepError(f"{p}: unknown key(s) {unknown}; a sweep file takes {sorted(_TOP_KEYS)}")
    models = doc.get("models")
    if not isinstance(models, list) or not models:
        raise SweepError(f"{p}: 'models' must be a non-empty list of {{model: NAME, model_args: ..., batch_size: N}}")
    tasks = doc.get("tasks")
    if isinstance(tasks, str):
        tasks = tasks.split(",")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise SweepError(f"{p}: 'tasks' must be a list of task names, groups or YAML paths")
    return Sweep(
        models=[_sweep_model(p, i, m) for i, m in enumerate(models, 1)],
        tasks=[t.strip() for t in tasks if t.strip()],
        limit=_number(p, "limit", doc.get("limit"), allow_fraction=True),
        seed=int(_number(p, "seed", doc.get("seed", 0)) or 0),
        batch_size=int(_number(p, "batch_size", doc.get("batch_size", 1)) or 1),
        metric_args=_args(p, "metric_args", doc.get("metric_args")),
    )


def _sweep_model(path: Path, i: int, entry: Any) -> SweepModel:
    where = f"{path}: models[{i}]"
    if isinstance(entry, str):
        entry = {"model": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
        raise SweepError(f"{where}: each model is a mapping with a 'model' name (got {entry!r})")
    unknown = sorted(set(entry) - _MODEL_KEYS)
    if unknown:
        raise SweepError(f"{where} ({entry['model']}): unknown key(s) {unknown}; a model entry takes {sorted(_MODEL_KEYS)}")
    batch = entry.get("batch_size")
    return SweepModel(
        model=entry["model"],
        model_args=_args(path, f"models[{i}].model_args", entry.get("model_args")),
        batch_size=None if batch is None else int(_number(path, f"models[{i}].batch_size", batch) or 1),
    )


def _args(path: Path, key: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, str):
        try:
            return parse_model_args(value, key, "pretrained=DIR,dtype=bfloat16")
        except ModelArgsError as exc:
            raise SweepError(f"{path}: {exc}") from exc
    raise SweepError(f"{path}: {key} must be a mapping or a k=v,k2=v2 string, got {type(value).__name__}")


def _number(path: Path, key: str, value: Any, allow_fraction: bool = False) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (isinstance(value, float) and not allow_fraction):
        raise SweepError(f"{path}: {key} must be a non-negative {'number' if allow_fraction else 'integer'}, got {value!r}")
    if isinstance(value, float) and value >= 1:
        return int(value)
    return value


def finished_tasks(cfg: RunConfig, tasks: dict[str, tuple[int, str] | None]) -> dict[str, Path]:
    """Which of ``tasks`` (name -> (version, content hash), None for lm-eval tasks) already
    have a result for ``cfg``'s model configuration under ``cfg.output``, and where."""
    found: dict[str, Path] = {}
    want_model = {"name": cfg.model, "args": redact_args(cfg.model_args)}
    for run_dir, m in iter_manifests(cfg.output):
        model = m.get("model", {})
        same = (
            model.get("name") == want_model["name"]
            and (model.get("args") or {}) == want_model["args"]
            and m.get("limit") == cfg.limit
            and m.get("seed") == cfg.seed
            and (m.get("metric_args") or {}) == redact_args(cfg.metric_args)
        )
        if not same:
            continue
        for name, ident in tasks.items():
            info = (m.get("tasks") or {}).get(name) or {}
            if name in (m.get("results") or {}) and (ident is None or (info.get("version"), info.get("content_hash")) == ident):
                found.setdefault(name, run_dir)
    return found


def run_sweep(
    sweep: Sweep,
    base: RunConfig,
    rerun: bool = False,
    dry_run: bool = False,
    on_model: Callable[[SweepModel, list[PairStatus]], None] | None = None,
) -> SweepResult:
    """Each model over the sweep's tasks, skipping finished pairs; ``base`` gives the output
    directory, cache and logging. A model that fails is recorded and the next one runs."""
    out = SweepResult()
    loaded: dict[Path, RunResult] = {}
    for entry in sweep.models:
        cfg = replace(
            base,
            model=entry.model,
            model_args=entry.model_args,
            tasks=list(sweep.tasks),
            batch_size=entry.batch_size or sweep.batch_size,
            limit=sweep.limit,
            seed=sweep.seed,
            metric_args=sweep.metric_args,
            run_id=None,
        )
        label = _label(entry)
        pairs: list[PairStatus] = []
        try:
            planned, skipped = plan_tasks(cfg)
            idents: dict[str, tuple[int, str] | None] = {rt.spec.task: (rt.spec.version, rt.spec.content_hash) for rt in planned}
            idents.update({t: None for t in cfg.tasks if t.startswith(LMEVAL_PREFIX)})
            done = {} if rerun else finished_tasks(cfg, idents)
            pairs += [PairStatus(label, t, "skipped", why) for t, why in skipped.items()]
            pairs += [PairStatus(label, t, "finished", str(done[t])) for t in idents if t in done]
            todo = [rt for rt in planned if rt.spec.task not in done]
            todo_lmeval = [t for t in idents if idents[t] is None and t not in done]
            pairs += [PairStatus(label, rt.spec.task, "to run") for rt in todo] + [PairStatus(label, t, "to run") for t in todo_lmeval]
            if on_model is not None:
                on_model(entry, pairs)
            for path in dict.fromkeys(done.values()):
                if path not in loaded:
                    from mmeval.report.store import load_run

                    loaded[path] = load_run(path)
                out.runs.append(_only(loaded[path], [t for t, p in done.items() if p == path]))
            if not dry_run and (todo or todo_lmeval):
                cfg.tasks = [str(rt.spec.source) for rt in todo] + todo_lmeval
                run = evaluate(replace(cfg, strict=False))  # --strict is judged over the whole sweep
                out.runs.append(run)
                n_errors = sum(r.n_errors for r in run.tasks.values())
                if base.strict and n_errors:
                    out.strict_failures[label] = f"{n_errors} sample(s) failed; see {run.path / RUN_FILE}"
        except Exception as exc:  # one model's failure must not stop the sweep
            why = f"{type(exc).__name__}: {exc}"
            out.failures[label] = why
            base.log(f"model {label} failed: {why}; going on with the next model")
            pairs = [replace(p, status="failed", where=why) if p.status == "to run" else p for p in pairs]
            pairs = pairs or [PairStatus(label, t, "failed", why) for t in sweep.tasks]
        out.pairs += pairs
    return out


def _label(entry: SweepModel) -> str:
    return args_label(entry.model, redact_args(entry.model_args))  # as tables name the run's model


def _only(run: RunResult, tasks: list[str]) -> RunResult:
    """The run, showing only the given tasks' results (the ones it supplies to the sweep)."""
    return RunResult(run_id=run.run_id, path=run.path, manifest=run.manifest, tasks={t: run.tasks[t] for t in tasks if t in run.tasks})
