"""The worker side of mmeval's JSON-lines protocol (see mmeval/models/workers/protocol.py).

This file runs under *another* Python environment (the model's own, with its pinned torch and
transformers), so it uses the standard library only, never imports mmeval, and stays valid
Python 3.8 (NExT-GPT's environment; ruff checks this folder with target-version py38). A worker script
sits in the same directory and does::

    from worker_loop import serve

    def load(config):            # config: the JSON object mmeval passed as argv[1]
        model = ...              # load once
        return handle, {"model": "...", "versions": {...}}

    def handle(request):         # one generate message -> result fields
        return {"text": "...", "media": [...], "signal_tokens": None, "meta": {}, "timings": {}}

    if __name__ == "__main__":
        raise SystemExit(serve(load))

``serve`` takes the real stdout for protocol lines and points file descriptor 1 (and
``sys.stdout``) at stderr *before* ``load`` runs, so anything the model code prints, from
Python or from C, goes to mmeval's log instead of corrupting the protocol. It answers every
request, turning an exception into that request's ``error``; it exits on ``shutdown`` or when
its stdin closes (mmeval went away).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Dict

PROTOCOL_VERSION = 1
MEDIA_TYPES = ("image", "audio", "video")
MODALITIES = ("text", *MEDIA_TYPES)
ROLES = ("system", "user", "assistant")

Handler = Callable[[Dict[str, Any]], Dict[str, Any]]


class RequestError(Exception):
    """A request this worker cannot serve (e.g. a modality the model does not take)."""


class _Channel:
    """The protocol channel: the original stdout, line-buffered, ASCII JSON only."""

    def __init__(self) -> None:
        sys.stdout.flush()
        fd = os.dup(1)
        os.dup2(2, 1)  # fd 1 (C-level writes included) now goes to stderr
        self._out = os.fdopen(fd, "w", encoding="ascii", buffering=1, newline="\n")
        sys.stdout = sys.stderr

    def send(self, message: dict) -> None:
        self._out.write(json.dumps(message, ensure_ascii=True, separators=(",", ":"), allow_nan=False) + "\n")
        self._out.flush()


def check_request(msg: Any) -> str | None:
    """Why a generate message is invalid, or None (the same rules as protocol.check_generate)."""
    if not isinstance(msg, dict) or msg.get("type") != "generate":
        return "not a generate message"
    if not isinstance(msg.get("id"), str) or not msg["id"]:
        return "'id' must be a non-empty string"
    messages = msg.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("parts"), list):
            return f"each message needs a role in {ROLES} and a list of parts"
        for p in m["parts"]:
            if not isinstance(p, dict):
                return "a part must be an object"
            if p.get("type") == "text":
                if not isinstance(p.get("text"), str):
                    return "text part needs a string 'text'"
            elif p.get("type") not in MEDIA_TYPES or not isinstance(p.get("path"), str) or not p["path"]:
                return f"media part needs a type in {MEDIA_TYPES} and a 'path'"
    gen = msg.get("generation")
    if not isinstance(gen, dict):
        return "'generation' must be an object"
    for key in ("max_new_tokens", "temperature", "top_p", "seed"):
        if not isinstance(gen.get(key), (int, float)) or isinstance(gen.get(key), bool):
            return f"generation.{key} is missing or mistyped"
    if msg.get("output_modality") not in MODALITIES:
        return f"output_modality must be one of {MODALITIES}"
    if not isinstance(msg.get("output_dir"), str) or not msg["output_dir"]:
        return "'output_dir' must be a path"
    return None


def response(msg_id: str, result: dict | None = None, error: str | None = None, total_s: float = 0.0) -> dict:
    """A response message from a handler's result (or an error)."""
    result = result or {}
    timings = {k: float(v) for k, v in (result.get("timings") or {}).items()}
    timings["total_s"] = round(total_s, 6)
    return {
        "type": "response",
        "id": msg_id,
        "text": str(result.get("text") or ""),
        "media": list(result.get("media") or []),
        "signal_tokens": result.get("signal_tokens"),
        "timings": timings,
        "meta": dict(result.get("meta") or {}),
        "finish_reason": result.get("finish_reason"),
        "error": error,
    }


def text_of(message: dict) -> str:
    """The concatenated text parts of one protocol message."""
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


def media_of(request: dict, modality: str | None = None) -> list[str]:
    """Paths of the request's media parts (of one modality), in order."""
    return [
        p["path"] for m in request["messages"] for p in m["parts"] if p["type"] != "text" and (modality is None or p["type"] == modality)
    ]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) where installed."""
    import random

    random.seed(seed)
    try:
        import numpy

        numpy.random.seed(seed % (2**32))
    except ImportError:
        pass
    try:
        import torch

        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
    except ImportError:
        pass


def versions(*modules: str) -> dict[str, str | None]:
    """Installed versions of the named distributions (and Python), for the ready info."""
    from importlib import metadata

    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in modules:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 2000 else text[:2000] + "..."


def serve(load: Callable[[dict], tuple[Handler, dict]], argv: list[str] | None = None) -> int:
    """Load the model, announce ready, answer requests until shutdown or end of stdin."""
    argv = sys.argv if argv is None else argv
    channel = _Channel()
    try:
        config = json.loads(argv[1]) if len(argv) > 1 else {}
        if not isinstance(config, dict):
            raise ValueError("the worker config (argv[1]) must be a JSON object")
        handler, info = load(config)
    except BaseException as exc:  # report every load failure, even SystemExit from argparse-style code
        traceback.print_exc(file=sys.stderr)
        channel.send({"type": "fatal", "error": _error_text(exc), "traceback": traceback.format_exc()[-4000:]})
        return 1
    channel.send({"type": "ready", "protocol": PROTOCOL_VERSION, "info": info})

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError as exc:
            channel.send(response("", error=f"request line is not JSON: {exc}"))
            continue
        if isinstance(msg, dict) and msg.get("type") == "shutdown":
            break
        msg_id = msg.get("id") if isinstance(msg, dict) and isinstance(msg.get("id"), str) else ""
        problem = check_request(msg)
        if problem:
            channel.send(response(msg_id, error=f"invalid request: {problem}"))
            continue
        start = time.perf_counter()
        try:
            os.makedirs(msg["output_dir"], exist_ok=True)
            result = handler(msg)
            reply = response(msg_id, result, total_s=time.perf_counter() - start)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            reply = response(msg_id, error=_error_text(exc), total_s=time.perf_counter() - start)
        sys.stderr.flush()
        try:
            channel.send(reply)
        except (TypeError, ValueError) as exc:  # a handler returned something JSON cannot carry
            channel.send(response(msg_id, error=f"worker result is not JSON-serialisable: {exc}"))
    return 0
