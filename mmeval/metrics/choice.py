"""Multiple choice: a staged, deterministic answer-letter parser and choice accuracy.

Stages, tried in order, each recorded as the extraction stage:

- ``letter``: the whole response is a label, give or take whitespace, brackets, markdown
  emphasis and trailing punctuation ("B", "b.", "(B)", "**B**"); case-insensitive.
- ``pattern``: a label inside longer text, by pattern families in priority order: explicit
  statements ("the answer is B", "Answer: (B)", "option B"), then bracketed labels ("(B)",
  "[B]"), then a label followed by ".", ")" or ":" ("B. red", "B)"). The first family that
  yields exactly one distinct label wins; a family naming several labels is ambiguous and
  the next family is tried. Labels must appear in their given case here, so the article
  "a" in "the answer is a cat" is not read as option A.
- ``option_text``: the response contains exactly one option's text (case-insensitive, on
  word boundaries); an option found only inside a longer matching option ("red" inside
  "dark red") does not count against it.
- otherwise ``(None, "unparsed")``; the parser never guesses.
"""

from __future__ import annotations

import functools
import re
import string
from typing import Any

from mmeval.metrics.base import Metric, ParseContext, Parser

_WRAPPING = string.whitespace + string.punctuation.replace("_", "")


def default_labels(k: int) -> tuple[str, ...]:
    """A, B, C, ... for k options (the convention of task YAMLs that list option texts)."""
    if k > 26:
        raise ValueError(f"no default labels for {k} options (at most 26)")
    return tuple(string.ascii_uppercase[:k])


def _labels(ctx: ParseContext) -> tuple[str, ...]:
    if ctx.choices:
        return tuple(ctx.choices)
    if ctx.options:
        return default_labels(len(ctx.options))
    raise ValueError(f"{ctx.doc_id}: the choice parser needs ctx.choices or ctx.options")


@functools.lru_cache(maxsize=256)
def _pattern_families(labels: tuple[str, ...]) -> list[re.Pattern[str]]:
    # Longest labels first so "12" wins over "1"; the (?!\w) guards stop "B" matching in "Bus".
    alt = "|".join(re.escape(lab) for lab in sorted(labels, key=len, reverse=True))
    label = rf"(?P<label>{alt})"
    end = r"(?!\w)"
    return [
        # Each whitespace run has one owner (the separator's, the "option" word's, or the final
        # [\s(\[*] run): adjacent optional \s* runs made a failed match cost O(n^3) on "Answer:"
        # followed by thousands of spaces (minutes for a degenerate response).
        re.compile(
            r"(?i:\b(?:answer|choice|option)\b(?:\s+(?:is|would\s+be|should\s+be))?(?:\s*[:=\-])?"
            r"(?:\s*\b(?:option|choice)\b)?)[\s(\[*]*" + label + end
        ),
        re.compile(r"[(\[]\s*" + label + r"\s*[)\]]"),
        re.compile(r"(?<!\w)" + label + r"[.):]" + end),
    ]


def _option_spans(text: str, option: str) -> list[tuple[int, int]]:
    words = option.split()
    if not words:
        return []
    pat = re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)", re.IGNORECASE)
    return [m.span() for m in pat.finditer(text)]


def _match_option_text(text: str, labels: tuple[str, ...], options: tuple[str, ...]) -> str | None:
    spans = {i: _option_spans(text, opt) for i, opt in enumerate(options) if i < len(labels)}
    found = [i for i, s in spans.items() if s]

    def inside_longer(i: int) -> bool:
        # Every occurrence of option i lies within an occurrence of some longer found option.
        longer = [sp for j in found if len(options[j]) > len(options[i]) for sp in spans[j]]
        return all(any(a <= s and e <= b for a, b in longer) for s, e in spans[i])

    remaining = [i for i in found if not inside_longer(i)]
    distinct = {labels[i] for i in remaining}
    return labels[remaining[0]] if len(distinct) == 1 else None


class ChoiceParser(Parser):
    name = "choice"

    def parse(self, text: str, ctx: ParseContext) -> tuple[Any, str]:
        labels = _labels(ctx)
        text = text or ""

        for bare in (text.strip(), text.strip(_WRAPPING)):
            if bare in labels:
                return bare, "letter"
        by_upper = {lab.upper(): lab for lab in labels}
        if len(by_upper) == len(labels):  # case-insensitive only if that stays unambiguous
            hit = by_upper.get(text.strip(_WRAPPING).upper())
            if hit is not None:
                return hit, "letter"

        for family in _pattern_families(labels):
            found = list(dict.fromkeys(m.group("label") for m in family.finditer(text)))
            if len(found) == 1:
                return found[0], "pattern"

        if ctx.options:
            hit = _match_option_text(text, labels, tuple(ctx.options))
            if hit is not None:
                return hit, "option_text"
        return None, "unparsed"


class ChoiceAccuracy(Metric):
    """``{"choice_accuracy": 1.0}`` when the parsed label equals the target; the target is a
    label or an option index (int, mapped through ctx.choices or A, B, ...)."""

    name = "choice_accuracy"

    def score(self, parsed: Any, target: Any, ctx: ParseContext) -> dict[str, float]:
        if isinstance(target, int) and not isinstance(target, bool):
            labels = ctx.choices or default_labels(len(ctx.options) if ctx.options else 26)
            if not 0 <= target < len(labels):
                raise ValueError(f"{ctx.doc_id}: target index {target} out of range for {len(labels)} choices")
            target = labels[target]
        if parsed is None:
            return {"choice_accuracy": 0.0}
        got, want = str(parsed).strip(), str(target).strip()
        labels = ctx.choices or ()
        if len({lab.upper() for lab in labels}) == len(labels):
            # Datasets sometimes store "b" for label "B"; fold case unless labels rely on it.
            got, want = got.upper(), want.upper()
        hit = got == want
        return {"choice_accuracy": 1.0 if hit else 0.0}
