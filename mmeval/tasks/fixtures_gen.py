"""Demo fixtures for generation tasks: text -> image, text -> audio, text -> video.

Each document is a prompt and the real media it describes, so a generation task can compare
the generated set with the reference set (FID/KID, FAD, FVD) and each output with its prompt
(CLIPScore, CLAP score, CLIPSIM):

- ``demo_t2i``: 64 shape scenes (the demo_caption renderer) with their first caption.
- ``demo_t2a``: 48 clips in the synthesizer grammar of :mod:`mmeval.media.synth` (tones,
  beeps, sweeps, noise, chords), 16 kHz WAV.
- ``demo_t2v``: 24 clips of one shape moving across the frame, 8 frames at 8 fps, APNG.

Deterministic like the other fixtures (seeded generators; PNG/WAV/APNG without metadata).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mmeval.media import synth
from mmeval.media.audio import encode_wav
from mmeval.media.video import encode_apng
from mmeval.tasks.fixtures import COLORS, SHAPES, article, captions, random_scene, render, save_png, write_jsonl


def build_t2i(out: Path) -> None:
    rng = random.Random("mmeval/demo_t2i")
    rows = []
    for i in range(64):
        doc_id = f"t2i{i:03d}"
        shapes = random_scene(rng, 1 + i % 3)
        save_png(render(shapes, 2, rng), out / "images" / f"{doc_id}.png")
        rows.append({"id": doc_id, "caption": captions(shapes, rng)[0], "image": f"images/{doc_id}.png", "n_shapes": len(shapes)})
    write_jsonl(out / "data.jsonl", rows)


def build_t2a(out: Path) -> None:
    rng = np.random.default_rng(20261121)
    rows = []
    for i in range(48):
        doc_id = f"t2a{i:03d}"
        sound = synth.random_sound(rng)
        path = out / "audio" / f"{doc_id}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_wav(synth.render(sound, rng), synth.RATE))
        rows.append({"id": doc_id, "caption": sound.describe(), "audio": f"audio/{doc_id}.wav", "kind": sound.kind})
    write_jsonl(out / "data.jsonl", rows)


MOTIONS = {
    "from left to right": ((0.2, 0.5), (0.8, 0.5)),
    "from right to left": ((0.8, 0.5), (0.2, 0.5)),
    "from top to bottom": ((0.5, 0.2), (0.5, 0.8)),
    "from bottom to top": ((0.5, 0.8), (0.5, 0.2)),
}
VIDEO_SIZE, VIDEO_FRAMES, VIDEO_FPS = 64, 8, 8.0


def moving_shape(kind: str, color: str, start: tuple[float, float], end: tuple[float, float], rng: random.Random) -> np.ndarray:
    half = rng.randint(7, 10)
    frames = []
    for t in np.linspace(0.0, 1.0, VIDEO_FRAMES):
        img = Image.new("RGB", (VIDEO_SIZE, VIDEO_SIZE), "white")
        draw = ImageDraw.Draw(img)
        cx = round((start[0] + (end[0] - start[0]) * t) * VIDEO_SIZE)
        cy = round((start[1] + (end[1] - start[1]) * t) * VIDEO_SIZE)
        box = (cx - half, cy - half, cx + half, cy + half)
        if kind == "circle":
            draw.ellipse(box, fill=COLORS[color])
        elif kind == "square":
            draw.rectangle(box, fill=COLORS[color])
        else:
            draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=COLORS[color])
        frames.append(np.asarray(img))
    return np.stack(frames)


def build_t2v(out: Path) -> None:
    rng = random.Random("mmeval/demo_t2v")
    rows = []
    for i in range(24):
        doc_id = f"t2v{i:03d}"
        kind, color = rng.choice(SHAPES), rng.choice(sorted(COLORS))
        motion = rng.choice(sorted(MOTIONS))
        frames = moving_shape(kind, color, *MOTIONS[motion], rng)
        path = out / "videos" / f"{doc_id}.apng"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_apng(frames, VIDEO_FPS))
        caption = f"{article(color + ' ' + kind)} moving {motion} on a white background"
        rows.append({"id": doc_id, "caption": caption, "video": f"videos/{doc_id}.apng", "motion": motion})
    write_jsonl(out / "data.jsonl", rows)
