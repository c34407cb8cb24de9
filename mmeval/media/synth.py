"""A tiny grammar of sound descriptions and a deterministic synthesizer for it.

The demo text->audio fixture (``demo_t2a``) describes clips in this grammar and renders its
reference audio with it; the ``synth-audio`` baseline model parses a prompt back and renders
it with *different* noise and phase, so a perfect reader scores a small but non-zero FAD, a
model that ignores the prompt scores a large one, and the metrics have something real to
separate. Descriptions:

    a steady 440 Hz tone lasting 1.5 seconds
    3 short beeps at 880 Hz
    a rising sweep from 200 Hz to 1200 Hz
    a falling sweep from 1200 Hz to 200 Hz
    white noise lasting 1 seconds
    a chord of 330 Hz and 495 Hz
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

RATE = 16_000


@dataclass(frozen=True)
class Sound:
    kind: str  # tone | beeps | sweep | noise | chord
    f0: float = 0.0
    f1: float = 0.0
    seconds: float = 1.0
    count: int = 0

    def describe(self) -> str:
        if self.kind == "tone":
            return f"a steady {self.f0:g} Hz tone lasting {self.seconds:g} seconds"
        if self.kind == "beeps":
            return f"{self.count} short beeps at {self.f0:g} Hz"
        if self.kind == "sweep":
            way = "rising" if self.f1 > self.f0 else "falling"
            return f"a {way} sweep from {self.f0:g} Hz to {self.f1:g} Hz"
        if self.kind == "noise":
            return f"white noise lasting {self.seconds:g} seconds"
        return f"a chord of {self.f0:g} Hz and {self.f1:g} Hz"


_PATTERNS = [
    (re.compile(r"steady ([\d.]+) hz tone lasting ([\d.]+) seconds"), lambda m: Sound("tone", float(m[1]), seconds=float(m[2]))),
    (re.compile(r"(\d+) short beeps at ([\d.]+) hz"), lambda m: Sound("beeps", float(m[2]), count=int(m[1]))),
    (re.compile(r"(?:rising|falling) sweep from ([\d.]+) hz to ([\d.]+) hz"), lambda m: Sound("sweep", float(m[1]), float(m[2]))),
    (re.compile(r"white noise lasting ([\d.]+) seconds"), lambda m: Sound("noise", seconds=float(m[1]))),
    (re.compile(r"chord of ([\d.]+) hz and ([\d.]+) hz"), lambda m: Sound("chord", float(m[1]), float(m[2]))),
]


def parse(text: str) -> Sound | None:
    """The first description found in ``text`` (case-insensitive), or None."""
    low = text.lower()
    for pattern, build in _PATTERNS:
        m = pattern.search(low)
        if m:
            return build(m)
    return None


def render(sound: Sound, rng: np.random.Generator, rate: int = RATE) -> np.ndarray:
    """Float32 mono samples in [-1, 1]; ``rng`` sets the phase, level and noise."""
    phase = rng.uniform(0, 2 * np.pi)
    level = rng.uniform(0.3, 0.5)
    if sound.kind == "beeps":
        beep, gap = 0.12, 0.08
        t = np.arange(int(beep * rate)) / rate
        one = np.sin(2 * np.pi * sound.f0 * t + phase) * _fade(t.size, rate)
        silence = np.zeros(int(gap * rate))
        x = np.concatenate([np.concatenate([one, silence]) for _ in range(max(1, sound.count))])
    elif sound.kind == "sweep":
        seconds = 1.0
        t = np.arange(int(seconds * rate)) / rate
        freq = sound.f0 + (sound.f1 - sound.f0) * t / seconds
        x = np.sin(2 * np.pi * np.cumsum(freq) / rate + phase)
    elif sound.kind == "noise":
        x = rng.uniform(-1, 1, int(sound.seconds * rate))
    elif sound.kind == "chord":
        t = np.arange(rate) / rate
        x = 0.5 * (np.sin(2 * np.pi * sound.f0 * t + phase) + np.sin(2 * np.pi * sound.f1 * t + 2 * phase))
    else:
        t = np.arange(int(sound.seconds * rate)) / rate
        x = np.sin(2 * np.pi * sound.f0 * t + phase)
    x = level * x * _fade(x.size, rate) + rng.normal(0, 0.003, x.size)  # a faint noise floor
    return np.clip(x, -1, 1).astype(np.float32)


def _fade(n: int, rate: int, seconds: float = 0.01) -> np.ndarray:
    """Short linear fade in/out, so clips do not click."""
    k = min(n // 2, int(seconds * rate))
    env = np.ones(n)
    if k:
        ramp = np.linspace(0, 1, k)
        env[:k], env[n - k :] = ramp, ramp[::-1]
    return env


def random_sound(rng: np.random.Generator) -> Sound:
    kind = ["tone", "beeps", "sweep", "noise", "chord"][int(rng.integers(0, 5))]
    f = float(rng.choice([220, 330, 440, 550, 660, 880, 1100]))
    if kind == "tone":
        return Sound("tone", f, seconds=float(rng.choice([0.5, 1.0, 1.5])))
    if kind == "beeps":
        return Sound("beeps", f, count=int(rng.integers(2, 6)))
    if kind == "sweep":
        g = float(rng.choice([200, 400, 1200, 1600]))
        return Sound("sweep", f, g if g != f else f * 2)
    if kind == "noise":
        return Sound("noise", seconds=float(rng.choice([0.5, 1.0])))
    return Sound("chord", f, round(f * 1.5))
