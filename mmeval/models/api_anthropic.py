"""Claude through Anthropic's Messages API.

    ANTHROPIC_API_KEY=... mmeval run --model anthropic --model-args model=claude-sonnet-4-5 --tasks mme

POSTs ``{base_url}/messages`` (base_url default https://api.anthropic.com/v1) with the key in
``x-api-key`` (from the environment variable named by ``api_key_env``, default
ANTHROPIC_API_KEY; required) and ``anthropic-version`` (model arg ``anthropic_version``,
default 2023-06-01). Images go as base64 image blocks (PNG or JPEG, downscaled so the longest
side is at most ``max_image_side``); system messages become the top-level ``system`` prompt;
``max_tokens`` is always sent; stop sequences go as ``stop_sequences`` except whitespace-only
ones, which Claude refuses and which are applied to the answer instead. ``top_p`` is sent only
when not 1 (recent models refuse temperature and top_p together). Retries and timeouts: see
``mmeval.models.api_common``.
"""

from __future__ import annotations

from typing import Any

from mmeval.models.api_common import COMMON_ARGS, ApiModel, MalformedResponse, Parsed, answer_keys, message_text_only, truncate_at_stops
from mmeval.models.base import ArchitectureCard, Capabilities
from mmeval.types import MediaError, Request, TextPart

DEFAULT_VERSION = "2023-06-01"
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


class AnthropicMessages(ApiModel):
    """Claude through the Anthropic Messages API (base64 image blocks); key from an env var."""

    name = "anthropic"
    capabilities = Capabilities(
        input_modalities=frozenset({"text", "image"}), output_modalities=frozenset({"text"}), batchable=True, max_images=100
    )
    card = ArchitectureCard(open_weights=False)
    default_base_url = "https://api.anthropic.com/v1"
    default_key_env = "ANTHROPIC_API_KEY"
    endpoint = "/messages"
    key_required = True
    allowed_args = COMMON_ARGS | {"anthropic_version"}

    def __init__(self, **args: str) -> None:
        super().__init__(**args)
        self.version = args.get("anthropic_version") or DEFAULT_VERSION

    def fingerprint_extra(self) -> Any:
        return {"anthropic_version": self.version}

    def info(self) -> dict[str, Any]:
        return {**super().info(), "anthropic_version": self.version}

    def headers(self, key: str | None) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "x-api-key": key or "",
            "anthropic-version": self.version,
        }

    def build_body(self, req: Request) -> tuple[dict[str, Any], Any]:
        system: list[str] = []
        messages: list[dict[str, Any]] = []
        for m in req.messages:
            if m.role == "system":
                system.append(message_text_only(m.parts, "a system message"))
                continue
            blocks: list[dict[str, Any]] = []
            for p in m.parts:
                if isinstance(p, TextPart):
                    if p.text.strip():  # Claude refuses empty text blocks
                        blocks.append({"type": "text", "text": p.text})
                elif p.modality == "image":
                    mime, b64 = self.image_b64(p)
                    blocks.append({"type": "image", "source": {"type": "base64", "media_type": mime, "data": b64}})
                else:
                    raise MediaError(f"{self.name} cannot send {p.modality} parts")
            if not blocks:
                raise MediaError(f"the {m.role} message is empty (Claude refuses empty messages)")
            messages.append({"role": m.role, "content": blocks})
        g = req.generation
        body: dict[str, Any] = {"model": self.model_id, "max_tokens": g.max_new_tokens, "messages": messages, "temperature": g.temperature}
        if system:
            body["system"] = "\n\n".join(s for s in system if s)
        if g.top_p != 1.0:
            body["top_p"] = g.top_p
        sent = [s for s in g.stop if s.strip()]
        if sent:
            body["stop_sequences"] = sent
        return body, tuple(s for s in g.stop if s and not s.strip())

    def postprocess(self, parsed: Parsed, post: Any) -> Parsed:
        return truncate_at_stops(parsed, post) if post else parsed

    def parse_answer(self, data: Any) -> Parsed:
        if not isinstance(data, dict):
            raise MalformedResponse(f"expected a JSON object, got {type(data).__name__}")
        content = data.get("content")
        if not isinstance(content, list):
            why = self.error_text(data) if data.get("type") == "error" else None
            raise MalformedResponse(f"no content in the answer ({answer_keys(data)})" + (f": {why}" if why else ""))
        text = "".join(str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text")
        stop_reason = data.get("stop_reason")
        usage = data.get("usage")
        return Parsed(
            text=text,
            finish_reason=STOP_REASONS.get(stop_reason, stop_reason) if isinstance(stop_reason, str) else None,
            model=str(data["model"]) if data.get("model") else None,
            usage=usage if isinstance(usage, dict) else {},
            extra={"stop_reason": stop_reason},
        )

    def error_text(self, data: Any) -> str | None:
        if not isinstance(data, dict):
            return None
        err = data.get("error")
        if isinstance(err, dict):
            kind, msg = err.get("type"), err.get("message")
            return f"{kind}: {msg}" if kind and msg else (str(msg or kind) if (msg or kind) else None)
        return str(err) if isinstance(err, str) else None
