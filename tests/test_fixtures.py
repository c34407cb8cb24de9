"""The generated demo fixtures: shape of the data, decodable media, determinism, atomic builds."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mmeval.tasks import fixtures, fixtures_audio
from mmeval.tasks.fixtures import FIXTURE_VERSION, FIXTURES, fixture_dir

HAVE_TTS = shutil.which("espeak-ng") is not None and shutil.which("sox") is not None
NAMES = [
    pytest.param(name, marks=pytest.mark.skipif(not HAVE_TTS, reason="needs espeak-ng and sox")) if name == "demo_audioqa" else name
    for name in sorted(FIXTURES)
    if name in {"demo_vqa", "demo_caption", "demo_mcq", "demo_audioqa"}  # generation fixtures: tests/test_generation_fixtures.py
]


def rows_of(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / "data.jsonl").read_text(encoding="utf-8").splitlines()]


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tmp_path_factory.mktemp("cache_a"), tmp_path_factory.mktemp("cache_b")


@pytest.mark.parametrize("name", NAMES)
def test_fixture_is_well_formed(name: str, roots: tuple[Path, Path]) -> None:
    root = fixture_dir(name, roots[0])
    assert root == roots[0] / "fixtures" / f"{name}-v{FIXTURE_VERSION[name]}"
    rows = rows_of(root)
    assert len(rows) >= 50
    id_key = {"demo_vqa": "question_id", "demo_caption": "image_id"}.get(name, "id")
    ids = [r[id_key] for r in rows]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    media_key = "audio" if name == "demo_audioqa" else "image"
    for path in sorted({r[media_key] for r in rows}):
        assert not Path(path).is_absolute()
        if media_key == "image":
            with Image.open(root / path) as img:
                img.load()
                assert img.mode == "RGB" and img.size == (96, 96)
        else:
            with wave.open(str(root / path)) as wav:
                assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
                assert wav.getnframes() > 1600  # at least 0.1 s


def test_vqa_rows(roots: tuple[Path, Path]) -> None:
    rows = rows_of(fixture_dir("demo_vqa", roots[0]))
    for r in rows:
        assert set(r) == {"question_id", "image_id", "image", "question", "answers", "answer_type", "question_type"}
        assert len(r["answers"]) == 10 and all(isinstance(a, str) and a for a in r["answers"])
        assert r["answer_type"] in {"number", "yes/no", "other"}
    assert {r["answer_type"] for r in rows} == {"number", "yes/no", "other"}
    yes_no = [r["answers"].count("yes") > 5 for r in rows if r["answer_type"] == "yes/no"]
    assert any(yes_no) and not all(yes_no)


def test_caption_rows(roots: tuple[Path, Path]) -> None:
    for r in rows_of(fixture_dir("demo_caption", roots[0])):
        assert set(r) == {"image_id", "image", "captions"}
        assert len(r["captions"]) == 5 and len(set(r["captions"])) == 5


def test_mcq_rows(roots: tuple[Path, Path]) -> None:
    rows = rows_of(fixture_dir("demo_mcq", roots[0]))
    for r in rows:
        assert set(r) == {"id", "image_id", "image", "question", "options", "answer", "category"}
        assert len(r["options"]) == 4 and len(set(r["options"])) == 4
        assert r["answer"] in "ABCD"[: len(r["options"])] and len(r["answer"]) == 1
    letters = [r["answer"] for r in rows]
    assert {letter: letters.count(letter) for letter in "ABCD"} == dict.fromkeys("ABCD", len(rows) // 4)
    assert len({r["category"] for r in rows}) == 4


@pytest.mark.skipif(not HAVE_TTS, reason="needs espeak-ng and sox")
def test_audioqa_rows(roots: tuple[Path, Path]) -> None:
    rows = rows_of(fixture_dir("demo_audioqa", roots[0]))
    for r in rows:
        assert set(r) == {"id", "audio", "question", "answer", "answers", "kind"}
        assert r["answer"] in r["answers"] and r["kind"] in {"speech", "tones"}
    assert {r["kind"] for r in rows} == {"speech", "tones"}
    seven = next(r for r in rows if r["answer"] == "7")
    assert seven["answers"] == ["7", "seven"]


@pytest.mark.parametrize("name", NAMES)
def test_builds_are_byte_identical(name: str, roots: tuple[Path, Path]) -> None:
    first, second = (hashes(fixture_dir(name, root)) for root in roots)
    assert "data.jsonl" in first and len(first) > 20
    assert first == second


def test_unknown_fixture_lists_known_names(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="demo_vqa"):
        fixture_dir("no_such_fixture", tmp_path)


def test_default_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MMEVAL_CACHE", str(tmp_path))
    assert fixtures.default_cache_root() == tmp_path
    monkeypatch.delenv("MMEVAL_CACHE")
    assert fixtures.default_cache_root() == Path.home() / ".cache" / "mmeval"


def test_missing_tts_tools_say_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(fixtures_audio.shutil, "which", lambda tool: None if tool == "sox" else "/usr/bin/" + tool)
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng sox"):
        fixture_dir("demo_audioqa", tmp_path)
    assert not (tmp_path / "fixtures" / "demo_audioqa-v1").exists()
    assert list((tmp_path / "fixtures").iterdir()) == []  # the temporary build dir is cleaned up


def test_racing_builds_leave_one_complete_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    n = 4
    barrier = threading.Barrier(n)

    def slow_builder(out: Path) -> None:
        (out / "images").mkdir()
        for i in range(20):
            (out / "images" / f"{i}.txt").write_text(str(i))
        barrier.wait(timeout=10)  # every racer has a full build before any of them renames it
        (out / "data.jsonl").write_text('{"id": "x"}\n')

    monkeypatch.setitem(FIXTURES, "race", slow_builder)
    monkeypatch.setitem(FIXTURE_VERSION, "race", 3)
    with ThreadPoolExecutor(max_workers=n) as pool:  # one thread per racer; errors re-raise here
        results = list(pool.map(lambda _: fixture_dir("race", tmp_path), range(n)))
    final = tmp_path / "fixtures" / "race-v3"
    assert results == [final] * n
    assert (final / "data.jsonl").read_text() == '{"id": "x"}\n'
    assert len(list((final / "images").iterdir())) == 20
    assert [p.name for p in (tmp_path / "fixtures").iterdir()] == ["race-v3"]  # no temp dirs left


def test_real_fixture_race(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: fixture_dir("demo_mcq", tmp_path), range(3)))
    assert len(set(results)) == 1 and len(results) == 3
    assert len(rows_of(results[0])) == 64
    assert [p.name for p in (tmp_path / "fixtures").iterdir()] == [f"demo_mcq-v{FIXTURE_VERSION['demo_mcq']}"]


def test_failed_build_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(out: Path) -> None:
        (out / "data.jsonl").write_text("partial\n")
        raise ValueError("generator bug")

    monkeypatch.setitem(FIXTURES, "broken", broken)
    monkeypatch.setitem(FIXTURE_VERSION, "broken", 1)
    with pytest.raises(ValueError, match="generator bug"):
        fixture_dir("broken", tmp_path)
    assert list((tmp_path / "fixtures").iterdir()) == []


def test_stray_incomplete_directory_is_reported(tmp_path: Path) -> None:
    stray = tmp_path / "fixtures" / f"demo_mcq-v{FIXTURE_VERSION['demo_mcq']}"
    stray.mkdir(parents=True)
    (stray / "leftover.txt").write_text("x")
    with pytest.raises(RuntimeError, match="delete it and retry"):
        fixture_dir("demo_mcq", tmp_path)
    assert [p.name for p in (tmp_path / "fixtures").iterdir()] == [stray.name]
