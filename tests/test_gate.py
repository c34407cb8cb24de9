"""The CI regression gate on real runs: planted regressions fail, re-runs pass, mismatches are refused.

Runs are built with the runner (``replay`` of prediction files on a 2,000-document local task,
so a 5-point drop is far above the minimum detectable effect; baselines on the demo fixtures);
expected differences, p-values and standard errors are recomputed here from the predictions or
the samples, independently of the gate.
"""

from __future__ import annotations

import json
import math
import random
import shlex
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import typer
from scipy.stats import chi2
from typer.testing import CliRunner

from mmeval.engine.runner import RunConfig, evaluate
from mmeval.report.gate import GateError, load_one_run, parse_rule, register, run_gate
from mmeval.report.store import iter_samples, load_run
from mmeval.types import RunResult
from tests.conftest import write_task

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "results" / "baselines" / "demo" / "constant"
N = 2000
GATE_YAML = """\
task: gate_qa
version: 1
dataset: {path: data.jsonl}
doc_id: id
prompt:
  - text: "{{ question }}"
target: answer
generation: {max_new_tokens: 8}
metrics: [exact_match]
"""


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _main() -> None:  # a group, so `gate` stays a subcommand as in mmeval.cli
        pass

    register(app)
    return app


def gate_cli(*args: str | Path):
    return CliRunner().invoke(_app(), ["gate", *map(str, args)], catch_exceptions=False)


def run(tasks: list[str], out: Path, run_id: str, model: str = "replay", **model_args: str) -> RunResult:
    cfg = RunConfig(
        model=model, tasks=tasks, model_args=model_args, output=out, run_id=run_id, use_cache=False, progress=False, log=lambda _m: None
    )
    return evaluate(cfg)


def replay(task: Path, out: Path, run_id: str, answers: dict[str, str]) -> RunResult:
    preds = out / f"{run_id}.preds.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    preds.write_text("".join(json.dumps({"doc_id": d, "response": a}) + "\n" for d, a in answers.items()))
    return run([str(task)], out, run_id, predictions=str(preds))


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 2,000-document task; baseline right on 70%; candidates derived from its answers."""
    root = tmp_path_factory.mktemp("gate")
    rows = [{"id": f"q{i}", "question": f"question {i}?", "answer": f"a{i % 7}"} for i in range(N)]
    task = write_task(root / "task", rows, GATE_YAML)
    rng = random.Random(7)
    truth = {r["id"]: r["answer"] for r in rows}
    right = set(rng.sample(sorted(truth), int(0.7 * N)))
    base = {d: (t if d in right else "wrong") for d, t in truth.items()}
    degraded = set(rng.sample(sorted(right), N // 20))  # 5% of all samples: right -> wrong
    churn_down = set(rng.sample(sorted(right), N // 100))
    churn_up = set(rng.sample(sorted(set(truth) - right), N // 100))
    answers = {
        "base": base,
        "regressed": {d: ("wrong" if d in degraded else a) for d, a in base.items()},
        "churn": {d: ("wrong" if d in churn_down else truth[d] if d in churn_up else a) for d, a in base.items()},
        "missing": {d: a for i, (d, a) in enumerate(base.items()) if i % 50},  # 2% of docs get no prediction: failures
    }
    out = root / "runs"
    runs = {name: replay(task, out, name, a) for name, a in answers.items()}
    runs["rerun"] = replay(task, out, "rerun", base)
    return {"root": root, "task": task, "rows": rows, "truth": truth, "answers": answers, "runs": runs}


def correct(answers: dict[str, str], truth: dict[str, str]) -> np.ndarray:
    return np.array([float(answers.get(d) == t) for d, t in truth.items()])


def test_planted_regression_fails_with_mcnemar_and_an_identical_rerun_passes(qa: dict, tmp_path: Path) -> None:
    runs, truth, answers = qa["runs"], qa["truth"], qa["answers"]
    md, xml = tmp_path / "out" / "gate.md", tmp_path / "out" / "gate.xml"
    res = gate_cli("--baseline", runs["base"].path, "--candidate", runs["regressed"].path, "--markdown", md, "--junit", xml)
    assert res.exit_code == 1, res.output
    report = run_gate(runs["base"], runs["regressed"])
    (em,) = [c for c in report.checks if c.metric == "exact_match"]
    b, c = correct(answers["base"], truth), correct(answers["regressed"], truth)
    assert em.diff == pytest.approx(c.mean() - b.mean()) and em.diff == pytest.approx(-0.05)
    assert em.test == "mcnemar" and em.ci_method == "paired_bootstrap" and em.n == N
    only_b, only_c = int(np.sum((b == 1) & (c == 0))), int(np.sum((b == 0) & (c == 1)))
    assert em.p_value == pytest.approx(chi2.sf((abs(only_b - only_c) - 1) ** 2 / (only_b + only_c), df=1))
    assert em.mde is not None and em.mde < 0.05  # the planted drop is detectable with this n
    assert not em.passed and em.ci_low < em.allowed == pytest.approx(-0.01)
    assert [c.metric for c in report.checks if not c.passed] == ["exact_match"]
    # Outputs: the Markdown table has a row per check, the JUnit XML one testcase per check.
    text = md.read_text()
    assert "regression" in text and "| gate_qa | exact_match | 2000 | 70.00 | 65.00 | -5.00 [" in text
    suite = ET.parse(xml).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == str(len(report.checks)) and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert len(cases) == len(report.checks) == sum(line.startswith("| gate_qa |") for line in text.splitlines())
    assert [c.get("name") for c in cases if c.find("failure") is not None] == ["gate_qa.exact_match >= -1.0"]
    # The same predictions run again: identical scores, the gate passes.
    res = gate_cli("--baseline", runs["base"].path, "--candidate", runs["rerun"].path, "--junit", xml)
    assert res.exit_code == 0, res.output
    assert ET.parse(xml).getroot().find("testsuite").get("failures") == "0"  # type: ignore[union-attr]
    same = run_gate(runs["base"], runs["rerun"])
    assert all(c.passed for c in same.checks) and same.checks[0].diff == 0 and same.checks[0].ci_low == 0


def test_units_and_a_balanced_churn(qa: dict) -> None:
    """2% of samples change in both directions: the paired CI is narrow enough to pass -1 point."""
    runs, truth, answers = qa["runs"], qa["truth"], qa["answers"]
    d = correct(answers["churn"], truth) - correct(answers["base"], truth)
    rules = ["gate_qa.exact_match >= -1.0", "gate_qa.exact_match >= -0.5", "gate_qa.exact_match >= -0.005 raw"]
    rules += ["gate_qa.exact_match >= -0.5pp", "gate_qa.exact_match >= -1%", "gate_qa.exact_match <= 0.5"]
    report = run_gate(runs["base"], runs["churn"], rules)
    one, half, raw, pp, rel, up = report.checks[:6]
    assert one.diff == pytest.approx(d.mean()) and one.ci_low < 0 < one.ci_high
    normal_half = 1.96 * d.std(ddof=1) / math.sqrt(N)  # independent check of the bootstrap's width
    assert one.diff - one.ci_low == pytest.approx(normal_half, abs=0.001)
    assert one.passed and not half.passed  # the CI's lower bound lies between -1 and -0.5 points
    assert half.allowed == raw.allowed == pp.allowed == pytest.approx(-0.005) and not raw.passed and not pp.passed
    assert rel.allowed == pytest.approx(-0.01 * correct(answers["base"], truth).mean())
    assert rel.passed == (rel.ci_low >= rel.allowed)
    assert up.op == "<=" and up.passed == (up.ci_high <= 0.005)
    assert raw.scale == 1.0 and one.scale == 100.0


def test_task_version_or_content_mismatch_is_refused_unless_allowed(qa: dict, tmp_path: Path) -> None:
    runs, rows = qa["runs"], qa["rows"]
    for name, yaml in (
        ("v2", GATE_YAML.replace("version: 1", "version: 2")),
        ("edited", GATE_YAML.replace('"{{ question }}"', '"Q: {{ question }}"')),
    ):
        task = write_task(tmp_path / name, rows, yaml)
        other = replay(task, tmp_path / "runs", name, qa["answers"]["base"])
        res = gate_cli("--baseline", runs["base"].path, "--candidate", other.path)
        assert res.exit_code == 2
        assert ("version differs" if name == "v2" else "content_hash differs") in res.output and "--allow-mismatch" in res.output
        res = gate_cli("--baseline", runs["base"].path, "--candidate", other.path, "--allow-mismatch")
        assert res.exit_code == 0, res.output
        assert "compared despite mismatch" in res.output
    assert "prompt hash" in res.output  # the edited prompt changed every document's prompt hash


def test_disjoint_documents_and_bad_run_folders_are_refused(qa: dict, tmp_path: Path) -> None:
    rows = [{**r, "id": "x" + r["id"]} for r in qa["rows"][:50]]
    task = write_task(tmp_path / "other", rows, GATE_YAML)
    other = replay(task, tmp_path / "runs", "other", {r["id"]: r["answer"] for r in rows})
    with pytest.raises(GateError, match="share no document id"):
        run_gate(qa["runs"]["base"], other)
    # A results folder holding exactly one run is accepted; with several, the user must pick.
    assert load_one_run(tmp_path / "runs" / "other", "candidate").run_id == "other"
    one = tmp_path / "one"
    (one / "only").mkdir(parents=True)
    for f in ("run.json", "samples"):
        (one / "only" / f).symlink_to(other.path / f)
    assert load_one_run(one, "candidate").run_id == "other"
    res = gate_cli("--baseline", qa["root"] / "runs", "--candidate", other.path)
    assert res.exit_code == 2 and "expected one run, found 5" in res.output
    assert gate_cli("--baseline", tmp_path / "nowhere", "--candidate", other.path).exit_code == 2
    unfinished = tmp_path / "unfinished"
    shutil.copytree(other.path, unfinished)
    doc = json.loads((unfinished / "run.json").read_text())
    (unfinished / "run.json").write_text(json.dumps({**doc, "status": "running"}))
    with pytest.raises(GateError, match="status is 'running', not 'complete'"):
        load_one_run(unfinished, "candidate")


def test_failure_rate_gate(qa: dict) -> None:
    runs = qa["runs"]
    report = run_gate(runs["base"], runs["missing"])
    em, fail, _ = report.checks
    assert em.passed and em.n == N - N // 50 and em.diff == 0  # failures are not scored as wrong answers
    assert not fail.passed and fail.candidate == pytest.approx(0.02) and fail.baseline == 0
    assert gate_cli("--baseline", runs["base"].path, "--candidate", runs["missing"].path).exit_code == 1
    args = ("--baseline", runs["base"].path, "--candidate", runs["missing"].path, "--max-failure-rate-increase", "2.5")
    assert gate_cli(*args).exit_code == 0


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("gate_qa.exact_match > -1", "operator '>' is not supported"),
        ("gate_qa.exact_match >= lots", "'lots' is not a number"),
        ("gate_qa.exact_match >= -1 points", "unknown unit 'points'; use pp"),
        ("gate_qa.exact_match >= nan", "'nan' is not a number"),
        ("gate_qa.exact_match >= 1e999", "finite"),
        ("gate_qa.exact_match >=", "'' is not a number"),
        ("exact_match >= -1", "names no task of both runs; tasks: gate_qa"),
        ("nosuch.exact_match >= -1", "names no task"),
        ("gate_qa.accuracy >= -1", "task gate_qa has no metric 'accuracy'; it has exact_match"),
        ("gate_qa.exact_match", "expected '<task>.<metric> >= <allowed change>"),
    ],
)
def test_rule_errors_are_specific(qa: dict, rule: str, message: str) -> None:
    with pytest.raises(GateError, match="rule") as info:
        run_gate(qa["runs"]["base"], qa["runs"]["rerun"], [rule])
    assert message in str(info.value)
    res = gate_cli("--baseline", qa["runs"]["base"].path, "--candidate", qa["runs"]["rerun"].path, "--rule", rule)
    assert res.exit_code == 2 and "error:" in res.output


def test_rule_parsing() -> None:
    r = parse_rule(" vqav2.val.vqa_accuracy>=-1.5 ", ["vqav2", "vqav2.val"])  # the longest task name wins
    assert (r.task, r.metric, r.op, r.value, r.unit) == ("vqav2.val", "vqa_accuracy", ">=", -1.5, "pp")
    assert r.threshold(0.4) == pytest.approx(-0.015)
    assert parse_rule("t.fid <= 2 raw", ["t"]).threshold(30.0) == 2.0
    assert parse_rule("t.fid <= 5%", ["t"]).threshold(30.0) == pytest.approx(1.5)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunResult]:
    out = tmp_path_factory.mktemp("gate-demo")
    tasks = ["demo_vqa", "demo_mcq", "demo_caption"]
    return {
        "two": run(tasks, out, "two", "constant", answer="2"),
        "yes": run(tasks, out, "yes", "constant", answer="yes"),
        "caption": run(["demo_caption"], out, "caption", "constant", answer="a red circle and a blue square on a white background"),
        "caption2": run(["demo_caption"], out, "caption2", "constant", answer="a simple drawing of a shape on white"),
        "random": run(["demo_mcq"], out, "random", "random-choice"),
    }


def test_clustered_paired_comparison(demo: dict[str, RunResult]) -> None:
    report = run_gate(demo["two"], demo["yes"], ["demo_vqa.vqa_accuracy >= -1.0"])
    vqa = report.checks[0]
    b = {s["doc_id"]: s for s in iter_samples(demo["two"], "demo_vqa")}
    c = {s["doc_id"]: s for s in iter_samples(demo["yes"], "demo_vqa")}
    d = np.array([c[k]["scores"]["vqa_accuracy"] - b[k]["scores"]["vqa_accuracy"] for k in b])
    clusters = np.array([b[k]["cluster"] for k in b])
    sums = np.array([np.sum(d[clusters == g] - d.mean()) for g in np.unique(clusters)])
    g = sums.size
    cr1 = math.sqrt(g / (g - 1) * np.sum(sums**2) / d.size**2)  # CR1 clustered SE, written out
    assert vqa.ci_method == "clustered" and g == 24 and vqa.n == 96
    assert vqa.diff == pytest.approx(d.mean()) and vqa.ci_low == pytest.approx(d.mean() - 1.959964 * cr1, rel=1e-5)
    assert vqa.passed == (vqa.ci_low >= -0.01)
    assert "the CI is too wide" in vqa.detail  # 96 questions cannot resolve 1 point
    assert {c.task for c in report.checks} == {"demo_vqa"}  # rules restrict the gated tasks


def test_corpus_metrics_are_reported_unpaired_and_gated_only_when_named(demo: dict[str, RunResult]) -> None:
    report = run_gate(demo["two"], demo["caption"])
    assert {c.metric for c in report.checks if c.task == "demo_caption"} == {"cider", "rouge_l", "failure_rate", "extraction_rate"}
    assert {b.name for t, b, _ in report.corpus if t == "demo_caption" and b} == {"bleu_1", "bleu_2", "bleu_3", "bleu_4"}
    report = run_gate(demo["caption"], demo["caption2"], ["demo_caption.bleu_4 >= -1.0", "demo_caption.bleu_1 >= 5"])
    bleu4, bleu1 = report.checks[:2]
    base = json.loads((demo["caption"].path / "run.json").read_text())["results"]["demo_caption"]["metrics"]
    cand = json.loads((demo["caption2"].path / "run.json").read_text())["results"]["demo_caption"]["metrics"]
    assert min(base["bleu_4"]["ci_low"], cand["bleu_4"]["ci_low"]) > 0.01  # real intervals, not ~0
    assert bleu4.kind == "unpaired" and bleu4.ci_low == pytest.approx(cand["bleu_4"]["ci_low"] - base["bleu_4"]["ci_high"], rel=1e-9)
    assert bleu4.ci_high == pytest.approx(cand["bleu_4"]["ci_high"] - base["bleu_4"]["ci_low"], rel=1e-9)
    assert bleu4.diff == pytest.approx(cand["bleu_4"]["value"] - base["bleu_4"]["value"], rel=1e-9)
    assert bleu4.passed == (bleu4.ci_low >= -0.01)
    assert bleu1.passed == (cand["bleu_1"]["ci_low"] - base["bleu_1"]["ci_high"] >= 0.05)
    assert "bleu_4" not in {m.name for _, m, _ in report.corpus if m}
    assert "Corpus-level metrics" in report.to_markdown()


def test_extraction_rate_gate(demo: dict[str, RunResult]) -> None:
    report = run_gate(demo["random"], demo["two"], ["demo_mcq.choice_accuracy >= -100"])
    ext = next(c for c in report.checks if c.metric == "extraction_rate")
    base, cand = demo["random"].tasks["demo_mcq"].extraction_rate, demo["two"].tasks["demo_mcq"].extraction_rate
    assert (base, cand) == (1.0, 0.0) and ext.diff == cand - base and not ext.passed
    assert report.checks[0].passed and report.exit_code == 1  # the accuracy rule alone would have passed
    assert run_gate(demo["random"], demo["two"], ["demo_mcq.choice_accuracy >= -100"], max_extraction_drop=100).passed


def test_committed_baseline_loads_and_a_fresh_run_of_its_command_passes(tmp_path: Path) -> None:
    baseline = load_run(BASELINE)
    assert baseline.complete and set(baseline.tasks) == {"demo_vqa", "demo_mcq"}
    argv = shlex.split(baseline.manifest["command"])
    assert argv[:2] == ["mmeval", "run"] and baseline.manifest["model"] == {**baseline.manifest["model"], "name": "constant"}
    fresh = run(sorted(baseline.tasks), tmp_path, "fresh", "constant", **baseline.manifest["model"]["args"])
    res = gate_cli("--baseline", BASELINE, "--candidate", fresh.path, "--markdown", tmp_path / "gate.md")
    assert res.exit_code == 0, res.output  # a failure here: task, fixture or metric drift since the baseline was recorded
    assert "pass" in (tmp_path / "gate.md").read_text()
    assert sum(1 for _ in iter_samples(baseline, "demo_vqa")) == baseline.tasks["demo_vqa"].n
