"""The ``mmeval`` command line. Thin: parse arguments, call the engine, print with rich."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mmeval.engine.runner import ModalityMismatchError, RunConfig, StrictModeError, evaluate
from mmeval.engine.store import RunLockedError
from mmeval.engine.sweep import PairStatus, Sweep, SweepError, SweepModel, load_sweep, run_sweep
from mmeval.metrics.base import MetricArgsError
from mmeval.models.base import ModelArgsError, UnknownModelError, model_registry, parse_model_args
from mmeval.report.leaderboard import LeaderboardError, load_leaderboard
from mmeval.report.leaderboard_cli import register as register_leaderboard
from mmeval.report.store import RunStoreError, find_runs
from mmeval.report.table import markdown_table, rich_table, scores_frame
from mmeval.tasks.loading import DatasetError
from mmeval.tasks.registry import UnknownTaskError, groups, task_index
from mmeval.tasks.spec import TaskSpecError
from mmeval.types import RunResult

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Evaluate multimodal LLMs: scores with error bars, per-sample logs, reproducible manifests.",
)


class _Consoles:
    """stdout/stderr consoles, made on use: a pipe or a CI log gets wide tables, not 80 columns."""

    @property
    def out(self) -> Console:
        return Console(width=None if sys.stdout.isatty() else 200)

    @property
    def err(self) -> Console:
        return Console(stderr=True, width=None if sys.stderr.isatty() else 200)


_c = _Consoles()

USER_ERRORS = (
    TaskSpecError,
    DatasetError,
    UnknownTaskError,
    UnknownModelError,
    ModelArgsError,
    ModalityMismatchError,
    RunStoreError,
    MetricArgsError,
    LeaderboardError,
    FileNotFoundError,
    RunLockedError,
)
EXIT_USER, EXIT_STRICT, EXIT_INTERRUPT = 2, 3, 130

TasksOpt = Annotated[str, typer.Option("--tasks", "-t", help="Comma-separated task names, groups (e.g. demo) or paths to task YAML files.")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Results directory; each run writes <output>/<run-id>/.")]
LimitOpt = Annotated[float | None, typer.Option(help="Only the first N documents of each task (a value < 1 is a fraction).")]


def _fail(message: str, code: int = EXIT_USER) -> None:
    _c.err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _limit(value: float | None) -> int | float | None:
    if value is None:
        return None
    return value if value < 1 else int(value)


def parse_metric_args(text: str) -> dict[str, str]:
    return parse_model_args(text, "--metric-args", "inception_weights=PATH,device=cuda")


def _config(command: str | None = None, **fields: Any) -> RunConfig:
    """A RunConfig with what every CLI command records: its command line and a stderr logger."""
    return RunConfig(
        command=command or shlex.join(["mmeval", *sys.argv[1:]]),
        log=lambda m: _c.err.print(m, highlight=False),
        **fields,
    )


def _execute(cfg: RunConfig, as_json: bool) -> RunResult:
    try:
        run = evaluate(cfg)
    except StrictModeError as exc:
        _fail(str(exc), EXIT_STRICT)
    except KeyboardInterrupt:
        _fail("interrupted; finished work is saved; run the same command again to resume.", EXIT_INTERRUPT)
    except USER_ERRORS as exc:
        _fail(str(exc))
    _report(run, as_json)
    return run


def _run_json(run: RunResult) -> dict[str, Any]:
    return {"run_id": run.run_id, "path": str(run.path), "results": {k: v.to_dict() for k, v in run.tasks.items()}}


def _report(run: RunResult, as_json: bool) -> None:
    if run.manifest.get("rank", 0):  # a data-parallel worker rank: rank 0 reports the merged run
        return
    if as_json:
        print(json.dumps(_run_json(run), indent=2))
        return
    _c.out.print(rich_table(scores_frame([run]), title=f"run {run.run_id}"))
    n_cached = sum(r.n_cached for r in run.tasks.values())
    n_total = sum(r.n for r in run.tasks.values())
    n_err = sum(r.n_errors for r in run.tasks.values())
    _c.out.print(
        f"{n_total} samples, {n_cached} served from the response cache ({(n_cached / n_total if n_total else 0):.0%}), {n_err} failed."
    )
    for task, why in run.manifest.get("skipped_tasks", {}).items():
        _c.out.print(f"[yellow]skipped {task}[/]: {why}")
    for task, res in run.tasks.items():
        for kind, count in res.errors.items():
            _c.out.print(f"[yellow]{task}: {count} sample(s) failed ({kind}); details in samples/{task}.jsonl[/]")
        for metric, why in res.metric_errors.items():
            _c.out.print(f"[red]{task}: metric {metric} could not be computed: {why}[/]")
    _c.out.print(f"Results: {run.path / 'run.json'}")


@app.command()
def run(
    model: Annotated[list[str], typer.Option("--model", "-m", help="Adapter name (see `mmeval models`); repeat it to run several models.")],
    tasks: TasksOpt,
    model_args: Annotated[str, typer.Option(help="Adapter arguments, k=v,k2=v2 (e.g. pretrained=DIR,dtype=bfloat16).")] = "",
    metric_args: Annotated[
        str, typer.Option(help="Run-time metric settings, k=v,... (e.g. inception_weights=PATH,clip_model=DIR,device=cuda).")
    ] = "",
    batch_size: Annotated[int, typer.Option(min=1)] = 1,
    limit: LimitOpt = None,
    seed: int = 0,
    output: OutputOpt = Path("results"),
    run_id: Annotated[
        str | None, typer.Option(help="Name of the run directory (default: model + time, or the incomplete run of the same command).")
    ] = None,
    cache: Annotated[Path | None, typer.Option(help="Response cache file (default <output>/cache.sqlite).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit with code 3 if any sample failed (the run is still saved).")] = False,
    include_path: Annotated[list[Path] | None, typer.Option(help="Extra folder of task YAML files.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable results on stdout.")] = False,
) -> None:
    """Evaluate a model on tasks and write results/<run-id>/. With several --model: each model over
    the tasks, skipping (model, task) pairs already finished under --output (see `mmeval sweep`)."""
    try:
        args = parse_model_args(model_args)
        margs = parse_metric_args(metric_args)
    except ModelArgsError as exc:
        _fail(str(exc))
    if len(model) > 1:
        if args or run_id:
            _fail("--model-args and --run-id apply to one model; for several models with their own args, use a sweep file (`mmeval sweep`)")
        sweep = Sweep(
            models=[SweepModel(m) for m in model],
            tasks=tasks.split(","),
            limit=_limit(limit),
            seed=seed,
            batch_size=batch_size,
            metric_args=margs,
        )
        base = _sweep_base(output, cache, no_cache, strict, include_path, as_json)
        _execute_sweep(sweep, base, as_json, rerun=False, dry_run=False)
        return
    cfg = _config(
        model=model[0],
        tasks=tasks.split(","),
        model_args=args,
        metric_args=margs,
        batch_size=batch_size,
        limit=_limit(limit),
        seed=seed,
        output=output,
        run_id=run_id,
        cache_path=cache,
        use_cache=not no_cache,
        strict=strict,
        include_paths=include_path or (),
        progress=not as_json and sys.stderr.isatty(),
    )
    _execute(cfg, as_json)


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="YAML: models (each with model_args, batch_size) and tasks; see docs/scale.md.")],
    output: OutputOpt = Path("results"),
    cache: Annotated[Path | None, typer.Option(help="Response cache file (default <output>/cache.sqlite).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")] = False,
    rerun: Annotated[bool, typer.Option(help="Run finished (model, task) pairs again instead of skipping them.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print which pairs are finished and which would run; run nothing.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit with code 3 if any sample failed (every model still runs).")] = False,
    include_path: Annotated[list[Path] | None, typer.Option(help="Extra folder of task YAML files.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable results on stdout.")] = False,
) -> None:
    """Run a list of models over a list of tasks, skipping (model, task) pairs already finished."""
    try:
        plan = load_sweep(sweep_file)
    except SweepError as exc:
        _fail(str(exc))
    _execute_sweep(plan, _sweep_base(output, cache, no_cache, strict, include_path, as_json), as_json, rerun=rerun, dry_run=dry_run)


def _sweep_base(
    output: Path, cache: Path | None, no_cache: bool, strict: bool, include_path: list[Path] | None, as_json: bool
) -> RunConfig:
    """The settings a sweep's runs share (each model's run fills in model, tasks and args)."""
    return _config(
        model="",
        tasks=[],
        output=output,
        cache_path=cache,
        use_cache=not no_cache,
        strict=strict,
        include_paths=include_path or (),
        progress=not as_json and sys.stderr.isatty(),
    )


def _execute_sweep(plan: Sweep, base: RunConfig, as_json: bool, rerun: bool, dry_run: bool) -> None:
    def show_plan(entry: SweepModel, pairs: list[PairStatus]) -> None:
        for p in pairs:
            colour = {"finished": "green", "to run": "cyan", "skipped": "yellow"}.get(p.status, "red")
            _c.err.print(f"[{colour}]{p.status:>8}[/] {p.model} / {p.task}" + (f"  ({p.where})" if p.where else ""), highlight=False)

    try:
        result = run_sweep(plan, base, rerun=rerun, dry_run=dry_run, on_model=show_plan)
    except KeyboardInterrupt:
        _fail("interrupted; finished work is saved; run the same command again to resume.", EXIT_INTERRUPT)
    if as_json:
        print(
            json.dumps(
                {
                    "runs": [_run_json(r) for r in result.runs],
                    "pairs": [vars(p) for p in result.pairs],
                    "failures": result.failures,
                    "strict_failures": result.strict_failures,
                },
                indent=2,
            )
        )
    elif result.runs:
        _c.out.print(rich_table(scores_frame(result.runs), title="sweep"))
    for label, why in result.failures.items():
        _c.err.print(f"[bold red]model {label} failed:[/] {why}", highlight=False)
    for label, why in result.strict_failures.items():
        _c.err.print(f"[red]--strict: {label}: {why}[/]", highlight=False)
    if result.failures:
        raise typer.Exit(1)
    if result.strict_failures:
        raise typer.Exit(EXIT_STRICT)


@app.command()
def score(
    tasks: TasksOpt,
    predictions: Annotated[Path, typer.Option(help="jsonl (or json) with a doc id and a response per line.")],
    id_key: Annotated[str | None, typer.Option(help="Field holding the doc id (default: doc_id, question_id or id).")] = None,
    response_key: Annotated[
        str | None, typer.Option(help="Field holding the response (default: response, prediction, answer, text...).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name to record for these predictions.")] = None,
    metric_args: Annotated[str, typer.Option(help="Run-time metric settings, k=v,... (e.g. inception_weights=PATH,clip_model=DIR).")] = "",
    limit: LimitOpt = None,
    output: OutputOpt = Path("results"),
    strict: bool = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Score an existing predictions file (through the `replay` model): text responses, or media
    files generated elsewhere (rows with an image / audio / video path)."""
    args = {"predictions": str(predictions)}
    for key, value in (("id_key", id_key), ("response_key", response_key), ("name", name)):
        if value:
            args[key] = value
    try:
        margs = parse_metric_args(metric_args)
    except ModelArgsError as exc:
        _fail(str(exc))
    cfg = _config(
        model="replay",
        tasks=tasks.split(","),
        model_args=args,
        metric_args=margs,
        limit=_limit(limit),
        output=output,
        use_cache=False,
        strict=strict,
        progress=False,
    )
    _execute(cfg, as_json)


@app.command("tasks")
def list_tasks(
    sizes: Annotated[bool, typer.Option(help="Load local and fixture datasets to count documents.")] = True,
    include_path: Annotated[list[Path] | None, typer.Option(help="Extra folder of task YAML files.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the task catalogue with modalities, metrics and size."""
    from mmeval.tasks.loading import load_docs

    try:
        index = task_index(include_path or ())
    except TaskSpecError as exc:
        _fail(str(exc))
    rows: list[dict[str, Any]] = []
    for name, spec in sorted(index.items()):
        size: int | None = None
        if sizes and not spec.dataset.is_hub:
            try:
                size = load_docs(spec).total
            except (DatasetError, RuntimeError) as exc:
                _c.err.print(f"[yellow]{name}: cannot count documents: {exc}[/]")
        rows.append(
            {
                "task": name,
                "version": spec.version,
                "groups": list(spec.group),
                "inputs": sorted(spec.input_modalities),
                "output": spec.output_modality,
                "metrics": [m.name for m in spec.metrics],
                "size": size,
                "description": spec.description,
            }
        )
    if as_json:
        print(json.dumps({"tasks": rows, "groups": groups(index)}, indent=2))
        return
    table = Table(title="mmeval tasks")
    for col in ("task", "groups", "inputs -> output", "metrics", "size", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["task"],
            ", ".join(r["groups"]),
            f"{'+'.join(r['inputs'])} -> {r['output']}",
            ", ".join(r["metrics"]),
            "-" if r["size"] is None else str(r["size"]),
            r["description"],
        )
    _c.out.print(table)


@app.command("models")
def list_models(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List model adapters with their capabilities and architecture cards."""
    rows = []
    for name, entry in sorted(model_registry().items()):
        try:
            cls = entry.load()
        except ImportError as exc:
            rows.append({"model": name, "source": entry.source, "error": f"cannot import: {exc}"})
            continue
        caps = cls.capabilities
        rows.append(
            {
                "model": name,
                "source": entry.source,
                "inputs": sorted(caps.input_modalities),
                "outputs": sorted(caps.output_modalities),
                "batchable": caps.batchable,
                "card": cls.card.to_dict(),
                "doc": (cls.__doc__ or "").strip().split("\n")[0],
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="mmeval models")
    for col in ("model", "inputs -> outputs", "batch", "encoder / projector / LLM", "about"):
        table.add_column(col)
    for r in rows:
        if "error" in r:
            table.add_row(r["model"], "-", "-", "-", r["error"])
            continue
        card = r["card"]
        parts = " / ".join(str(card.get(k) or "-") for k in ("modality_encoder", "input_projector", "llm_backbone"))
        table.add_row(
            r["model"], f"{'+'.join(r['inputs'])} -> {'+'.join(r['outputs'])}", "yes" if r["batchable"] else "no", parts, r["doc"]
        )
    _c.out.print(table)


@app.command()
def show(
    runs: Annotated[list[Path], typer.Argument(help="Run directories, or a results folder holding several.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="table | markdown | csv | json")] = "table",
    leaderboard: Annotated[Path | None, typer.Option("--leaderboard", "-l", help="Leaderboard YAML: print its table instead.")] = None,
) -> None:
    """Print the scores of one or more runs (or their leaderboard table, with --leaderboard)."""
    try:
        loaded = [r for p in runs for r in find_runs(p)]
    except RunStoreError as exc:
        _fail(str(exc))
    if not loaded:
        _fail(f"no runs found under {', '.join(map(str, runs))}")
    if leaderboard is not None:
        from mmeval.report.leaderboard_cli import print_leaderboard

        try:
            print_leaderboard(loaded, load_leaderboard(leaderboard), fmt)
        except USER_ERRORS as exc:
            _fail(str(exc))
        return
    frame = scores_frame(loaded)
    if fmt == "table":
        _c.out.print(rich_table(frame))
    elif fmt == "markdown":
        print(markdown_table(frame))
    elif fmt == "csv":
        print(frame.to_csv(index=False), end="")
    elif fmt == "json":
        print(frame.to_json(orient="records", indent=2))
    else:
        _fail(f"unknown format {fmt!r}; use table, markdown, csv or json")


@app.command()
def demo(
    output: OutputOpt = Path("results/demo"),
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    limit: LimitOpt = None,
    site: Annotated[Path | None, typer.Option(help="Build the demo leaderboard site into this folder.")] = None,
) -> None:
    """Run tiny-llava and the baselines on the offline `demo` group, the tiny generators on the
    generation demo tasks, and print the table."""
    from mmeval.demo import DEMO_PLAN, demo_metric_args

    finished = []
    for model, model_args, tasks in DEMO_PLAN:
        _c.err.print(f"[bold]== {model} on {','.join(tasks)}[/]")
        cfg = _config(
            f"mmeval demo ({model})",
            model=model,
            tasks=tasks,
            model_args=model_args,
            metric_args=demo_metric_args(tasks),
            batch_size=batch_size,
            limit=_limit(limit),
            output=output,
            progress=sys.stderr.isatty(),
        )
        try:
            finished.append(evaluate(cfg))
        except USER_ERRORS as exc:
            _fail(str(exc))
    _c.out.print(rich_table(scores_frame(finished), title="mmeval demo"))
    _c.out.print(f"Runs written under {output}/. Inspect one with `mmeval show {output}`.")
    if site is not None:
        from mmeval.report.site import build_site

        board = load_leaderboard(Path(__file__).resolve().parent.parent / "leaderboards" / "demo.yaml")
        build_site(finished, board, site)
        _c.out.print(f"Leaderboard site: {site / 'index.html'} (open it in a browser; it works from file://)")


data_app = typer.Typer(no_args_is_help=True, help="Prefetch and inspect task datasets.")
app.add_typer(data_app, name="data")
register_leaderboard(app)  # mmeval leaderboard build | show


@data_app.command("pull")
def data_pull(
    tasks: Annotated[list[str], typer.Argument(help="Task names, groups or YAML paths (comma lists work too).")],
    include_path: Annotated[list[Path] | None, typer.Option(help="Extra folder of task YAML files.")] = None,
) -> None:
    """Download hub datasets into the Hugging Face cache and build fixtures, for offline runs."""
    from mmeval.tasks.loading import load_docs
    from mmeval.tasks.registry import resolve_tasks

    try:
        names = [name for item in tasks for name in item.split(",")]
        resolved = resolve_tasks(names, include_path or ())
        for rt in resolved:
            data = load_docs(rt.spec)
            _c.out.print(f"{rt.spec.task}: {data.total} documents, fingerprint {data.fingerprint}")
    except USER_ERRORS as exc:
        _fail(str(exc))


@data_app.command("prepare")
def data_prepare(
    source: Annotated[str, typer.Argument(help="coco-t2i, audiocaps or msrvtt.")],
    annotations: Annotated[Path, typer.Option(help="The official annotation file (COCO captions json, AudioCaps csv, MSR-VTT csv/json).")],
    media: Annotated[Path, typer.Option(help="Folder holding the downloaded images / clips / videos.")],
    out: Annotated[Path, typer.Option(help="Folder to write data.jsonl + prepare.json into (see the task's dataset.path).")],
    n: Annotated[int | None, typer.Option(help="How many documents (coco-t2i: required, e.g. 30000 or 5000).")] = None,
) -> None:
    """Build a generation task's local data.jsonl from an official release (deterministic)."""
    from mmeval.tasks.prepare import PREPARERS

    if source not in PREPARERS:
        _fail(f"unknown source {source!r}; one of {', '.join(PREPARERS)}")
    if source == "coco-t2i" and not n:
        _fail("coco-t2i needs --n (30000 for COCO-30K, 5000 for COCO-5K)")
    try:
        info = PREPARERS[source](annotations.expanduser(), media.expanduser(), out.expanduser(), n)  # type: ignore[operator]
    except USER_ERRORS as exc:
        _fail(str(exc))
    _c.out.print(f"{out}/data.jsonl: {info['n']} documents ({info.get('missing', 0)} with missing media left out)")


from mmeval.report.gate import register as register_gate  # noqa: E402  (the command lives with its logic)

register_gate(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
