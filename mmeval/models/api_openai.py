"""OpenAI-compatible chat completions: GPT-4o, Gemini's OpenAI endpoint, vLLM and SGLang servers.

    mmeval run --model openai-chat --model-args model=gpt-4o-2024-08-06 --tasks mme
    mmeval run --model openai-chat --model-args model=llava-hf/llava-1.5-7b-hf,base_url=http://localhost:8000/v1 ...

POSTs ``{base_url}/chat/completions``. Images go as ``image_url`` data URLs (downscaled so
the longest side is at most ``max_image_side``), audio as ``input_audio`` (base64 WAV or MP3),
system messages as the system role. The generation config maps to ``max_tokens``,
``temperature``, ``top_p`` (sent when not 1), ``stop`` (the first 4; all are applied to the
answer) and ``seed``. The key comes from the environment variable named by ``api_key_env``
(default OPENAI_API_KEY) and is optional: local servers take none. Retries and timeouts:
see ``mmeval.models.api_common``.
"""

from __future__ import annotations

import base64
from typing import Any

from mmeval.models.api_common import (
    ApiModel,
    MalformedResponse,
    Parsed,
    answer_keys,
    audio_format,
    message_text_only,
    truncate_at_stops,
)
from mmeval.models.base import ArchitectureCard, Capabilities
from mmeval.types import MediaError, MediaPart, Request, TextPart

MAX_STOP = 4  # OpenAI's limit on stop sequences
# Hosts of closed models (an OpenAI-compatible server elsewhere may serve open weights).
CLOSED_HOSTS = ("api.openai.com", "generativelanguage.googleapis.com")


class OpenAIChat(ApiModel):
    """Any OpenAI-compatible chat endpoint (GPT-4o, Gemini, vLLM/SGLang servers); key from an env var."""

    name = "openai-chat"
    capabilities = Capabilities(
        input_modalities=frozenset({"text", "image", "audio"}), output_modalities=frozenset({"text"}), batchable=True
    )
    default_base_url = "https://api.openai.com/v1"
    default_key_env = "OPENAI_API_KEY"
    endpoint = "/chat/completions"
    key_required = False  # vLLM / SGLang servers usually take none; a 401 names the variable

    def __init__(self, **args: str) -> None:
        super().__init__(**args)
        closed = self.host in CLOSED_HOSTS
        self.card = ArchitectureCard(open_weights=False if closed else None)

    def headers(self, key: str | None) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            h["Authorization"] = f"Bearer {key}"
        return h

    def build_body(self, req: Request) -> tuple[dict[str, Any], Any]:
        messages: list[dict[str, Any]] = []
        for m in req.messages:
            if m.role == "system":
                messages.append({"role": "system", "content": message_text_only(m.parts, "a system message")})
            elif m.role == "assistant":
                messages.append({"role": "assistant", "content": message_text_only(m.parts, "an assistant message")})
            elif all(isinstance(p, TextPart) for p in m.parts):
                messages.append({"role": m.role, "content": m.text()})  # plain string: every server takes it
            else:
                messages.append({"role": m.role, "content": [self._part(p) for p in m.parts]})
        g = req.generation
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": messages,
            "max_tokens": g.max_new_tokens,
            "temperature": g.temperature,
            "seed": g.seed,
        }
        if g.top_p != 1.0:
            body["top_p"] = g.top_p
        if g.stop:
            body["stop"] = list(g.stop[:MAX_STOP])
        return body, tuple(g.stop[MAX_STOP:])

    def _part(self, p: TextPart | MediaPart) -> dict[str, Any]:
        if isinstance(p, TextPart):
            return {"type": "text", "text": p.text}
        if p.modality == "image":
            mime, b64 = self.image_b64(p)
            return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{b64}"}}
        if p.modality == "audio":
            raw = p.read_bytes()
            return {"type": "input_audio", "input_audio": {"data": base64.b64encode(raw).decode("ascii"), "format": audio_format(raw)}}
        raise MediaError(f"{self.name} cannot send {p.modality} parts")

    def postprocess(self, parsed: Parsed, post: Any) -> Parsed:
        return truncate_at_stops(parsed, post) if post else parsed

    def parse_answer(self, data: Any) -> Parsed:
        if not isinstance(data, dict):
            raise MalformedResponse(f"expected a JSON object, got {type(data).__name__}")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            why = self.error_text(data)
            raise MalformedResponse(f"no choices in the answer ({answer_keys(data)})" + (f": {why}" if why else ""))
        choice = choices[0]
        message = choice.get("message") or {}
        content = message.get("content")
        if content is None:
            text = ""  # a refusal or a content filter: an answer, though an empty one
        elif isinstance(content, str):
            text = content
        elif isinstance(content, list):  # some servers answer with content parts
            text = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        else:
            raise MalformedResponse(f"message content is a {type(content).__name__}")
        usage = data.get("usage")
        extra = {"system_fingerprint": data["system_fingerprint"]} if data.get("system_fingerprint") else {}
        if message.get("refusal"):
            extra["refusal"] = str(message["refusal"])
        return Parsed(
            text=text,
            finish_reason=choice.get("finish_reason"),
            model=str(data["model"]) if data.get("model") else None,
            usage=usage if isinstance(usage, dict) else {},
            extra=extra,
        )

    def error_text(self, data: Any) -> str | None:
        if isinstance(data, list) and data:  # Gemini's compatible endpoint wraps errors in a list
            data = data[0]
        if not isinstance(data, dict):
            return None
        err = data.get("error", data)
        if isinstance(err, str):
            return err
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail")
            return str(msg) if msg else None
        return None
