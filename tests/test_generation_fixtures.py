"""The generation demo fixtures (demo_t2i, demo_t2a, demo_t2v): well formed and deterministic."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mmeval.media import synth
from mmeval.media.video import decode_video
from mmeval.tasks.fixtures import fixture_dir
from mmeval.types import MediaPart

MEDIA = {"demo_t2i": "image", "demo_t2a": "audio", "demo_t2v": "video"}


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", sorted(MEDIA))
def test_generation_fixture_is_well_formed_and_deterministic(name: str, tmp_path: Path) -> None:
    root = fixture_dir(name, tmp_path / "a")
    rows = [json.loads(x) for x in (root / "data.jsonl").read_text().splitlines()]
    assert len(rows) >= 24 and len({r["id"] for r in rows}) == len(rows)
    assert all(r["caption"] and not Path(r[MEDIA[name]]).is_absolute() for r in rows)
    for r in rows[:6]:
        part = MediaPart(MEDIA[name], path=str(root / r[MEDIA[name]]))  # type: ignore[arg-type]
        if name == "demo_t2i":
            assert part.load_image().size == (96, 96)
        elif name == "demo_t2a":
            x, rate = part.load_audio()
            assert rate == synth.RATE and 0.05 < np.abs(x).max() <= 1.0
            assert synth.parse(r["caption"]) is not None  # every caption is in the synthesizer's grammar
        else:
            frames, fps = decode_video(part)
            assert frames.shape == (8, 64, 64, 3) and fps == pytest.approx(8.0)
            assert not np.array_equal(frames[0], frames[-1])  # the shape moves
    assert digest(root) == digest(fixture_dir(name, tmp_path / "b"))


def test_synth_grammar_round_trips() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        sound = synth.random_sound(rng)
        assert synth.parse(sound.describe()) == sound
        assert synth.parse("Please play " + sound.describe().upper() + ", thanks") == sound
    assert synth.parse("the sound of rain on a roof") is None
