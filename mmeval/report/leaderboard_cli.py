"""``mmeval leaderboard build|show``: thin typer commands over the leaderboard modules.

Kept out of ``mmeval/cli.py`` so the leaderboard code owns its commands; ``cli.py`` adds them
with ``register(app)``. ``print_leaderboard`` is also what ``mmeval show --leaderboard`` calls.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from mmeval.report.leaderboard import Leaderboard, LeaderboardError, load_leaderboard
from mmeval.report.store import RunStoreError, find_runs
from mmeval.types import RunResult

FORMATS = ("table", "markdown", "csv", "json")
EXIT_USER = 2

leaderboard_app = typer.Typer(no_args_is_help=True, help="Leaderboard tables (OpenCompass-style, arena) and the static site.")

RunsArg = Annotated[list[Path], typer.Argument(help="Run directories, or results folders holding several.")]
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Leaderboard definition, e.g. leaderboards/opencompass.yaml.")]


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 200)


def _fail(message: str) -> NoReturn:
    _console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(EXIT_USER)


def load_inputs(runs: Sequence[Path], config: Path) -> tuple[list[RunResult], Leaderboard]:
    try:
        board = load_leaderboard(config)
        loaded = [r for p in runs for r in find_runs(p)]
    except (LeaderboardError, RunStoreError) as exc:
        _fail(str(exc))
    if not loaded:
        _fail(f"no runs found under {', '.join(map(str, runs))}")
    return loaded, board


def selected_labels(board: Leaderboard, groups: str | None) -> list[str] | None:
    if not groups:
        return None
    wanted = [g.strip() for g in groups.split(",") if g.strip()]
    unknown = [g for g in wanted if g not in board.groups]
    if unknown:
        _fail(f"{board.source}: no benchmark group {unknown}; groups here: {', '.join(board.groups)}")
    return [b.label for b in board.benchmarks if b.group in wanted]


def print_leaderboard(
    runs: Sequence[RunResult],
    board: Leaderboard,
    fmt: str = "table",
    groups: str | None = None,
    architecture: bool = False,
    arena: bool = False,
) -> None:
    """Print the board's table (and optionally the architecture view and the arena) in ``fmt``;
    warnings go to stderr."""
    from mmeval.report.architecture import architecture_view
    from mmeval.report.opencompass import build_table

    if fmt not in FORMATS:
        _fail(f"unknown format {fmt!r}; use {', '.join(FORMATS)}")
    table = build_table(runs, board, selected_labels(board, groups))
    err = _console(stderr=True)
    for w in table.warnings:
        err.print(f"[yellow]warning:[/] {w}", highlight=False)
    view = architecture_view(table) if architecture else None
    ratings = None
    if arena:
        from mmeval.report.site import arena_result

        ratings, notes = arena_result(runs, board, table)
        for w in notes:
            err.print(f"[yellow]arena:[/] {w}", highlight=False)
    if fmt == "table":
        _console().print(table.rich())
        if view:
            _console().print(view.to_markdown(), highlight=False)
        if ratings is not None:
            _console().print(ratings.to_markdown(), highlight=False)
    elif fmt == "markdown":
        print(table.to_markdown())
        if view:
            print("\n" + view.to_markdown())
        if ratings is not None:
            print("\n" + ratings.to_markdown())
    elif fmt == "csv":
        print(table.to_csv(), end="")
        if ratings is not None:
            print("\n" + str(ratings.to_csv()), end="")
    else:
        doc = table.to_dict()
        if view:
            doc["architecture"] = view.to_dict()
        if ratings is not None:
            doc["arena"] = ratings.to_dict()
        print(json.dumps(doc, indent=2, default=str))


@leaderboard_app.command("show")
def show(
    runs: RunsArg,
    config: ConfigOpt,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table | markdown | csv | json")] = "table",
    groups: Annotated[str | None, typer.Option(help="Only these benchmark groups (comma-separated); average and ranks follow.")] = None,
    architecture: Annotated[bool, typer.Option("--architecture", help="Also print scores by architecture component.")] = False,
    arena: Annotated[
        bool, typer.Option("--arena", help="Also print the arena (Bradley-Terry) ratings of the board's arena benchmarks.")
    ] = False,
) -> None:
    """Print the leaderboard table of some runs."""
    loaded, board = load_inputs(runs, config)
    print_leaderboard(loaded, board, fmt, groups, architecture, arena)


@leaderboard_app.command("build")
def build(
    runs: RunsArg,
    config: ConfigOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the static site into.")] = Path("site"),
    page_size: Annotated[int, typer.Option(min=1, help="Samples per drill-down page.")] = 50,
) -> None:
    """Build the static leaderboard site (index.html + a drill-down page per run)."""
    from mmeval.report.site import build_site

    loaded, board = load_inputs(runs, config)
    try:
        summary = build_site(loaded, board, out, page_size=page_size)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    err = _console(stderr=True)
    for w in summary["warnings"]:
        err.print(f"[yellow]warning:[/] {w}", highlight=False)
    _console().print(
        f"{summary['index']}: {summary['models']} models, {summary['runs']} runs ({summary['runs_written']} run pages written, "
        f"the others unchanged), index {summary['index_bytes'] / 1e6:.2f} MB. Open it in a browser; it needs no server."
    )


def register(app: typer.Typer) -> None:
    """Add ``mmeval leaderboard ...`` to the main app."""
    app.add_typer(leaderboard_app, name="leaderboard")
