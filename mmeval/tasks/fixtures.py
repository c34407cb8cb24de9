"""Deterministic demo datasets that mmeval generates itself (no downloads).

Each fixture is a builder that writes ``data.jsonl`` (one JSON object per line, in a fixed
order) plus media files under ``images/`` or ``audio/``, referenced by paths relative to the
fixture directory. Given the generator code, the output is byte-for-byte identical on every
build: all randomness comes from seeded ``random.Random`` instances, PNGs are written by PIL
without metadata, WAVs by the ``wave`` module. Bump ``FIXTURE_VERSION[name]`` whenever a
builder's output changes, so stale caches are never reused.

Portability: ``data.jsonl`` and the decoded pixels are the same everywhere; the PNG bytes are
the same for a given Pillow build (its bundled zlib/zlib-ng decides the compressed stream),
and the WAV bytes for a given numpy and espeak-ng version (see fixtures_audio).

Scenes are drawn on a grid of cells so that shapes never overlap, and within one scene every
shape has a different colour, so "the red shape" always names exactly one shape.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

SIZE = 96  # image side in pixels
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 150, 40),
    "blue": (40, 70, 220),
    "yellow": (235, 200, 0),
    "orange": (250, 130, 0),
    "purple": (130, 40, 170),
}
SHAPES = ("circle", "square", "triangle")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


# --------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class Shape:
    kind: str  # circle | square | triangle
    color: str
    col: int  # grid cell
    row: int

    @property
    def name(self) -> str:
        return f"{self.color} {self.kind}"


def render(shapes: Sequence[Shape], grid: int, rng: random.Random) -> Image.Image:
    """Draw shapes centred (with a little jitter) in their grid cells on a white background."""
    img = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(img)
    cell = SIZE // grid
    for s in shapes:
        half = rng.randint(int(cell * 0.28), int(cell * 0.38))
        slack = cell // 2 - half - 1
        cx = s.col * cell + cell // 2 + rng.randint(-slack, slack)
        cy = s.row * cell + cell // 2 + rng.randint(-slack, slack)
        box = (cx - half, cy - half, cx + half, cy + half)
        fill = COLORS[s.color]
        if s.kind == "circle":
            draw.ellipse(box, fill=fill)
        elif s.kind == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=fill)
    return img


def save_png(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")  # PIL adds no tIME/text chunks unless asked: reproducible bytes


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def random_scene(rng: random.Random, n: int, grid: int = 2) -> list[Shape]:
    """n shapes in distinct cells with distinct colours."""
    cells = rng.sample([(c, r) for r in range(grid) for c in range(grid)], n)
    colors = rng.sample(sorted(COLORS), n)
    return [Shape(rng.choice(SHAPES), color, c, r) for (c, r), color in zip(cells, colors, strict=True)]


def join_and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


# --------------------------------------------------------------------------- demo_vqa

# Realistic human variation per canonical answer (VQA-style: ten answers per question).
ANSWER_VARIANTS: dict[str, list[str]] = {
    "yes": ["Yes", "yes.", "yep"],
    "no": ["No", "no.", "nope"],
    "circle": ["Circle", "a circle", "round", "circle."],
    "square": ["Square", "a square", "box", "rectangle"],
    "triangle": ["Triangle", "a triangle", "triangular"],
    **{c: [c.capitalize(), f"{c}.", f"dark {c}", f"bright {c}"] for c in COLORS},
    **{str(i): [w, w.capitalize(), f"{i}."] for i, w in enumerate(NUMBER_WORDS)},
}


def human_answers(rng: random.Random, answer: str, wrong: Sequence[str]) -> list[str]:
    """Ten annotator answers: mostly the canonical one, some variants, at most two wrong."""
    n_wrong = rng.choice([0, 0, 0, 0, 1, 1, 2])
    variants = ANSWER_VARIANTS.get(answer, [])
    out = [rng.choice(wrong) for _ in range(n_wrong)]
    while len(out) < 10:
        out.append(rng.choice(variants) if variants and rng.random() < 0.25 else answer)
    rng.shuffle(out)
    return out


def vqa_questions(shapes: list[Shape], rng: random.Random, idx: int) -> list[dict[str, Any]]:
    kinds = [s.kind for s in shapes]
    colors = [s.color for s in shapes]
    n = len(shapes)
    qs: list[dict[str, Any]] = []

    def add(question: str, answer: str, atype: str, qtype: str, wrong: Sequence[str]) -> None:
        qs.append({"question": question, "answer": answer, "answer_type": atype, "question_type": qtype, "wrong": list(wrong)})

    add("How many shapes are there?", str(n), "number", "how many", [str(n - 1), str(n + 1)])
    # Yes/no: alternate between asking about a shape and about a colour; half present, half absent.
    present = rng.random() < 0.5
    if idx % 2 == 0:
        pool = sorted(set(kinds)) if present else sorted(set(SHAPES) - set(kinds)) or sorted(set(kinds))
        kind = rng.choice(pool)
        yes = "yes" if kind in kinds else "no"
        add(f"Is there {article(kind)}?", yes, "yes/no", "is there a", ["no" if yes == "yes" else "yes"])
    else:
        pool = colors if present else sorted(set(COLORS) - set(colors))
        color = rng.choice(pool)
        yes = "yes" if color in colors else "no"
        add(f"Is there {article(color)} shape?", yes, "yes/no", "is there a", ["no" if yes == "yes" else "yes"])
    target = rng.choice(shapes)
    add(f"What shape is {target.color}?", target.kind, "other", "what shape is", [k for k in SHAPES if k != target.kind])
    unique = [s for s in shapes if kinds.count(s.kind) == 1]
    if unique:
        s = rng.choice(unique)
        add(f"What color is the {s.kind}?", s.color, "other", "what color is the", [c for c in COLORS if c != s.color])
    else:
        kind = rng.choice(kinds)
        k = kinds.count(kind)
        add(f"How many {kind}s are there?", str(k), "number", "how many", [str(k - 1), str(k + 1)])
    return qs


def build_vqa(out: Path) -> None:
    rng = random.Random("mmeval/demo_vqa")
    rows = []
    for i in range(24):
        image_id = f"img{i:03d}"
        shapes = random_scene(rng, 1 + i % 4)
        save_png(render(shapes, 2, rng), out / "images" / f"{image_id}.png")
        for j, q in enumerate(vqa_questions(shapes, rng, i)):
            rows.append(
                {
                    "question_id": f"{image_id}_q{j}",
                    "image_id": image_id,
                    "image": f"images/{image_id}.png",
                    "question": q["question"],
                    "answers": human_answers(rng, q["answer"], q["wrong"]),
                    "answer_type": q["answer_type"],
                    "question_type": q["question_type"],
                }
            )
    write_jsonl(out / "data.jsonl", rows)


# --------------------------------------------------------------------------- demo_caption

POSITION = {(0, 0): "top left", (1, 0): "top right", (0, 1): "bottom left", (1, 1): "bottom right"}


def captions(shapes: list[Shape], rng: random.Random) -> list[str]:
    names = [article(s.name) for s in shapes]
    shuffled = rng.sample(names, len(names))
    n = len(shapes)
    count = NUMBER_WORDS[n]
    where = join_and([f"{article(s.name)} in the {POSITION[(s.col, s.row)]}" for s in shapes])
    if n == 1:
        return [
            f"{names[0]} on a white background",
            f"a single {shapes[0].name} on white",
            f"a simple drawing of {names[0]}",
            f"a white image with {names[0]} in it",
            f"{where} of a white image",
        ]
    return [
        f"{join_and(names)} on a white background",
        f"{count} shapes: {join_and(shuffled)}",
        f"a simple drawing of {count} colored shapes on white",
        f"a white image with {join_and(shuffled)}",
        where,
    ]


def build_caption(out: Path) -> None:
    rng = random.Random("mmeval/demo_caption")
    rows = []
    for i in range(60):
        image_id = f"img{i:03d}"
        shapes = random_scene(rng, 1 + i % 4)
        save_png(render(shapes, 2, rng), out / "images" / f"{image_id}.png")
        rows.append({"image_id": image_id, "image": f"images/{image_id}.png", "captions": captions(shapes, rng)})
    write_jsonl(out / "data.jsonl", rows)


# --------------------------------------------------------------------------- demo_mcq

# direction -> (axis: 0 = column / 1 = row, sign: where the answer lies relative to the reference)
DIRECTIONS = {"to the left of": (0, -1), "to the right of": (0, 1), "above": (1, -1), "below": (1, 1)}
EXTREMES = {
    "furthest to the left": (0, -1),
    "furthest to the right": (0, 1),
    "closest to the top": (1, -1),
    "closest to the bottom": (1, 1),
}
RELATIVE_OPTIONS = {
    "to the left of": "To the left",
    "to the right of": "To the right",
    "above": "Above",
    "below": "Below",
}
MCQ_CATEGORIES = ("relative_position", "directional", "extreme", "between")


def _pos(s: Shape, axis: int) -> int:
    return s.col if axis == 0 else s.row


def _place(rng: random.Random, cells: list[tuple[int, int]]) -> list[Shape]:
    colors = rng.sample(sorted(COLORS), len(cells))
    return [Shape(rng.choice(SHAPES), color, c, r) for (c, r), color in zip(cells, colors, strict=True)]


def _line(rng: random.Random, axis: int, length: int) -> list[tuple[int, int]]:
    """``length`` cells in increasing order along ``axis`` within one row/column of a 3x3 grid."""
    fixed = rng.randrange(3)
    steps = sorted(rng.sample(range(3), length))
    return [(p, fixed) if axis == 0 else (fixed, p) for p in steps]


def mcq_item(category: str, rng: random.Random) -> tuple[list[Shape], str, str, list[str]]:
    """(shapes, question, correct option, distractor options) for one spatial question."""
    if category == "relative_position":
        direction = rng.choice(sorted(DIRECTIONS))
        axis, sign = DIRECTIONS[direction]
        a, b = _line(rng, axis, 2)
        if sign > 0:
            a, b = b, a
        cells = [a, b]
        if rng.random() < 0.5:  # an unrelated third shape
            cells.append(rng.choice([(c, r) for c in range(3) for r in range(3) if (c, r) not in cells]))
        shapes = _place(rng, cells)
        question = f"Where is the {shapes[0].name} relative to the {shapes[1].name}?"
        correct = RELATIVE_OPTIONS[direction]
        return shapes, question, correct, [o for o in RELATIVE_OPTIONS.values() if o != correct]
    if category == "directional":
        direction = rng.choice(sorted(DIRECTIONS))
        axis, sign = DIRECTIONS[direction]
        near, ref = _line(rng, axis, 2)
        if sign > 0:
            near, ref = ref, near
        # the third shape must not lie in the asked direction, so the answer is unique
        other = [(c, r) for c in range(3) for r in range(3) if (c, r) not in (near, ref) and ((c, r)[axis] - ref[axis]) * sign <= 0]
        shapes = _place(rng, [ref, near, rng.choice(other)])
        question = f"Which shape is {direction} the {shapes[0].name}?"
        return shapes, question, shapes[1].name, [shapes[2].name, shapes[0].name]
    if category == "extreme":
        cols, rows = rng.sample(range(3), 3), rng.sample(range(3), 3)
        shapes = _place(rng, list(zip(cols, rows, strict=True)))
        phrase = rng.choice(sorted(EXTREMES))
        axis, sign = EXTREMES[phrase]
        best = max(shapes, key=lambda s: _pos(s, axis) * sign)
        question = f"Which shape is {phrase}?"
        return shapes, question, best.name, [s.name for s in shapes if s != best]
    # between: three shapes in one row or column; ask for the middle one
    shapes = _place(rng, _line(rng, rng.randrange(2), 3))
    ends = rng.sample([shapes[0], shapes[2]], 2)
    question = f"Which shape is between the {ends[0].name} and the {ends[1].name}?"
    return shapes, question, shapes[1].name, [ends[0].name, ends[1].name]


def build_mcq(out: Path) -> None:
    rng = random.Random("mmeval/demo_mcq")
    n = 64
    slots = [i % 4 for i in range(n)]  # each answer letter exactly n/4 times
    rng.shuffle(slots)
    rows = []
    for i in range(n):
        category = MCQ_CATEGORIES[i % len(MCQ_CATEGORIES)]
        shapes, question, correct, distractors = mcq_item(category, rng)
        used = {s.name for s in shapes}
        absent = [f"{c} {k}" for c in sorted(COLORS) for k in SHAPES if f"{c} {k}" not in used]
        wrong = list(dict.fromkeys(d for d in distractors if d != correct))[:3]
        wrong += rng.sample(absent, 3 - len(wrong))
        rng.shuffle(wrong)
        options = list(wrong)
        options.insert(slots[i], correct)
        image_id = f"img{i:03d}"
        save_png(render(shapes, 3, rng), out / "images" / f"{image_id}.png")
        rows.append(
            {
                "id": f"mcq{i:03d}",
                "image_id": image_id,
                "image": f"images/{image_id}.png",
                "question": question,
                "options": options,
                "answer": "ABCD"[slots[i]],
                "category": category,
            }
        )
    write_jsonl(out / "data.jsonl", rows)


# --------------------------------------------------------------------------- registry


def _build_audioqa(out: Path) -> None:
    # imported lazily: only this fixture needs espeak-ng and sox
    from mmeval.tasks.fixtures_audio import build_audioqa

    build_audioqa(out)


def _generation(name: str) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        from mmeval.tasks import fixtures_gen  # imports this module: resolved at build time

        getattr(fixtures_gen, name)(out)

    return build


FIXTURES: dict[str, Callable[[Path], None]] = {
    "demo_vqa": build_vqa,
    "demo_caption": build_caption,
    "demo_mcq": build_mcq,
    "demo_audioqa": _build_audioqa,
    "demo_t2i": _generation("build_t2i"),
    "demo_t2a": _generation("build_t2a"),
    "demo_t2v": _generation("build_t2v"),
}
FIXTURE_VERSION: dict[str, int] = {name: 1 for name in FIXTURES}


def default_cache_root() -> Path:
    env = os.environ.get("MMEVAL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mmeval"


def fixture_dir(name: str, cache_root: Path | None = None) -> Path:
    """The directory of a built fixture, building it first if it is not there yet.

    The build goes into a temporary directory beside the final one and is renamed into place,
    so the final directory either does not exist or is complete. When several processes race,
    the first rename wins and the others discard their copies.
    """
    if name not in FIXTURES:
        raise KeyError(f"unknown fixture {name!r}; known fixtures: {', '.join(sorted(FIXTURES))}")
    parent = Path(cache_root or default_cache_root()) / "fixtures"
    final = parent / f"{name}-v{FIXTURE_VERSION.get(name, 1)}"
    if (final / "data.jsonl").is_file():
        return final
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=parent))
    try:
        FIXTURES[name](tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        try:
            tmp.replace(final)  # atomic rename; fails if another process already put a full dir there
        except OSError as exc:
            if not (final / "data.jsonl").is_file():
                raise RuntimeError(f"{final} exists but is not a complete fixture; delete it and retry") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
