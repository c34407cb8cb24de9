"""The CI regression gate: is a candidate run worse than a baseline run, beyond what the data allows?

    mmeval gate --baseline results/baselines/demo/constant --candidate results/pr-123 \\
        --rule "demo_vqa.vqa_accuracy >= -1.0" --markdown gate.md --junit gate.xml

Design, and why:

- Comparisons are *paired*: both runs answered the same documents, so each document's score
  difference cancels the document's difficulty and the interval of the mean difference is far
  narrower than two independent intervals (``mmeval.metrics.stats.paired_compare``: paired
  bootstrap, clustered SE when the task has ``cluster_by``, McNemar's p-value for 0/1 scores).
- A rule ``task.metric >= X`` is a non-inferiority test: it fails when the 95% CI's lower
  bound of (candidate - baseline) is below X, i.e. when the data cannot rule out a drop larger
  than allowed. ``<=`` mirrors it for lower-is-better metrics (fails when the upper bound is
  above X). So an underpowered comparison fails rather than passing silently; the MDE column
  tells how small a change this many samples can detect.
- Units are explicit and never depend on the data: a bare number (or ``pp``) is in points,
  100 x the stored value (accuracy 0.731 is 73.1 points; CIDEr 1.17 is 117 points, as papers
  report them); ``raw`` is the stored unit (FID, or CLIPScore already stored x100); ``%`` is
  relative to the baseline's value.
- Corpus-level metrics (BLEU, FID, WER...) have no per-sample scores to pair: they are listed
  with their own CIs and gated only when a rule names them, then conservatively: the
  difference's interval runs from (candidate low - baseline high) to (candidate high - baseline low).
- Failures and answer extraction are gated on their point rates (engineering signals, not
  sampling noise): a new crash or a parser regression must not hide inside a metric.
- Bad input (mismatched task versions or content, disjoint documents, unknown rule targets)
  is refused with exit code 2, so a broken comparison never reads as a pass.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape

from mmeval.metrics.stats import paired_compare
from mmeval.report.store import RunStoreError, find_runs, iter_samples
from mmeval.types import MetricValue, RunResult

DEFAULT_ALLOWED_DROP = -1.0  # points: default rule for every per-sample metric of every common task
DEFAULT_MAX_FAILURE_RATE_INCREASE = 1.0  # points of failure rate (n_errors / n)
DEFAULT_MAX_EXTRACTION_DROP = 2.0  # points of extraction rate
EXIT_PASS, EXIT_REGRESSION, EXIT_BAD_INPUT = 0, 1, 2
_EPS = 1e-12  # float noise: an all-zero difference must pass a zero allowance
Unit = Literal["pp", "raw", "%"]
_RULE = re.compile(r"^\s*(?P<target>[^\s<>=!]+)\s*(?P<op>>=|<=|==|=|>|<|!=)\s*(?P<rhs>.*?)\s*$")
_NUMBER = re.compile(r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>[^\d\s.].*)?$")
_SYNTAX = "expected '<task>.<metric> >= <allowed change>[pp|raw|%]', e.g. 'demo_vqa.vqa_accuracy >= -1.0'"


class GateError(ValueError):
    """Bad input: the gate cannot give a verdict (exit code 2)."""


@dataclass(frozen=True)
class Rule:
    task: str
    metric: str
    op: Literal[">=", "<="]
    value: float
    unit: Unit
    text: str

    def threshold(self, baseline: float) -> float:
        """The allowed change in the metric's stored units."""
        if self.unit == "pp":
            return self.value / 100.0
        if self.unit == "%":
            return self.value / 100.0 * abs(baseline)
        return self.value

    @property
    def scale(self) -> float:
        return 100.0 if self.unit == "pp" else 1.0


def parse_rule(text: str, tasks: Sequence[str]) -> Rule:
    """``"demo_vqa.vqa_accuracy >= -1.0"`` -> Rule; ``tasks`` resolves dots inside task names."""
    m = _RULE.match(text)
    if not m:
        raise GateError(f"rule {text!r}: {_SYNTAX}")
    op = m["op"]
    if op not in (">=", "<="):
        raise GateError(f"rule {text!r}: operator {op!r} is not supported; use '>=' (allowed drop) or '<=' (allowed rise)")
    num = _NUMBER.match(m["rhs"])
    if not num:
        raise GateError(f"rule {text!r}: {m['rhs']!r} is not a number; {_SYNTAX}")
    unit = num["unit"] or "pp"
    if unit not in ("pp", "raw", "%"):
        raise GateError(f"rule {text!r}: unknown unit {unit!r}; use pp (points: 100 x the value; the default), raw or %")
    value = float(num["num"])
    if not math.isfinite(value):
        raise GateError(f"rule {text!r}: the allowed change must be a finite number")
    target = m["target"]
    owners = [t for t in tasks if target.startswith(t + ".") and len(target) > len(t) + 1]
    if not owners:
        raise GateError(f"rule {text!r}: {target!r} names no task of both runs; tasks: {', '.join(sorted(tasks)) or 'none'}")
    task = max(owners, key=len)
    return Rule(task, target[len(task) + 1 :], op, value, unit, text.strip())  # type: ignore[arg-type]


@dataclass
class Check:
    """One gated comparison: one JUnit testcase and one row of the Markdown table."""

    name: str
    task: str
    metric: str
    kind: Literal["paired", "unpaired", "failure_rate", "extraction_rate"]
    passed: bool
    allowed: float  # raw units, as a bound on the difference
    op: str = ">="
    scale: float = 100.0  # display multiplier (points)
    baseline: float | None = None
    candidate: float | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    p_value: float | None = None
    mde: float | None = None
    test: str = ""
    ci_method: str = ""
    detail: str = ""


@dataclass
class GateReport:
    baseline: RunResult
    candidate: RunResult
    checks: list[Check] = field(default_factory=list)
    corpus: list[tuple[str, MetricValue | None, MetricValue | None]] = field(default_factory=list)  # (task, base, cand): not gated
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.passed else EXIT_REGRESSION

    def to_markdown(self) -> str:
        return render_markdown(self)

    def to_junit(self) -> str:
        return render_junit(self)


def load_one_run(path: str | Path, role: str) -> RunResult:
    """A run directory, or a results folder holding exactly one run."""
    p = Path(path)
    if not p.exists():
        raise GateError(f"--{role} {p}: no such directory")
    try:
        runs = find_runs(p)
    except RunStoreError as exc:
        raise GateError(f"--{role}: {exc}") from exc
    if len(runs) != 1:
        found = ", ".join(r.run_id for r in runs) or "none"
        raise GateError(f"--{role} {p}: expected one run, found {len(runs)} ({found}); pass the run directory itself")
    if not runs[0].complete:
        raise GateError(f"--{role} {runs[0].path}: run status is {runs[0].manifest.get('status')!r}, not 'complete'; finish it first")
    return runs[0]


def _samples(run: RunResult, task: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    try:
        for s in iter_samples(run, task):
            doc = str(s["doc_id"])
            if doc in out:
                raise GateError(f"{run.path}/samples: task {task}: doc id {doc!r} appears twice; the samples file is corrupt")
            out[doc] = s
    except RunStoreError as exc:
        raise GateError(str(exc)) from exc
    return out


def _check_compatible(base: RunResult, cand: RunResult, tasks: Sequence[str], allow: bool, warnings: list[str]) -> None:
    problems = []
    for task in tasks:
        b, c = base.manifest.get("tasks", {}).get(task, {}), cand.manifest.get("tasks", {}).get(task, {})
        for key in ("version", "content_hash"):
            if b.get(key) is None or c.get(key) is None:
                warnings.append(f"{task}: {key} not recorded in both runs; cannot check that they ran the same task")
            elif b[key] != c[key]:
                problems.append(f"{task}: task {key} differs (baseline {b[key]}, candidate {c[key]})")
        for key, what in (("dataset", "dataset fingerprint"), ("prompt_variant", "prompt variant")):
            bv, cv = b.get(key), c.get(key)
            if key == "dataset":
                bv, cv = (bv or {}).get("fingerprint"), (cv or {}).get("fingerprint")
            if bv != cv:
                warnings.append(f"{task}: {what} differs (baseline {bv}, candidate {cv})")
    if problems and not allow:
        raise GateError(
            "the runs evaluated different task definitions, so their scores are not comparable:\n  "
            + "\n  ".join(problems)
            + "\nRe-run the baseline with the current tasks, or pass --allow-mismatch to compare anyway."
        )
    warnings.extend(f"compared despite mismatch (--allow-mismatch): {p}" for p in problems)


def _paired(rule: Rule, base: dict[str, dict[str, Any]], cand: dict[str, dict[str, Any]], clustered: bool, seed: int) -> Check:
    docs = [d for d in base if d in cand and rule.metric in base[d].get("scores", {}) and rule.metric in cand[d].get("scores", {})]
    check = Check(rule.text, rule.task, rule.metric, "paired", False, math.nan, rule.op, rule.scale)
    if not docs:
        check.detail = "no document has this metric in both runs (failed samples or metric errors in the candidate?)"
        return check
    clusters = [base[d].get("cluster") for d in docs] if clustered else None
    cmp = paired_compare(
        [base[d]["scores"][rule.metric] for d in docs], [cand[d]["scores"][rule.metric] for d in docs], clusters, seed=seed
    )
    check.allowed = rule.threshold(cmp.baseline)
    check.baseline, check.candidate, check.diff, check.n = cmp.baseline, cmp.candidate, cmp.diff, cmp.n
    check.ci_low, check.ci_high, check.p_value, check.mde = cmp.ci_low, cmp.ci_high, cmp.p_value, cmp.mde
    check.test, check.ci_method = cmp.test, cmp.ci_method
    if cmp.discordant is not None:
        check.detail = f"discordant pairs: {cmp.discordant[0]} baseline-only right, {cmp.discordant[1]} candidate-only right"
    _decide(check)
    return check


def _interval(m: MetricValue) -> tuple[float, float, bool]:
    if m.ci_low is not None and m.ci_high is not None:
        return m.ci_low, m.ci_high, True
    if m.stderr is not None:
        return m.value - 1.96 * m.stderr, m.value + 1.96 * m.stderr, True
    return m.value, m.value, False


def _unpaired(rule: Rule, base: MetricValue | None, cand: MetricValue | None) -> Check:
    check = Check(rule.text, rule.task, rule.metric, "unpaired", False, math.nan, rule.op, rule.scale, test="unpaired CIs")
    if base is None or cand is None or not (math.isfinite(base.value) and math.isfinite(cand.value)):
        check.detail = "the candidate has no value for this metric" if base is not None else "the baseline has no value"
        return check
    (bl, bh, bci), (cl, ch, cci) = _interval(base), _interval(cand)
    check.allowed = rule.threshold(base.value)
    check.baseline, check.candidate, check.diff, check.n = base.value, cand.value, cand.value - base.value, cand.n
    check.ci_low, check.ci_high, check.ci_method = cl - bh, ch - bl, "conservative (candidate CI - baseline CI)"
    if not (bci and cci):
        check.detail = "a run has no CI for this metric: the bound uses its point value"
    _decide(check)
    return check


def _decide(check: Check) -> None:
    """Pass when the CI's bound on the allowance side clears the allowance (the point estimate if no CI)."""
    assert check.diff is not None
    low = check.ci_low if check.ci_low is not None else check.diff
    high = check.ci_high if check.ci_high is not None else check.diff
    if check.ci_low is None:
        _note(check, "no CI (too few samples or clusters): point estimate used")
    sign = 1.0 if check.op == ">=" else -1.0
    bound = low if sign > 0 else high
    check.passed = sign * (bound - check.allowed) >= -_EPS
    if not check.passed and sign * (check.diff - check.allowed) >= 0:
        # The estimate is within the allowance; only the interval's width fails it.
        half = abs(check.diff - bound) * check.scale
        _note(check, f"estimate within the allowance but the CI is too wide (half-width {half:.3g}): more samples needed")


def _note(check: Check, text: str) -> None:
    check.detail = "; ".join(filter(None, [check.detail, text]))


def _rate_check(task: str, metric: str, op: str, allowed: float, base: float, cand: float, n: int, detail: str) -> Check:
    diff = cand - base
    ok = diff >= allowed - _EPS if op == ">=" else diff <= allowed + _EPS
    name = f"{task}.{metric} {op} {allowed * 100:+g}pp"
    return Check(name, task, metric, metric, ok, allowed, op, baseline=base, candidate=cand, diff=diff, n=n, detail=detail)  # type: ignore[arg-type]


def _rate_checks(task: str, base: RunResult, cand: RunResult, max_fail: float, max_extract: float) -> list[Check]:
    """Failure and extraction rates, on their point values: a new crash or parser regression is not sampling noise."""
    b, c = base.tasks[task], cand.tasks[task]
    fb, fc = (b.n_errors / b.n if b.n else 0.0), (c.n_errors / c.n if c.n else 0.0)
    detail = f"{c.n_errors} of {c.n} candidate samples failed ({b.n_errors} of {b.n} in the baseline)"
    out = [_rate_check(task, "failure_rate", "<=", max_fail / 100, fb, fc, c.n, detail)]
    if b.extraction_rate is not None and c.extraction_rate is not None:
        stages = ", ".join(f"{k}: {v}" for k, v in sorted(c.extraction_stages.items()))
        detail = f"candidate extraction stages: {stages}"
        out.append(_rate_check(task, "extraction_rate", ">=", -max_extract / 100, b.extraction_rate, c.extraction_rate, c.n, detail))
    return out


def run_gate(
    baseline: RunResult,
    candidate: RunResult,
    rules: Sequence[str] = (),
    allow_mismatch: bool = False,
    max_failure_rate_increase: float = DEFAULT_MAX_FAILURE_RATE_INCREASE,
    max_extraction_drop: float = DEFAULT_MAX_EXTRACTION_DROP,
    seed: int = 0,
) -> GateReport:
    """Compare two loaded runs; raises GateError for input that cannot be compared."""
    for name, v in (("--max-failure-rate-increase", max_failure_rate_increase), ("--max-extraction-drop", max_extraction_drop)):
        if not (math.isfinite(v) and v >= 0):
            raise GateError(f"{name} must be a number of points >= 0, got {v}")
    common = [t for t in baseline.tasks if t in candidate.tasks]
    if not common:
        raise GateError(
            f"the runs share no task: baseline {baseline.run_id} has {sorted(baseline.tasks)}, "
            f"candidate {candidate.run_id} has {sorted(candidate.tasks)}"
        )
    parsed = [parse_rule(r, common) for r in rules]
    tasks = [t for t in common if t in {r.task for r in parsed}] if parsed else common
    report = GateReport(baseline, candidate)
    _check_compatible(baseline, candidate, tasks, allow_mismatch, report.warnings)
    for task in tasks:
        base, cand = _samples(baseline, task), _samples(candidate, task)
        shared = [d for d in base if d in cand]
        if not shared:
            raise GateError(
                f"{task}: the runs share no document id (baseline e.g. {next(iter(base), '-')!r}, candidate e.g. "
                f"{next(iter(cand), '-')!r}); they evaluated different data"
            )
        if len(shared) < max(len(base), len(cand)):
            report.warnings.append(
                f"{task}: compared on the {len(shared)} documents in both runs "
                f"(baseline has {len(base) - len(shared)} more, candidate {len(cand) - len(shared)} more)"
            )
        changed = sum(1 for d in shared if base[d].get("prompt_hash") != cand[d].get("prompt_hash"))
        if changed:
            report.warnings.append(f"{task}: {changed} of {len(shared)} documents have a different prompt hash (prompt or media changed)")
        per_sample = {k for d in base.values() for k in d.get("scores", {})}
        corpus_names = [m.name for m in baseline.tasks[task].metrics if m.name not in per_sample]
        b_metrics = {m.name: m for m in baseline.tasks[task].metrics}
        c_metrics = {m.name: m for m in candidate.tasks[task].metrics}
        task_rules = [r for r in parsed if r.task == task] or [
            Rule(task, name, ">=", DEFAULT_ALLOWED_DROP, "pp", f"{task}.{name} >= {DEFAULT_ALLOWED_DROP}") for name in sorted(per_sample)
        ]
        clustered = bool(baseline.manifest.get("tasks", {}).get(task, {}).get("cluster_by"))
        for rule in task_rules:
            if rule.metric in per_sample or any(rule.metric in s.get("scores", {}) for s in cand.values()):
                report.checks.append(_paired(rule, base, cand, clustered, seed))
            elif rule.metric in b_metrics or rule.metric in c_metrics:
                report.checks.append(_unpaired(rule, b_metrics.get(rule.metric), c_metrics.get(rule.metric)))
            else:
                known = sorted(per_sample | set(b_metrics))
                raise GateError(f"rule {rule.text!r}: task {task} has no metric {rule.metric!r}; it has {', '.join(known)}")
        named = {r.metric for r in task_rules}
        report.corpus += [(task, b_metrics.get(n), c_metrics.get(n)) for n in corpus_names if n not in named]
        report.checks += _rate_checks(task, baseline, candidate, max_failure_rate_increase, max_extraction_drop)
    return report


# --------------------------------------------------------------------------- outputs


def _num(v: float | None, scale: float, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    spec = (".2f" if scale == 100 else ".4g") if not signed else ("+.2f" if scale == 100 else "+.4g")
    return format(v * scale, spec)


def _value_cell(m: MetricValue | None) -> str:
    if m is None:
        return "-"
    ci = f" [{m.ci_low:.4g}, {m.ci_high:.4g}]" if m.ci_low is not None and m.ci_high is not None else ""
    return f"{m.value:.4g}{ci}"


def _diff_cell(c: Check) -> str:
    ci = f" [{_num(c.ci_low, c.scale, True)}, {_num(c.ci_high, c.scale, True)}]" if c.ci_low is not None else ""
    return _num(c.diff, c.scale, True) + ci


def render_markdown(report: GateReport) -> str:
    verdict = "✅ **pass**" if report.passed else "❌ **regression**"
    failed = sum(not c.passed for c in report.checks)
    lines = [
        f"### mmeval gate: {verdict}",
        "",
        f"Candidate `{report.candidate.run_id}` vs baseline `{report.baseline.run_id}`: "
        f"{len(report.checks) - failed} of {len(report.checks)} checks pass. Values in points (100 x score) "
        "unless the rule says `raw` or `%`; diff = candidate - baseline with its paired 95% CI (unpaired: the conservative interval).",
        "",
        "| task | metric | n | baseline | candidate | diff [95% CI] | allowed | p | MDE | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in report.checks:
        p = "-" if c.p_value is None else f"{c.p_value:.3g}"
        mde = "-" if c.mde is None else f"{c.mde * c.scale:.2f}"
        allowed = f"{c.op} {_num(c.allowed, c.scale, True)}"
        mark = "✅ pass" if c.passed else "❌ fail"
        note = f" ({c.detail})" if c.detail and not c.passed else ""
        metric = c.metric + (" (unpaired)" if c.kind == "unpaired" else "")
        n = "-" if c.n is None else str(c.n)
        lines.append(
            f"| {c.task} | {metric} | {n} | {_num(c.baseline, c.scale)} | {_num(c.candidate, c.scale)} "
            f"| {_diff_cell(c)} | {allowed} | {p} | {mde} | {mark}{note} |"
        )
    if report.corpus:
        lines += ["", "Corpus-level metrics (no per-sample scores: unpaired, not gated unless a rule names them):", ""]
        lines += ["| task | metric | baseline [95% CI] | candidate [95% CI] |", "|---|---|---:|---:|"]
        for task, b, c in report.corpus:
            name = (b or c).name if (b or c) else "?"
            lines.append(f"| {task} | {name} | {_value_cell(b)} | {_value_cell(c)} |")
    if report.warnings:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in report.warnings]
    return "\n".join(lines) + "\n"


def render_junit(report: GateReport) -> str:
    """JUnit XML: one testcase per check; a failure element for each regression."""
    failures = sum(not c.passed for c in report.checks)
    suites = ET.Element("testsuites", name="mmeval gate", tests=str(len(report.checks)), failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name="mmeval-gate", tests=str(len(report.checks)), failures=str(failures), errors="0")
    for c in report.checks:
        case = ET.SubElement(suite, "testcase", classname=f"mmeval.gate.{c.task}", name=c.name)
        summary = (
            f"baseline {_num(c.baseline, c.scale)}, candidate {_num(c.candidate, c.scale)}, diff {_diff_cell(c)}, "
            f"allowed {c.op} {_num(c.allowed, c.scale, True)}" + (f"; {c.detail}" if c.detail else "")
        )
        if c.passed:
            ET.SubElement(case, "system-out").text = summary
        else:
            ET.SubElement(case, "failure", message=f"regression: {c.name}", type="regression").text = summary
    if report.warnings:
        ET.SubElement(suite, "system-err").text = "\n".join(report.warnings)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


# --------------------------------------------------------------------------- command line


def register(app: typer.Typer) -> None:
    """Add ``mmeval gate`` to a typer app (``mmeval.cli`` calls ``register(app)``)."""

    @app.command()
    def gate(
        baseline: Annotated[Path, typer.Option(help="Baseline run directory (or a folder holding exactly one run).")],
        candidate: Annotated[Path, typer.Option(help="Candidate run directory (or a folder holding exactly one run).")],
        rule: Annotated[
            list[str] | None,
            typer.Option(help="'task.metric >= -1.0' (points; or suffix raw, %); repeatable. Default: every per-sample metric >= -1.0."),
        ] = None,
        allow_mismatch: Annotated[
            bool, typer.Option("--allow-mismatch", help="Compare runs whose task versions or definitions differ.")
        ] = False,
        markdown: Annotated[Path | None, typer.Option(help="Write a Markdown summary (for a PR comment).")] = None,
        junit: Annotated[Path | None, typer.Option(help="Write JUnit XML (one testcase per check).")] = None,
        max_failure_rate_increase: Annotated[float, typer.Option(help="Allowed rise of the failure rate, in points.")] = (
            DEFAULT_MAX_FAILURE_RATE_INCREASE
        ),
        max_extraction_drop: Annotated[float, typer.Option(help="Allowed drop of the extraction rate, in points.")] = (
            DEFAULT_MAX_EXTRACTION_DROP
        ),
    ) -> None:
        """Paired regression check of a candidate run against a baseline: exit 0 pass, 1 regression, 2 bad input."""
        err = Console(stderr=True, width=200)
        try:
            report = run_gate(
                load_one_run(baseline, "baseline"),
                load_one_run(candidate, "candidate"),
                rule or (),
                allow_mismatch,
                max_failure_rate_increase,
                max_extraction_drop,
            )
        except GateError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        text = report.to_markdown()
        for path, content in ((markdown, text), (junit, report.to_junit() if junit else "")):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content, encoding="utf-8")
        print(text, end="")
        raise typer.Exit(report.exit_code)
