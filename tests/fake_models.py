"""Model adapters used only by the tests (registered through the registry like a plugin)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from mmeval.models.base import Capabilities, Model
from mmeval.models.hf_decoding import left_pad
from mmeval.models.tiny import TinyLlava
from mmeval.types import MODALITIES, Request, Response

WORDS = ["red", "blue", "green", "2", "3", "yes", "no", "circle", "A", "B"]


def echo_answer(req: Request) -> str:
    """A deterministic answer that depends on the request content only."""
    digest = hashlib.sha256(req.prompt_text().encode()).digest()
    return WORDS[digest[0] % len(WORDS)]


class HashModel(Model):
    """Answers from a hash of the prompt; ``delay`` seconds per batch (for kill/resume tests)."""

    name = "test-hash"
    capabilities = Capabilities(input_modalities=frozenset(MODALITIES))
    allowed_args = frozenset({"delay", "fail_on", "interrupt_after"})

    def __init__(self, **args: str) -> None:
        super().__init__(**args)
        self.delay = float(args.get("delay", "0"))
        self.fail_on = args.get("fail_on")
        self.interrupt_after = int(args.get("interrupt_after", "0"))
        self.batches = 0

    def fingerprint(self) -> str:
        # Its args only plant faults or delays; outputs depend on the prompt alone, so runs with
        # and without faults share cache entries (as a real adapter's batch size would).
        return "test-hash-v1"

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        self.batches += 1
        if self.interrupt_after and self.batches > self.interrupt_after:
            raise KeyboardInterrupt
        if self.fail_on and any(r.id.endswith("/" + self.fail_on) for r in requests):
            raise RuntimeError(f"planted failure on {self.fail_on}")
        if self.delay:
            time.sleep(self.delay)
        return [Response(id=r.id, text=echo_answer(r), finish_reason="stop", meta={"pid": os.getpid()}) for r in requests]


class TextOnlyModel(Model):
    """Refuses images: for the modality-mismatch check. Counts constructions."""

    name = "test-text-only"
    capabilities = Capabilities(input_modalities=frozenset({"text"}))
    constructed: ClassVar[int] = 0

    def __init__(self, **args: str) -> None:
        super().__init__(**args)
        TextOnlyModel.constructed += 1

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        return [Response(id=r.id, text="x") for r in requests]


class PlantedFault(RuntimeError):
    """What FaultyModel raises: a type no library code raises, so a test can find it in an error."""


class FaultyModel(HashModel):
    """HashModel that raises PlantedFault for a whole batch when any of its prompts contains
    ``raise_on``; records the request ids of every call (reset it in the test)."""

    name = "test-faulty"
    allowed_args = HashModel.allowed_args | {"raise_on"}
    calls: ClassVar[list[list[str]]] = []

    def __init__(self, **args: str) -> None:
        super().__init__(**args)
        self.raise_on = args.get("raise_on") or None

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        FaultyModel.calls.append([r.id for r in requests])
        culprit = next((r for r in requests if self.raise_on and self.raise_on in r.prompt_text()), None)
        if culprit is not None:
            raise PlantedFault(f"cannot answer {culprit.id}: its prompt contains {self.raise_on!r}")
        return super().generate(requests)


class _EmptyingProcessor:
    """A LLaVA processor whose tokenizer returns no tokens for a prompt containing ``marker``:
    that row comes back as the real processor pads an empty one (left padding, attention mask
    all zero), or the batch is zero tokens wide when every row is empty."""

    def __init__(self, inner: Any, marker: str) -> None:
        self.inner = inner
        self.marker = marker

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, text: list[str], **kwargs: Any) -> Any:
        out = self.inner(text=text, **kwargs)
        hit = {i for i, t in enumerate(text) if self.marker in t}
        if hit:
            ids, mask = out["input_ids"], out["attention_mask"]
            rows = [[] if i in hit else ids[i][mask[i].bool()].tolist() for i in range(len(text))]
            out["input_ids"], out["attention_mask"] = left_pad(rows, self.inner.tokenizer.pad_token_id)
        return out


class FaultyTinyLlava(TinyLlava):
    """tiny-llava with planted tokenizer faults: a prompt holding ``empty_prompt_on`` tokenizes
    to zero tokens; the answer to a prompt holding ``empty_answer_on`` decodes to ""."""

    name = "test-llava-faults"
    allowed_args = TinyLlava.allowed_args | {"empty_prompt_on", "empty_answer_on"}

    def parse_args(self, args: dict[str, str]) -> None:
        super().parse_args(args)
        self.empty_prompt_on = args.get("empty_prompt_on") or None
        self.empty_answer_on = args.get("empty_answer_on") or None
        self._blank_rows: list[bool] = []

    def fingerprint_extra_fields(self) -> dict[str, Any]:
        # The faults change outputs: never share cache entries with a clean tiny-llava.
        return {**super().fingerprint_extra_fields(), "faults": [self.empty_prompt_on, self.empty_answer_on]}

    def load_processor(self, kwargs: dict[str, Any]) -> Any:
        processor = super().load_processor(kwargs)
        return _EmptyingProcessor(processor, self.empty_prompt_on) if self.empty_prompt_on else processor

    def after_load(self) -> None:
        super().after_load()
        decode = self.tokenizer.decode

        def blanking_decode(ids: Any, **kwargs: Any) -> str:
            blank = self._blank_rows.pop(0) if self._blank_rows else False
            return "" if blank else decode(ids, **kwargs)

        self.tokenizer.decode = blanking_decode

    def _generate_batch(self, gen: Any, items: Any, inputs: Any, stop_ids: set[int], **fixed: Any) -> dict[str, Response]:
        # The batch's rows are decoded once each, in item order: queue which of them come back "".
        marker = self.empty_answer_on
        self._blank_rows = [bool(marker) and marker in prompt.text for _, prompt in items]
        return super()._generate_batch(gen, items, inputs, stop_ids, **fixed)
