"""The static leaderboard site: ``index.html`` plus one drill-down page per run.

Self-contained and static, so it works from ``file://`` and from any static host (GitHub Pages,
an S3 bucket, a CI artifact): no CDN, no server, no ``fetch()`` (browsers block it on file://).

- ``index.html`` carries all leaderboard data inline, as JSON in a
  ``<script type="application/json">`` block, rendered by inline vanilla JS (sorting that
  respects each column's direction, filters, CI whiskers as inline SVG, arena table and plot,
  architecture view). The page stays small because per-sample data is not in it.
- ``runs/<run-id>/index.html`` shows the run's manifest and a paginated per-sample drill-down.
  Samples are copied into ``runs/<run-id>/samples-<task>-<k>.js`` files of up to 1,000 samples
  (whole pages), each one ``MMEVAL_PAGE(task, k, "<base64 of the jsonl lines>")``, loaded on
  demand with ``<script src>`` (which file:// allows). Generated media are hard-linked (else copied) into ``runs/<run-id>/artifacts/``.

Escaping: everything from a model or a dataset is data, never markup. Jinja2 autoescapes
every template variable; inline JSON escapes ``<``, ``>``, ``&``, U+2028 and U+2029 (so no string
can close the script block); each samples file is one base64 string literal, so even a
malformed or hostile samples file cannot become code: the page's JS decodes it, parses each
line with ``JSON.parse`` and inserts text with ``textContent``, never
``innerHTML``; media paths must match the content-addressed ``artifacts/<sha[:2]>/<sha>.<ext>``
pattern before they become a ``src``.

Rebuilds are incremental: a run's pages are rewritten only when its run.json or samples files
change (a stamp file records their sizes and mtimes).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from mmeval.engine.store import RUN_FILE, samples_file_name
from mmeval.report.architecture import architecture_view
from mmeval.report.leaderboard import Leaderboard
from mmeval.report.opencompass import LeaderboardTable, build_table, format_card, model_label
from mmeval.types import RunResult

TEMPLATES = Path(__file__).with_name("templates")
PAGE_SIZE = 50  # samples per drill-down page
FILE_SAMPLES = 1000  # samples per samples-*.js file (rounded up to whole pages)
SITE_VERSION = 1  # bump when the page format changes: stamps then force a rewrite
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_JSON_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_json(obj: Any) -> Markup:
    """JSON that can sit inside any HTML ``<script>`` block: no ``</script>``, no ``<!--``."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, default=str, separators=(",", ":"))
    return Markup(_JSON_ESCAPE_RE.sub(lambda m: _JSON_ESCAPES[m.group()], text))


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters["json"] = safe_json
    env.filters["card"] = lambda v, col: format_card(col, v)
    return env


def run_dir_name(run_id: str) -> str:
    name = _UNSAFE.sub("_", run_id).lstrip(".") or "run"
    return name


def _sanitize(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None (the site's JSON must parse in a browser)."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {str(k): _sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sanitize(v) for v in value]
    return value


# --------------------------------------------------------------------------- arena


def arena_data(runs: Sequence[RunResult], board: Leaderboard, table: LeaderboardTable) -> tuple[dict[str, Any] | None, list[str]]:
    """The arena section's data (see :func:`arena_result`), JSON-ready."""
    result, notes = arena_result(runs, board, table)
    if result is None:
        return None, notes
    data = result.to_dict()
    data["benchmarks"] = list(board.arena.benchmarks)  # type: ignore[union-attr]
    return _sanitize(data), notes


def arena_result(runs: Sequence[RunResult], board: Leaderboard, table: LeaderboardTable) -> tuple[Any, list[str]]:
    """Bradley-Terry ratings for the board's arena benchmarks, or None (and why) without them.

    Battles follow the table's merge rule: for each benchmark, a model's battles come from the
    run that supplied its table score (newest wins), so table and arena see the same runs."""
    if board.arena is None:
        return None, []
    try:
        from mmeval.report import arena
    except ImportError as exc:  # the arena module is optional for the site
        return None, [f"arena section left out: {exc}"]
    by_id = {r.run_id: r for r in runs}
    counts, notes = None, []
    for label in board.arena.benchmarks:
        b = board.benchmark(label)
        chosen = [by_id[row.scores[label].run_id] for row in table.rows if label in row.scores]
        if len(chosen) < 2:
            continue
        scores = arena.paired_scores(chosen, [(b.task, b.metric, b.raw_direction == "higher")])
        notes += scores.warnings
        c = scores.counts()
        counts = c if counts is None else counts.merge(c)
    if counts is None or counts.n_battles == 0:
        return None, [*notes, "arena: no paired per-sample scores on its benchmarks (need two or more models per benchmark)"]
    try:
        result = arena.compute_arena(
            counts,
            rounds=max(2, board.arena.rounds),
            seed=board.arena.seed,
            anchor=board.arena.anchor_model,
            center=board.arena.anchor_rating,
            warnings=notes,
        )
    except arena.ArenaError as exc:
        return None, [*notes, f"arena: {exc}"]
    return result, list(result.warnings)


# --------------------------------------------------------------------------- per-run pages


def _stamp(run: RunResult, page_size: int, per_file: int) -> str:
    parts = [f"v{SITE_VERSION}", str(page_size), str(per_file)]
    for p in [run.path / RUN_FILE, *sorted((run.path / "samples").glob("*.jsonl"))]:
        try:
            st = p.stat()
        except OSError:
            continue
        parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _jsonl_lines(data: bytes) -> list[bytes] | int:
    """The file's lines, or just their count when no line is empty (the usual case: then the
    file need not be split at all; a whitespace-only line would show as an unreadable sample)."""
    if not data:
        return 0
    if b"\n\n" in data or data[:1] == b"\n":
        return [ln for ln in data.split(b"\n") if ln.strip()]
    return data.count(b"\n") + (0 if data[-1:] == b"\n" else 1)


def _write_sample_pages(run: RunResult, task: str, out: Path, per_file: int) -> tuple[int, int]:
    """samples-<task>-<k>.js files of ``per_file`` samples each; returns (files, samples).

    Each file is one call, ``MMEVAL_PAGE("<task>", k, "<base64 of the jsonl lines>")``: base64
    cannot end a string literal whatever the samples hold, and it is the cheapest safe encoding
    (the browser decodes it and parses each line with JSON.parse). Lines are not parsed here.
    Files hold many pages because creating files, not writing bytes, dominates the build
    (100 models x 30 tasks x 1,000 samples: 3,000 files rather than 60,000)."""
    src = run.path / "samples" / samples_file_name(task)
    if not src.exists():
        return 0, 0
    data = src.read_bytes()
    lines = _jsonl_lines(data)
    n = lines if isinstance(lines, int) else len(lines)
    if isinstance(lines, int) and n > per_file:
        lines = data.split(b"\n")[:n]
    stem = samples_file_name(task)[: -len(".jsonl")]
    head = b"MMEVAL_PAGE(" + json.dumps(task).encode("ascii")
    files = (n + per_file - 1) // per_file
    for k in range(files):
        chunk = data if isinstance(lines, int) else b"\n".join(lines[k * per_file : (k + 1) * per_file])
        body = b'%s,%d,"%s");\n' % (head, k + 1, base64.b64encode(chunk))
        (out / f"samples-{stem}-{k + 1}.js").write_bytes(body)
    return files, n


def _link_artifacts(run: RunResult, out: Path) -> int:
    src = run.path / "artifacts"
    if not src.is_dir():
        return 0
    n = 0
    for f in src.rglob("*"):
        if not f.is_file() or f.is_symlink():
            continue
        dest = out / "artifacts" / f.relative_to(src)
        if dest.exists() and dest.stat().st_size == f.stat().st_size:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, dest)
        except OSError:
            shutil.copyfile(f, dest)
        n += 1
    return n


def _run_summary(run: RunResult) -> dict[str, Any]:
    model = run.manifest.get("model", {})
    return {
        "run_id": run.run_id,
        "dir": run_dir_name(run.run_id),
        "model": model_label(run),
        "status": run.manifest.get("status"),
        "finished": run.manifest.get("finished") or run.manifest.get("started"),
        "tasks": sorted(run.tasks),
        "card": model.get("card") or {},
    }


def write_run_page(env: Environment, run: RunResult, out: Path, page_size: int = PAGE_SIZE, file_samples: int = FILE_SAMPLES) -> bool:
    """Write runs/<id>/; returns False when the stamp says nothing changed."""
    per_file = page_size * max(1, -(-file_samples // page_size))  # whole pages per file: a page never spans two
    stamp = _stamp(run, page_size, per_file)
    stamp_file = out / ".stamp"
    if stamp_file.exists() and stamp_file.read_text() == stamp and (out / "index.html").exists():
        return False
    if out.exists():
        for old in out.glob("samples-*.js"):
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    tasks = []
    for task in sorted(run.tasks):
        files, n = _write_sample_pages(run, task, out, per_file)
        pages = (n + page_size - 1) // page_size
        tasks.append({"name": task, "file": samples_file_name(task)[: -len(".jsonl")], "files": files, "pages": pages, "n": n})
    _link_artifacts(run, out)
    manifest = _sanitize({k: v for k, v in run.manifest.items() if k != "results"})
    data = {"run_id": run.run_id, "page_size": page_size, "per_file": per_file, "tasks": tasks}
    html = env.get_template("run.html.j2").render(
        run=_run_summary(run),
        manifest=manifest,
        manifest_text=json.dumps(manifest, indent=2, default=str),
        args=json.dumps((run.manifest.get("model") or {}).get("args") or {}, default=str),
        results={name: res for name, res in sorted(run.tasks.items())},
        data=data,
    )
    _write(out / "index.html", html)
    _write(stamp_file, stamp)
    return True


# --------------------------------------------------------------------------- the site


def build_site(
    runs: Iterable[RunResult],
    board: Leaderboard,
    out: str | Path,
    page_size: int = PAGE_SIZE,
    file_samples: int = FILE_SAMPLES,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write ``out/index.html`` and ``out/runs/<id>/``; returns a summary (paths, counts, warnings)."""
    runs = list(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = _env()
    table = build_table(runs, board)
    view = architecture_view(table)
    arena, arena_notes = arena_data(runs, board, table)
    seen: dict[str, RunResult] = {}
    for run in runs:
        name = run_dir_name(run.run_id)
        if name in seen:
            raise ValueError(f"runs {seen[name].path} and {run.path} both map to the site folder runs/{name}/; give them distinct run ids")
        seen[name] = run
    env.get_template("run.html.j2")  # loaded once, before the threads share it

    def page(item: tuple[str, RunResult]) -> bool:
        changed = write_run_page(env, item[1], out / "runs" / item[0], page_size, file_samples)
        if log:
            log(f"runs/{item[0]}/" + ("" if changed else " (unchanged)"))
        return changed

    # Threads: the work is file I/O and C-level encoding, which overlap (1.5x on 2 cores).
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        written = sum(pool.map(page, seen.items()))
    data = {
        "leaderboard": _sanitize(table.to_dict()),
        "architecture": _sanitize(view.to_dict()),
        "arena": arena,
        "runs": [_run_summary(r) for r in sorted(runs, key=lambda r: r.run_id)],
        "warnings": [*table.warnings, *arena_notes],
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    html = env.get_template("index.html.j2").render(board=board, data=data)
    _write(out / "index.html", html)
    return {
        "index": str(out / "index.html"),
        "index_bytes": len(html.encode("utf-8")),
        "runs": len(runs),
        "runs_written": written,
        "models": len(table.rows),
        "warnings": data["warnings"],
    }
