"""Parsing generated media out of a response, and the signal-token emission rate.

``parse: {name: media, modality: image}`` turns a response into

    {"media": ["artifacts/ab/ab12....png"], "text": "...", "signal_tokens": true}

with extraction stage ``media`` when the response carries media of that modality and
``no_media`` when it does not (a model that answered in words only). The extraction rate of a
generation task is therefore the fraction of prompts that produced media; distribution
metrics are computed over the samples that did, and report that n.

``signal_tokens`` is copied from ``Response.meta["signal_tokens"]`` when the adapter reports
it (NExT-GPT's ``[IMG0]..`` / ``[AUD0]..`` / ``[VID0]..`` tokens, which trigger its output
projector): a dict modality -> bool, or a bool. ``signal_token_rate`` averages it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mmeval.metrics.base import Metric, ParseContext, Parser
from mmeval.types import Response

MEDIA = "media"
NO_MEDIA = "no_media"


class MediaParser(Parser):
    name: ClassVar[str] = "media"

    def __init__(self, modality: str | None = None, **kwargs: Any) -> None:
        super().__init__(modality=modality, **kwargs)
        self.modality = modality

    def parse(self, text: str, ctx: ParseContext) -> tuple[Any, str]:
        return {"media": [], "text": text}, NO_MEDIA

    def parse_response(self, response: Response, ctx: ParseContext) -> tuple[Any, str]:
        media = [a.path for a in response.artifacts if self.modality is None or a.modality == self.modality]
        parsed: dict[str, Any] = {"media": media, "text": response.text}
        signal = response.meta.get("signal_tokens")
        if signal is not None:
            parsed["signal_tokens"] = bool(signal.get(self.modality, False) if isinstance(signal, dict) and self.modality else signal)
        return parsed, (MEDIA if media else NO_MEDIA)


class SignalTokenRate(Metric):
    """Fraction of responses in which the model emitted its modality signal tokens.
    Samples whose adapter does not report signal tokens are left out (no value, not 0)."""

    name: ClassVar[str] = "signal_token_rate"

    def score(self, parsed: Any, target: Any, ctx: ParseContext) -> dict[str, float]:
        if isinstance(parsed, dict) and "signal_tokens" in parsed:
            return {"signal_token_rate": 1.0 if parsed["signal_tokens"] else 0.0}
        return {}
