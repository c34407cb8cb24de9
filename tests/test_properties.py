"""Property tests for every answer normaliser and answer extractor in mmeval.metrics.

For arbitrary text (any Unicode, control characters, long degenerate responses):

- nothing raises;
- a normaliser is idempotent, ``norm(norm(x)) == norm(x)``; where official parity makes one
  not idempotent, the test names the counterexample and asserts the weaker property it has;
- an extractor (a registered parser) is deterministic and independent of earlier calls: the
  same response gives the same ``(parsed, stage)`` on a fresh parser and on one that has
  parsed other responses before, and the parsed value lies in the task's answer space.

Also: no parser is super-linear on the long degenerate responses models emit ("Answer:" and
thousands of spaces, a token repeated to ``max_new_tokens``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmeval.metrics import audio, mmmu, text, vqa, yesno
from mmeval.metrics.base import PARSERS, ParseContext, Parser, get_parser

# Words and characters the rules treat specially, so generated text reaches every branch.
TOKENS = [
    *"abcABCDZ0123456789 .,;:!?()[]{}'\"-/\\_=+<>@`*#$%&|~^",
    *"\t\n\r\x0b\x0c\x1c\x85\u2028\u00a0\u3000",  # whitespace str.split() knows, and control characters
    *"İßǅ٣²½\u0307\u2019\u201c\u201d\uff08",  # case mapping, non-ASCII digits, combining marks, curly quotes
    "yes", "No", "not", "true", "the", "a", "an", "none", "one", "twenty", "dont", "'s", "somebody'd",
    "answer", "Answer: ", "the answer is ", "option ", "choice", "so ", "is ", "therefore ", "=",
    "3.5", "1,000", "1,,2", "-1e5", "inf", "nan", "[", "]", "['a', 'b']", "(B)", "B.", "**C**", "dark red",
]  # fmt: skip
short_text = st.one_of(st.text(), st.lists(st.sampled_from(TOKENS), max_size=30).map("".join))
# A prefix, then one token repeated: what a model stuck in a loop emits up to max_new_tokens.
long_text = st.builds(lambda pre, unit, n: pre + unit * n, st.sampled_from(TOKENS), st.sampled_from(TOKENS), st.integers(200, 1500))
any_text = st.one_of(short_text, short_text, long_text)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(a: Any, b: Any) -> bool:
    """Equality in which NaN equals NaN (MMMU's open parser turns "nan" into float('nan'))."""
    return repr(a) == repr(b)


# --------------------------------------------------------------------------- normalisers

# mmeval's own normalisers and the parity ones that are idempotent all the same.
IDEMPOTENT: dict[str, Callable[[str], Any]] = {
    "text.normalize_answer": text.normalize_answer,
    "vqa.process_digit_article": vqa.process_digit_article,
    "vqa._clean": vqa._clean,
    "yesno.normalize_yes_no": yesno.normalize_yes_no,
    "mmmu.normalize_gold": mmmu.normalize_gold,
    "audio._norm_option": audio._norm_option,
}


@pytest.mark.parametrize("name", sorted(IDEMPOTENT))
def test_normalisers_are_total_and_idempotent(name: str) -> None:
    norm = IDEMPOTENT[name]

    @FAST
    @given(any_text)
    def check(x: str) -> None:
        once = norm(x)
        assert same(norm(once), once), (x, once)

    check()


@FAST
@given(any_text)
def test_normalize_answer_output_shape(x: str) -> None:
    out = text.normalize_answer(x)
    assert out == " ".join(out.split())  # single spaces, no ends
    assert not {"a", "an", "the"} & set(out.split())


@FAST
@given(any_text)
def test_normalize_yes_no_range(x: str) -> None:
    assert yesno.normalize_yes_no(x) in ("yes", "no", None)


@FAST
@given(any_text)
def test_normalize_gold_is_a_string_or_a_list_of_strings(x: str) -> None:
    gold = mmmu.normalize_gold(x)
    assert isinstance(gold, str) or (isinstance(gold, list) and all(isinstance(g, str) for g in gold))


# The official VQA processing (vqaEval.py) removes at most 32 periods per call (the ``count``
# quirk, see vqa._PERIOD_COUNT), so it is idempotent only on text with at most 32 periods.
# Counterexample: 33 periods -> "." -> "". Kept for parity; the weaker property: idempotent up
# to 32 periods, and a fixed point within periods // 32 + 2 applications.
VQA_NORMALISERS: dict[str, Callable[[str], str]] = {
    "official": vqa.normalize_vqa_answer,
    "evalai": vqa.evalai_answer,
    "process_punctuation": vqa.process_punctuation,
}


def test_vqa_period_cap_counterexample() -> None:
    for norm in VQA_NORMALISERS.values():
        once = norm("." * 33)
        assert once == "." and norm(once) == ""


@pytest.mark.parametrize("name", sorted(VQA_NORMALISERS))
def test_vqa_normalisers_idempotent_up_to_the_period_cap(name: str) -> None:
    norm = VQA_NORMALISERS[name]

    @FAST
    @given(st.one_of(any_text, st.builds(lambda a, n: a + "." * n, short_text, st.integers(0, 100))))
    def check(x: str) -> None:
        once = norm(x)
        if x.count(".") <= 32:
            assert norm(once) == once, (x, once)
        value = x
        for _ in range(x.count(".") // 32 + 2):
            value = norm(value)
        assert norm(value) == value, x

    check()


# MMMU's multiple-choice strip (upstream's chain of ``str.strip(c)`` calls, one character after
# another) is not idempotent: "!,!," -> "," (the "," goes before the "!", the inner "," is
# then exposed). Kept for parity; the weaker property: it returns a slice of its input, only
# strip characters are removed, and repeating it reaches a fixed point.
def test_mmmu_strip_counterexample() -> None:
    assert mmmu._strip_like_upstream("!,!,") == ","
    assert mmmu._strip_like_upstream(",") == ""


@FAST
@given(any_text)
def test_mmmu_strip_is_a_slice_reaching_a_fixed_point(x: str) -> None:
    out = mmmu._strip_like_upstream(x)
    start = x.find(out)
    assert start >= 0
    assert set(x[:start] + x[start + len(out) :]) <= set(mmmu._MC_STRIP_CHARS)
    value = x
    for _ in range(len(x) + 1):
        nxt = mmmu._strip_like_upstream(value)
        if nxt == value:
            break
        value = nxt
    assert mmmu._strip_like_upstream(value) == value


@SLOW
@given(any_text)
def test_mmmu_normalize_open(x: str) -> None:
    out = mmmu.normalize_open(x)
    assert out and same(out, mmmu.normalize_open(x))
    for item in out:
        if isinstance(item, float):
            assert math.isnan(item) or math.isinf(item) or round(item, 2) == item
        else:  # a lowercased string; normalising it again gives nothing new
            assert item == item.lower()
            assert all(any(same(again, o) for o in out) for again in mmmu.normalize_open(item))


@FAST
@given(any_text)
def test_mmau_tokens_retokenise_to_themselves(x: str) -> None:
    tokens = audio.mmau_tokens(x)
    assert audio.mmau_tokens(" ".join(sorted(tokens))) == tokens


# --------------------------------------------------------------------------- extractors

MCQ = ParseContext("q1", choices=("A", "B", "C", "D"), options=("red", "dark red", "blue", "green"))
NUMERIC = ParseContext("q2", choices=tuple(str(i) for i in range(1, 13)))
OPEN = ParseContext("q3", doc={"question_type": "open"})

# (parser name, kwargs, context, the answer space: None = any value)
YES_NO = {"yes", "no"}
EXTRACTORS: list[tuple[str, dict[str, Any], ParseContext, set[Any] | None]] = [
    ("text", {}, MCQ, None),
    ("text", {"lines": "all"}, MCQ, None),
    ("choice", {}, MCQ, set(MCQ.choices or ())),
    ("choice", {}, NUMERIC, set(NUMERIC.choices or ())),
    ("yes_no", {}, MCQ, YES_NO),
    ("yes_no", {"mode": "pope_official"}, MCQ, YES_NO),
    ("yes_no", {"mode": "mme_official"}, MCQ, YES_NO),
    ("airbench", {}, MCQ, set(MCQ.choices or ())),
    ("airbench", {"rule": "official"}, MCQ, set(audio.AIRBENCH_LABELS)),
    ("mmmu", {}, MCQ, set(MCQ.choices or ())),
    ("mmmu", {"random_fallback": False}, MCQ, set(MCQ.choices or ())),
    ("mmmu", {}, OPEN, None),
    ("media", {"modality": "image"}, MCQ, None),
]
EXTRACTOR_IDS = [f"{name}{'-' + '-'.join(map(str, kw.values())) if kw else ''}-{ctx.doc_id}" for name, kw, ctx, _ in EXTRACTORS]


def test_every_registered_parser_is_covered() -> None:
    assert {name for name, *_ in EXTRACTORS} == set(PARSERS)


def _parse(parser: Parser, x: str, ctx: ParseContext) -> tuple[Any, str]:
    parsed, stage = parser.parse(x, ctx)
    assert isinstance(stage, str) and stage
    return parsed, stage


@pytest.mark.parametrize(("name", "kwargs", "ctx", "space"), EXTRACTORS, ids=EXTRACTOR_IDS)
def test_extractors_are_total_deterministic_and_independent_of_history(
    name: str, kwargs: dict[str, Any], ctx: ParseContext, space: set[Any] | None
) -> None:
    @SLOW
    @given(any_text, st.lists(short_text, max_size=4))
    def check(x: str, before: list[str]) -> None:
        fresh = _parse(get_parser(name, **kwargs), x, ctx)
        used = get_parser(name, **kwargs)
        for other in before:  # earlier calls, on other responses and other documents
            _parse(used, other, ctx)
            _parse(used, other, ParseContext("other", choices=ctx.choices, options=ctx.options, doc=ctx.doc))
        assert same(_parse(used, x, ctx), fresh)
        assert same(_parse(used, x, ctx), fresh)
        parsed, stage = fresh
        if parsed is None:
            assert stage in ("unparsed", "no_media")
        elif space is not None:
            assert parsed in space, (x, fresh)

    check()


@SLOW
@given(any_text)
def test_mmmu_open_candidates(x: str) -> None:
    parsed, stage = get_parser("mmmu").parse(x, OPEN)
    assert (parsed is None) == (stage == "unparsed")
    if parsed is not None:
        assert stage == ("open_number" if any(isinstance(p, float) for p in parsed) else "open_string")
        assert all(isinstance(p, (str, float)) for p in parsed)


# --------------------------------------------------------------------------- long responses

# A degenerate response of N characters. Before the fix in choice.py the first pattern family
# took O(N^3) on "Answer:" + N spaces (about 15 s at N = 1500, minutes at N = 3000).
N = 1500
DEGENERATE = [
    "Answer:" + " " * N + "Z",
    "the answer is" + "\n" * N + "(Z",
    "answer option" + "\t" * N + "x",
    "Answer = " + " (" * N,
    "[" + " " * N + "x",
    "yes " * (N // 4) + "no",
    "so " * (N // 3),
    "(A" * (N // 2),
    "1," * (N // 2),
    ". " * N,
]
# Left out: MMMU's open-question number extraction (upstream's regexes) is quadratic on a long
# run of digits ("1" * 20_000 takes about 30 s); parity code, noted, not changed.


@pytest.mark.parametrize(("name", "kwargs", "ctx", "space"), EXTRACTORS, ids=EXTRACTOR_IDS)
def test_extractors_are_fast_on_degenerate_responses(name: str, kwargs: dict[str, Any], ctx: ParseContext, space: Any) -> None:
    parser = get_parser(name, **kwargs)
    for response in DEGENERATE:
        start = time.perf_counter()
        parser.parse(response, ctx)
        assert time.perf_counter() - start < 1.0, (name, kwargs, response[:30])
