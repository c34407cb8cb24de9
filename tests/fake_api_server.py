"""A real HTTP server on 127.0.0.1 speaking OpenAI chat completions and Anthropic messages,
with scripted misbehaviour, for testing the API adapters end to end.

Behaviour per request comes from the global queue (``server.queue``, consumed first) or from a
script in the prompt text: ``[[500,500,ok]]`` means "answer the first attempt of this prompt
with a 500, the second with a 500, then normally"; past the end the last step repeats, so
``[[500]]`` always fails. Attempts are counted per (endpoint, prompt text). Steps:

    ok            a normal answer: the word after ``say:`` in the prompt (else "unknown"); a
                  literal backslash-n in it becomes a newline
    okkey         a normal answer that echoes the API key the client sent
    429 / 429:N   rate limited, with ``Retry-After: N`` (seconds)
    429:date:N    rate limited, ``Retry-After`` as an HTTP date N seconds ahead
    400 401 403 404 500 502 503 504 529
                  that status with an error body in the endpoint's format; 401 echoes the key
    echokey       a 500 whose message echoes the key the client sent
    stall         answer only after ``stall_s`` (past the client's timeout)
    slow:N        answer after N seconds
    drop          close the connection without answering
    cut           a 200 whose body stops short of its Content-Length, then the connection closes
    badjson       a 200 whose body is truncated JSON
    nochoices     a 200 with valid JSON lacking choices / content

Every request is recorded (path, headers, JSON body, prompt text, step, arrival time), and the
largest number in flight at once is kept in ``max_in_flight``.
"""

from __future__ import annotations

import email.utils
import json
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SCRIPT = re.compile(r"\[\[([^\]]*)\]\]")
SAY = re.compile(r"say:(\S+)")
REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests", 529: "Overloaded"}


@dataclass
class Record:
    path: str
    headers: dict[str, str]
    body: Any
    text: str
    step: str
    attempt: int
    t_arrival: float
    t_done: float | None = None
    status: int | None = None


@dataclass
class FakeApiServer:
    stall_s: float = 5.0
    delay_s: float = 0.0  # added to every request (to overlap requests in concurrency tests)
    model_suffix: str = "-2024-05-13"  # the "version" the API reports: <requested model><suffix>
    records: list[Record] = field(default_factory=list)
    queue: deque[str] = field(default_factory=deque)
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._in_flight = 0
        self._attempts: Counter[tuple[str, str]] = Counter()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FakeApiServer:
        handler = type("Handler", (_Handler,), {"api": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes stalled handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ----------------------------------------------------------------- inspection

    def matching(self, needle: str) -> list[Record]:
        """Records whose prompt text contains ``needle``, in arrival order."""
        with self._lock:
            return [r for r in self.records if needle in r.text]

    # ----------------------------------------------------------------- behaviour

    def _begin(self, path: str, headers: dict[str, str], body: Any, text: str) -> Record:
        with self._lock:
            key = (path, text)
            attempt = self._attempts[key]
            self._attempts[key] += 1
            if self.queue:
                step = self.queue.popleft()
            else:
                m = SCRIPT.search(text)
                steps = [s.strip() for s in m.group(1).split(",")] if m else ["ok"]
                step = steps[min(attempt, len(steps) - 1)] or "ok"
            rec = Record(path, headers, body, text, step, attempt + 1, time.monotonic())
            self.records.append(rec)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            return rec

    def _end(self, rec: Record, status: int | None) -> None:
        with self._lock:
            self._in_flight -= 1
            rec.t_done = time.monotonic()
            rec.status = status

    def wait(self, seconds: float) -> None:
        self._stop.wait(seconds)


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) drops connections when a whole batch connects at once:
    # the client then sees a timeout the test never planted.
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    api: FakeApiServer
    protocol_version = "HTTP/1.1"
    timeout = 10  # idle keep-alive connections end by themselves

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        anthropic = self.path.rstrip("/").endswith("/messages")
        if not anthropic and not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        text = _prompt_text(body, anthropic)
        rec = self.api._begin(self.path, headers, body, text)
        status: int | None = None
        try:
            status = self._respond(rec, body, headers, anthropic)
        except OSError:
            self.close_connection = True  # the client went away (timeout): nothing to answer
        finally:
            self.api._end(rec, status)

    def _respond(self, rec: Record, body: Any, headers: dict[str, str], anthropic: bool) -> int | None:
        api = self.api
        step = rec.step
        key = headers.get("x-api-key", "") if anthropic else headers.get("authorization", "").removeprefix("Bearer ")
        if api.delay_s:
            api.wait(api.delay_s)
        if step == "stall":
            api.wait(api.stall_s)
            step = "ok"
        elif step.startswith("slow:"):
            api.wait(float(step.split(":", 1)[1]))
            step = "ok"
        if step == "drop":
            self.close_connection = True
            return None
        if step == "cut":
            data = json.dumps(_answer(body, "cut", anthropic, api.model_suffix)).encode()
            self.close_connection = True
            return self._send_raw(200, data[: len(data) // 2], length=len(data))
        if step == "badjson":
            return self._send_raw(200, b'{"id": "x", "choices": [{"message": {"content": "re')
        if step == "nochoices":
            return self._send_json(200, {"id": "x", "object": "surprise"})
        if step in ("ok", "okkey"):
            said = SAY.search(rec.text)
            answer = said.group(1).replace("\\n", "\n") if said else "unknown"
            if step == "okkey":
                answer = f"{answer} (your key is {key})"
            return self._send_json(200, _answer(body, answer, anthropic, api.model_suffix))
        if step == "echokey":
            return self._send_json(500, _error(500, f"internal error while checking key {key}", anthropic))
        status, _, arg = step.partition(":")
        code = int(status)
        extra: dict[str, str] = {}
        if arg.startswith("date:"):
            extra["Retry-After"] = email.utils.formatdate(time.time() + float(arg[5:]), usegmt=True)
        elif arg:
            extra["Retry-After"] = arg
        message = f"Incorrect API key provided: {key}" if code == 401 else f"scripted {code}"
        return self._send_json(code, _error(code, message, anthropic), extra)

    def _send_json(self, status: int, obj: Any, extra: dict[str, str] | None = None) -> int:
        return self._send_raw(status, json.dumps(obj).encode(), extra)

    def _send_raw(self, status: int, data: bytes, extra: dict[str, str] | None = None, length: int | None = None) -> int:
        """Send ``data``; ``length``: the Content-Length to announce instead (a cut answer)."""
        self.send_response(status, REASONS.get(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data) if length is None else length))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        return status


def _prompt_text(body: Any, anthropic: bool) -> str:
    if not isinstance(body, dict):
        return ""
    out: list[str] = []
    if anthropic and isinstance(body.get("system"), str):
        out.append(body["system"])
    for m in body.get("messages") or []:
        content = m.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.extend(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "\n".join(out)


def _answer(body: Any, answer: str, anthropic: bool, suffix: str) -> dict[str, Any]:
    model = f"{(body or {}).get('model', 'fake')}{suffix}"
    if anthropic:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": answer}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 11, "output_tokens": 1},
        }
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 1, "total_tokens": 12},
    }


def _error(code: int, message: str, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        kind = {401: "authentication_error", 429: "rate_limit_error", 529: "overloaded_error"}.get(code, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": "invalid_request_error" if code < 500 else "server_error", "code": code}}
