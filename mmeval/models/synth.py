"""``synth-audio``: a deterministic text->audio baseline for the sound grammar of mmeval.media.synth.

It reads a description such as "3 short beeps at 880 Hz" from the prompt and renders it with
per-sample noise (seeded by ``sample_seed``), so it is the "reads the prompt perfectly, renders
with its own noise" reference point on ``demo_t2a``: a generator should approach its FAD and
CLAP score. A prompt outside the grammar gets a text-only response (no audio), which the
generation task counts through its extraction rate rather than as a silent clip.

Needs no weights; used by the end-to-end tests of FAD and CLAP score.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from mmeval.media import synth
from mmeval.media.audio import encode_wav
from mmeval.models.base import ArchitectureCard, Capabilities, Model, ModelArgsError, sample_seed
from mmeval.types import Artifact, Request, Response


class SynthAudio(Model):
    name: ClassVar[str] = "synth-audio"
    capabilities: ClassVar[Capabilities] = Capabilities(
        input_modalities=frozenset({"text"}), output_modalities=frozenset({"audio"}), batchable=True
    )
    allowed_args: ClassVar[frozenset[str]] = frozenset({"rate"})
    card = ArchitectureCard(modality_generator="rule-based synthesizer (mmeval.media.synth)", params=0, open_weights=True)

    def __init__(self, **args: str) -> None:
        super().__init__(**args)
        try:
            self.rate = int(args.get("rate", str(synth.RATE)))
        except ValueError:
            raise ModelArgsError(f"synth-audio: rate must be an integer sample rate, got {args['rate']!r}") from None
        if not 8000 <= self.rate <= 96000:
            raise ModelArgsError(f"synth-audio: rate must be between 8000 and 96000 Hz, got {self.rate}")

    def info(self) -> dict[str, object]:
        return {"rate": self.rate, "grammar": "mmeval.media.synth"}

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        out = []
        for req in requests:
            t0 = time.perf_counter()
            sound = synth.parse(req.prompt_text())
            if sound is None:
                out.append(Response(id=req.id, text="(no sound description found)", finish_reason="stop", meta={"understood": False}))
                continue
            seed = sample_seed(req)
            samples = synth.render(sound, np.random.default_rng(seed), self.rate)
            art = Artifact.from_bytes(
                "audio", encode_wav(samples, self.rate), "wav", sample_rate=self.rate, seconds=samples.size / self.rate
            )
            out.append(
                Response(
                    id=req.id,
                    artifacts=[art],
                    finish_reason="stop",
                    meta={"understood": True, "seed": seed, "sound": sound.describe()},
                    timings={"generate_s": time.perf_counter() - t0},
                )
            )
        return out
