"""The JSON-lines protocol between mmeval and a model worker process (version 1).

Research models such as NExT-GPT, MiniGPT-4 and OpenFlamingo pin old torch/transformers
releases that cannot share an interpreter with mmeval. Each runs as a long-lived *worker*: a
script started with the model's own Python environment, which loads the model once and then
answers requests, one JSON object per line, over its stdin/stdout. The worker side is plain
stdlib (``scripts/worker_loop.py``); it never imports mmeval.

Every line is one JSON object with a ``type``; lines are ASCII (``ensure_ascii``), so the two
interpreters' locale encodings never matter. The worker's stdout carries protocol lines only:
``worker_loop`` moves file descriptor 1 onto stderr before the model code is imported, so a
stray ``print`` (or a C library writing to fd 1) lands in the log, not in the protocol.

Worker -> mmeval::

    {"type": "ready", "protocol": 1, "info": {...}}          once, after the model has loaded
    {"type": "fatal", "error": "...", "traceback": "..."}     loading failed; the worker exits
    {"type": "response", "id": "r3", "text": "...",
     "media": [{"modality": "image", "path": "/abs/out/r3/image-0.png", "format": "png",
                "meta": {"width": 512, "height": 512}}],
     "signal_tokens": {"image": true, "audio": false, "video": false} | null,
     "timings": {"total_s": 1.2, ...}, "meta": {...}, "finish_reason": "stop" | null,
     "error": null | "what went wrong with this request"}

mmeval -> worker::

    {"type": "generate", "id": "r3",
     "messages": [{"role": "user", "parts": [{"type": "text", "text": "..."},
                                            {"type": "image", "path": "/abs/in.png"}]}],
     "generation": {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 123, "stop": []},
     "output_modality": "text" | "image" | "audio" | "video",
     "output_dir": "/abs/dir/the/worker/writes/generated/media/into"}
    {"type": "shutdown"}                                      the worker exits cleanly

Rules: media travel as absolute file paths (media given as bytes are written to temp files
first); generated media are written by the worker under ``output_dir`` only (mmeval refuses
paths outside it) and read back into content-addressed artifacts; ``id`` is mmeval's own
counter, echoed back unchanged; a request that fails inside the worker is answered with
``error`` set (the worker keeps serving); ``signal_tokens`` reports, per output modality,
whether the model emitted the tokens that trigger its generator (NExT-GPT's ``[IMG0]``...),
or is null for models without any. Bump ``PROTOCOL_VERSION`` (here and in worker_loop.py)
on any incompatible change: a worker announcing another version is refused at handshake.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmeval.types import MODALITIES, MediaPart, Request, TextPart

PROTOCOL_VERSION = 1
MEDIA_TYPES = ("image", "audio", "video")
ROLES = ("system", "user", "assistant")


class ProtocolError(ValueError):
    """A line that is not a valid protocol message."""


@dataclass(frozen=True, slots=True)
class Ready:
    protocol: int
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Fatal:
    error: str
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class MediaOut:
    modality: str
    path: str
    format: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WorkerResponse:
    id: str
    text: str = ""
    media: tuple[MediaOut, ...] = ()
    signal_tokens: dict[str, bool] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    error: str | None = None


WorkerMessage = Ready | Fatal | WorkerResponse


# --------------------------------------------------------------------------- encoding (mmeval side)


def dumps(message: dict[str, Any]) -> str:
    """One protocol line (no trailing newline): compact, ASCII-only JSON."""
    return json.dumps(message, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def encode_messages(request: Request, path_of: Callable[[MediaPart], str]) -> list[dict[str, Any]]:
    """The request's messages with every media part replaced by a file path from ``path_of``
    (which may raise MediaError: the caller fails that request only)."""
    out: list[dict[str, Any]] = []
    for message in request.messages:
        parts: list[dict[str, Any]] = []
        for part in message.parts:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
            else:
                parts.append({"type": part.modality, "path": path_of(part)})
        out.append({"role": message.role, "parts": parts})
    return out


def generate_message(msg_id: str, messages: list[dict[str, Any]], request: Request, seed: int, output_dir: str) -> dict[str, Any]:
    gen = request.generation
    message = {
        "type": "generate",
        "id": msg_id,
        "messages": messages,
        "generation": {
            "max_new_tokens": int(gen.max_new_tokens),
            "temperature": float(gen.temperature),
            "top_p": float(gen.top_p),
            "seed": int(seed),
            "stop": list(gen.stop),
        },
        "output_modality": request.output_modality,
        "output_dir": output_dir,
    }
    check_generate(message)
    return message


SHUTDOWN: dict[str, Any] = {"type": "shutdown"}


# --------------------------------------------------------------------------- validation


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise ProtocolError(what)


def check_generate(msg: dict[str, Any]) -> None:
    """Validate a generate request (what mmeval sends; worker_loop checks the same rules)."""
    _expect(msg.get("type") == "generate", "not a generate message")
    _expect(isinstance(msg.get("id"), str) and bool(msg["id"]), "generate: 'id' must be a non-empty string")
    messages = msg.get("messages")
    _expect(isinstance(messages, list) and bool(messages), "generate: 'messages' must be a non-empty list")
    for m in messages:
        _expect(isinstance(m, dict) and m.get("role") in ROLES, f"generate: message role must be one of {ROLES}")
        _expect(isinstance(m.get("parts"), list), "generate: message 'parts' must be a list")
        for p in m["parts"]:
            _expect(isinstance(p, dict), "generate: a part must be an object")
            if p.get("type") == "text":
                _expect(isinstance(p.get("text"), str), "generate: text part needs a string 'text'")
            else:
                _expect(p.get("type") in MEDIA_TYPES, f"generate: part type must be text or one of {MEDIA_TYPES}, got {p.get('type')!r}")
                _expect(isinstance(p.get("path"), str) and bool(p["path"]), "generate: media part needs a 'path'")
    gen = msg.get("generation")
    _expect(isinstance(gen, dict), "generate: 'generation' must be an object")
    for key, kind in (("max_new_tokens", int), ("temperature", (int, float)), ("top_p", (int, float)), ("seed", int)):
        _expect(isinstance(gen.get(key), kind) and not isinstance(gen.get(key), bool), f"generate: generation.{key} is missing or mistyped")
    _expect(msg.get("output_modality") in MODALITIES, f"generate: output_modality must be one of {MODALITIES}")
    _expect(isinstance(msg.get("output_dir"), str) and bool(msg["output_dir"]), "generate: 'output_dir' must be a path")


def parse_line(line: str) -> WorkerMessage:
    """Decode and validate one line from a worker's stdout; ProtocolError says what is wrong."""
    text = line.strip()
    try:
        msg = json.loads(text)
    except json.JSONDecodeError:
        raise ProtocolError(f"not JSON: {_clip(text)!r}") from None
    _expect(isinstance(msg, dict), f"not a JSON object: {_clip(text)!r}")
    kind = msg.get("type")
    if kind == "ready":
        _expect(isinstance(msg.get("protocol"), int), "ready: 'protocol' must be an integer")
        info = msg.get("info", {})
        _expect(isinstance(info, dict), "ready: 'info' must be an object")
        return Ready(protocol=msg["protocol"], info=info)
    if kind == "fatal":
        return Fatal(error=str(msg.get("error") or "worker failed to start"), traceback=msg.get("traceback"))
    if kind == "response":
        return _response(msg)
    raise ProtocolError(f"unknown message type {kind!r} in {_clip(text)!r}")


def _response(msg: dict[str, Any]) -> WorkerResponse:
    _expect(isinstance(msg.get("id"), str), "response: 'id' must be a string")
    error = msg.get("error")
    _expect(error is None or isinstance(error, str), "response: 'error' must be null or a string")
    text = msg.get("text", "")
    _expect(isinstance(text, str), "response: 'text' must be a string")
    media = msg.get("media", [])
    _expect(isinstance(media, list), "response: 'media' must be a list")
    outs = []
    for item in media:
        _expect(isinstance(item, dict), "response: a media item must be an object")
        _expect(item.get("modality") in MEDIA_TYPES, f"response: media modality must be one of {MEDIA_TYPES}")
        _expect(isinstance(item.get("path"), str) and bool(item["path"]), "response: media item needs a 'path'")
        fmt = item.get("format") or item["path"].rsplit(".", 1)[-1]
        meta = item.get("meta", {})
        _expect(isinstance(meta, dict), "response: media 'meta' must be an object")
        outs.append(MediaOut(modality=item["modality"], path=item["path"], format=str(fmt), meta=meta))
    signal = msg.get("signal_tokens")
    _expect(
        signal is None or (isinstance(signal, dict) and all(k in MEDIA_TYPES and isinstance(v, bool) for k, v in signal.items())),
        "response: 'signal_tokens' must be null or an object of modality -> bool",
    )
    timings = msg.get("timings", {})
    _expect(
        isinstance(timings, dict) and all(isinstance(v, int | float) for v in timings.values()),
        "response: 'timings' must map names to numbers",
    )
    meta = msg.get("meta", {})
    _expect(isinstance(meta, dict), "response: 'meta' must be an object")
    finish = msg.get("finish_reason")
    _expect(finish is None or isinstance(finish, str), "response: 'finish_reason' must be null or a string")
    return WorkerResponse(
        id=msg["id"],
        text=text,
        media=tuple(outs),
        signal_tokens=signal,
        timings={k: float(v) for k, v in timings.items()},
        meta=meta,
        finish_reason=finish,
        error=error,
    )


def _clip(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[:n] + "..."
