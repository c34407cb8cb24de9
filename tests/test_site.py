"""The static site, built from real runs made here: files and escaping (no browser), the
``mmeval leaderboard`` commands, and the pages in a real browser (Playwright's Python client
driving Debian's chromium; skipped with the reason when either is missing).

Runs: constant and random-choice on demo_mcq / demo_vqa, a replay of hostile predictions (a
``<script>`` and an ``<img onerror>`` as responses, and as the replayed model's name), and
synth-audio on demo_t2a so audio players appear."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mmeval.demo import demo_metric_args
from mmeval.engine.runner import RunConfig, evaluate
from mmeval.report.leaderboard import load_leaderboard
from mmeval.report.leaderboard_cli import register
from mmeval.report.opencompass import build_table
from mmeval.report.site import build_site, run_dir_name, safe_json
from mmeval.report.store import find_runs, iter_samples

ROOT = Path(__file__).resolve().parents[1]
DEMO_BOARD = ROOT / "leaderboards" / "demo.yaml"
XSS = ["<script>window.__pwned=1</script>", '<img src=x onerror="window.__pwned=2">', "</script><script>window.__pwned=4</script>\u2028"]
HOSTILE_NAME = '<img src=x onerror="window.__pwned=3">'
PAGE_SIZE = 5
FILE_SAMPLES = 10  # 12 samples: two sample files, three pages (the third from the second file)
CHROMIUM = os.environ.get("MMEVAL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site-runs")

    def run(model: str, tasks: list[str], args: dict[str, str], limit: int, **kw: Any) -> Any:
        return evaluate(
            RunConfig(model=model, tasks=tasks, model_args=args, limit=limit, output=out, progress=False, log=lambda _m: None, **kw)
        )

    const = run("constant", ["demo_vqa", "demo_mcq"], {"answer": "2"}, 12)
    ids = [r["doc_id"] for r in iter_samples(const, "demo_vqa")]
    pred = out / "predictions.jsonl"
    pred.write_text("".join(json.dumps({"doc_id": d, "response": XSS[i % len(XSS)]}) + "\n" for i, d in enumerate(ids)))
    rc = run("random-choice", ["demo_mcq"], {"seed": "0"}, 12)
    run("replay", ["demo_vqa"], {"predictions": str(pred), "name": HOSTILE_NAME}, 12)
    run("synth-audio", ["demo_t2a"], {}, 6, metric_args=demo_metric_args(["demo_t2a"]))
    # Recorded as a closed 7B model, so the weights and size filters have something to hide.
    doc = json.loads((rc.path / "run.json").read_text())
    doc["model"]["card"].update(open_weights=False, params=7_000_000_000)
    (rc.path / "run.json").write_text(json.dumps(doc))
    return out


@pytest.fixture(scope="module")
def site(runs_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    summary = build_site(find_runs(runs_root), load_leaderboard(DEMO_BOARD), out, page_size=PAGE_SIZE, file_samples=FILE_SAMPLES)
    assert summary["runs"] == 4 and summary["runs_written"] == 4
    return out


def run_of(runs_root: Path, model: str) -> Any:
    return next(r for r in find_runs(runs_root) if r.manifest["model"]["name"] == model)


def inline_data(html: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    assert m, "no inline data block"
    return json.loads(m.group(1))


# --------------------------------------------------------------------------- files and escaping


def test_safe_json_cannot_close_its_script_block() -> None:
    hostile = {"a": "</script><!-- <script>alert(1)</script> & \u2028\u2029", "<key>": [1.5, None]}
    text = str(safe_json(hostile))
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == hostile


def test_index_embeds_every_string_as_data(site: Path, runs_root: Path) -> None:
    html = (site / "index.html").read_text()
    assert html.count("<script") == 2  # the data block and the page's own script, nothing injected
    assert "window.__pwned" not in html.replace("\\u003c", "")[: html.find('id="data"')]
    assert HOSTILE_NAME not in html and "<img" not in html
    data = inline_data(html)
    labels = [m["model"] for m in data["leaderboard"]["models"]]
    assert any(HOSTILE_NAME in lab for lab in labels)  # intact after the JSON round trip
    table = build_table(find_runs(runs_root), load_leaderboard(DEMO_BOARD))
    assert labels == [r.label for r in table.rows]
    synth = next(m for m in data["leaderboard"]["models"] if m["model"] == "synth-audio")
    assert set(synth["scores"]) == {"Demo T2A FAD", "Demo T2A CLAP"}  # demo.yaml names the real metric keys
    assert data["arena"] and {m["model"] for m in data["arena"]["models"]} >= {"constant (answer=2)", "random-choice (seed=0)"}
    # one run per model here, so the arena module's own path over all runs must give the same ratings
    from mmeval.report.arena import arena_from_runs

    sel = [("demo_vqa", "vqa_accuracy", True), ("demo_mcq", "choice_accuracy", True), ("demo_audioqa", "exact_match", True)]
    ref = arena_from_runs(find_runs(runs_root), sel, rounds=200, seed=0).table()
    got = {m["model"]: m["rating"] for m in data["arena"]["models"]}
    assert got == pytest.approx(dict(zip(ref["model"], ref["rating"], strict=True)), abs=1e-6)


def test_sample_pages_are_string_literals_holding_the_jsonl(site: Path, runs_root: Path) -> None:
    replay = run_of(runs_root, "replay")
    records = list(iter_samples(replay, "demo_vqa"))
    folder = site / "runs" / run_dir_name(replay.run_id)
    files = sorted(folder.glob("samples-demo_vqa-*.js"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    assert len(files) == math.ceil(len(records) / FILE_SAMPLES) == 2
    got = []
    for k, f in enumerate(files, start=1):
        text = f.read_text()
        m = re.fullmatch(r'MMEVAL_PAGE\("demo_vqa",(\d+),"([A-Za-z0-9+/=]*)"\);\n', text)  # base64 only: nothing can escape
        assert m and int(m.group(1)) == k, text[:200]
        got += [json.loads(line) for line in base64.b64decode(m.group(2)).decode("utf-8").split("\n")]
    assert [r["response"] for r in got] == [r["response"] for r in records] == [XSS[i % len(XSS)] for i in range(len(records))]
    page = (folder / "index.html").read_text()
    assert HOSTILE_NAME not in page and "&lt;img src=x onerror=" in page  # autoescaped by jinja2


def test_generated_media_are_copied_into_the_site(site: Path, runs_root: Path) -> None:
    synth = run_of(runs_root, "synth-audio")
    arts = [a for r in iter_samples(synth, "demo_t2a") for a in r["artifacts"]]
    assert len(arts) == 6 and all(a["modality"] == "audio" for a in arts)
    for a in arts:
        copy = site / "runs" / run_dir_name(synth.run_id) / a["path"]
        assert copy.read_bytes() == (synth.path / a["path"]).read_bytes()


def test_rebuild_rewrites_only_changed_runs(site: Path, runs_root: Path) -> None:
    board = load_leaderboard(DEMO_BOARD)
    assert build_site(find_runs(runs_root), board, site, page_size=PAGE_SIZE, file_samples=FILE_SAMPLES)["runs_written"] == 0
    target = run_of(runs_root, "constant").path / "run.json"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert build_site(find_runs(runs_root), board, site, page_size=PAGE_SIZE, file_samples=FILE_SAMPLES)["runs_written"] == 1


def test_cli_show_and_build(runs_root: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    cli = CliRunner()
    res = cli.invoke(app, ["leaderboard", "show", str(runs_root), "--config", str(DEMO_BOARD), "--format", "json", "--groups", "reasoning"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["selected"] == ["Demo MCQ"]
    assert {m["model"] for m in doc["models"]} == {"constant (answer=2)", "random-choice (seed=0)"}  # the models with demo_mcq
    res = cli.invoke(app, ["leaderboard", "show", str(runs_root), "--config", str(DEMO_BOARD), "--format", "csv"])
    assert res.exit_code == 0 and res.stdout.splitlines()[0].startswith("Rank,Model,Params")
    # the arena in the terminal's exports equals the one the site embeds
    res = cli.invoke(app, ["leaderboard", "show", str(runs_root), "--config", str(DEMO_BOARD), "--format", "json", "--arena"])
    assert res.exit_code == 0, res.output
    from mmeval.report.site import arena_data

    runs = find_runs(runs_root)
    board = load_leaderboard(DEMO_BOARD)
    expected, _ = arena_data(runs, board, build_table(runs, board))
    assert expected is not None
    got = json.loads(res.stdout)["arena"]
    assert len(got["models"]) >= 2
    assert [r["model"] for r in got["models"]] == [r["model"] for r in expected["models"]]
    assert [r["rating"] for r in got["models"]] == pytest.approx([r["rating"] for r in expected["models"]])
    res = cli.invoke(app, ["leaderboard", "build", str(runs_root), "--config", str(DEMO_BOARD), "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s" / "index.html").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbenchmarks: [{task: a, metric: m, direction: sideways}]\n")
    res = cli.invoke(app, ["leaderboard", "show", str(runs_root), "--config", str(bad)])
    assert res.exit_code == 2 and "benchmarks[0].direction" in res.output


# --------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright==1.65.2)")
    if not CHROMIUM:
        pytest.skip("no chromium binary (run scripts/install_browser.sh, or set MMEVAL_CHROMIUM)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    pg = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    pg.close()
    assert not errors, errors


def open_index(page: Any, site: Path) -> None:
    page.goto((site / "index.html").as_uri())
    page.wait_for_selector("#leaderboard tr.model-row")


def column(page: Any, key: str) -> list[str]:
    idx = page.eval_on_selector_all("#leaderboard thead th", f"ths => ths.findIndex(th => th.dataset.key === {json.dumps(key)})")
    assert idx >= 0, key
    return page.eval_on_selector_all(f"#leaderboard tbody tr td:nth-child({idx + 1})", "tds => tds.map(td => td.textContent)")


def numbers(cells: list[str]) -> list[float | None]:
    out: list[float | None] = []
    for c in cells:
        m = re.match(r"-?\d+(\.\d+)?", c)
        out.append(float(m.group()) if m else None)
    return out


def test_clicking_a_header_sorts_by_it_respecting_direction(page: Any, site: Path) -> None:
    open_index(page, site)
    page.click('th[data-key="b:Demo VQA"]')
    vals = numbers(column(page, "b:Demo VQA"))
    present = [v for v in vals if v is not None]
    assert present == sorted(present, reverse=True) and vals[: len(present)] == present  # best first, missing last
    page.click('th[data-key="b:Demo VQA"]')
    vals = numbers(column(page, "b:Demo VQA"))
    assert [v for v in vals if v is not None] == sorted(present) and vals[len(present) :] == [None] * (len(vals) - len(present))
    page.click('th[data-key="model"]')
    names = page.eval_on_selector_all("#leaderboard tbody td.model .label", "xs => xs.map(x => x.textContent)")
    assert names == sorted(names)


def test_filters_hide_rows(page: Any, site: Path) -> None:
    open_index(page, site)
    rows = lambda: page.eval_on_selector_all("#leaderboard tbody tr", "trs => trs.map(tr => tr.dataset.model)")  # noqa: E731
    everyone = rows()
    assert len(everyone) == 4
    page.select_option("#f-open", "closed")
    assert rows() == ["random-choice (seed=0)"]
    page.select_option("#f-open", "all")
    page.select_option("#f-size", "3-10B")
    assert rows() == ["random-choice (seed=0)"]
    page.select_option("#f-size", "all")
    page.fill("#f-query", "synth")
    assert rows() == ["synth-audio"]
    page.fill("#f-query", "")
    for g in ("perception", "reasoning", "caption", "audio"):
        page.uncheck(f'#f-groups input[value="{g}"]')
    assert rows() == ["synth-audio"]  # only it has a generation benchmark
    assert not any(k.startswith("b:Demo VQA") for k in page.eval_on_selector_all("#leaderboard th", "ths => ths.map(t => t.dataset.key)"))


def test_recomputed_ranks_match_python(page: Any, site: Path, runs_root: Path) -> None:
    board = load_leaderboard(DEMO_BOARD)
    open_index(page, site)
    for g in ("caption", "audio", "generation"):
        page.uncheck(f'#f-groups input[value="{g}"]')
    table = build_table(find_runs(runs_root), board, [b.label for b in board.benchmarks if b.group in ("perception", "reasoning")])
    shown = page.eval_on_selector_all(
        "#leaderboard tbody tr",
        "trs => trs.map(tr => [tr.dataset.model, tr.querySelector('.rank').textContent, tr.querySelector('.avg').textContent])",
    )
    want = [[r.label, "-" if r.rank is None else str(r.rank), "-" if r.avg is None else f"{r.avg:.2f}"] for r in table.rows]
    assert shown == want


def test_injected_markup_is_text_and_never_runs(page: Any, site: Path, runs_root: Path) -> None:
    open_index(page, site)
    page.wait_for_timeout(200)  # an injected onerror would have fired by now
    assert page.evaluate("window.__pwned") is None
    labels = page.eval_on_selector_all("#leaderboard td.model .label", "xs => xs.map(x => x.textContent)")
    assert any(HOSTILE_NAME in lab for lab in labels)
    replay = run_of(runs_root, "replay")
    page.goto((site / "runs" / run_dir_name(replay.run_id) / "index.html").as_uri())
    page.select_option("#task", label=f"demo_vqa ({len(list(iter_samples(replay, 'demo_vqa')))})")
    page.wait_for_selector("#samples tr.sample")
    page.wait_for_timeout(200)
    assert page.evaluate("window.__pwned") is None
    shown = page.eval_on_selector_all("#samples td.response", "tds => tds.map(td => td.textContent)")
    assert shown == [XSS[i % len(XSS)] for i in range(PAGE_SIZE)]
    assert page.eval_on_selector_all("#samples img", "xs => xs.length") == 0


def test_drilldown_paginates(page: Any, site: Path, runs_root: Path) -> None:
    const = run_of(runs_root, "constant")
    records = list(iter_samples(const, "demo_vqa"))
    page.goto((site / "runs" / run_dir_name(const.run_id) / "index.html").as_uri())
    page.select_option("#task", label=f"demo_vqa ({len(records)})")
    pages = math.ceil(len(records) / PAGE_SIZE)
    for k in range(1, pages + 1):
        page.wait_for_function(f"document.getElementById('page-info').textContent.startsWith('page {k} of {pages}')")
        page.wait_for_selector("#samples tr.sample")
        ids = page.eval_on_selector_all("#samples tr.sample td:nth-child(2)", "tds => tds.map(td => td.textContent)")
        assert ids == [r["doc_id"] for r in records[(k - 1) * PAGE_SIZE : k * PAGE_SIZE]]
        if k < pages:
            page.click("#next")
    assert page.is_disabled("#next") and not page.is_disabled("#prev")


def test_media_players_and_screenshot(page: Any, site: Path, runs_root: Path, tmp_path: Path) -> None:
    synth = run_of(runs_root, "synth-audio")
    page.goto((site / "runs" / run_dir_name(synth.run_id) / "index.html").as_uri())
    page.wait_for_selector("#samples audio")
    srcs = page.eval_on_selector_all("#samples audio", "xs => xs.map(a => a.src)")
    assert len(srcs) == PAGE_SIZE
    for src in srcs:
        assert src.startswith("file://") and Path(src.removeprefix("file://")).is_file()
    open_index(page, site)
    assert (
        page.eval_on_selector_all("#arena-plot circle", "xs => xs.length")
        == page.eval_on_selector_all("#arena tbody tr", "xs => xs.length")
        > 0
    )
    shot = tmp_path / "index.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
