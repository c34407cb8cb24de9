"""Shared machinery for adapters that call a hosted model over HTTP (OpenAI-compatible, Claude).

``ApiModel.generate`` turns a batch into payloads (media decoded and re-encoded up front, so a
bad image fails only its own sample), then runs one asyncio event loop over the batch: every
request is in flight at once, up to the ``concurrency`` cap (the runner's batch size is the
other cap). Each request is retried on its own:

* retried: HTTP 408, 429, 500, 502, 503, 504 and 529 (Anthropic's "overloaded"), connection
  errors (refused, reset, dropped mid-response), timeouts, and 2xx answers whose body is not
  the JSON the API promises;
* not retried: every other status (400, 401, 403, 404, 413, 422, ...) and redirects, which
  are never followed (a cross-origin redirect would carry the key elsewhere);
* delay before retry ``n`` (0-based) is full jitter, ``uniform(0, min(backoff_max,
  backoff * 2**n))`` from a seedable RNG; a ``Retry-After`` header (seconds or an HTTP date;
  also ``retry-after-ms``) on a retryable answer is a floor on that delay, capped at
  ``RETRY_AFTER_CAP_S``;
* after ``max_retries`` retries the request becomes a failed ``Response`` whose error names the
  cause and the attempt count: the runner counts it and never scores it. The words before the
  first colon are the kind run.json counts errors by: ``api timeout``, ``api connection error``
  (refused, or dropped before or during the answer), ``api HTTP <status> <reason>``, ``api
  invalid JSON`` (a 2xx body that does not parse: cut short, an HTML page), ``api malformed
  response`` (valid JSON without what the API promises, e.g. no choices), ``api client error``.

API keys are read from the environment inside ``generate`` and live only in local variables
and per-request headers. They never reach ``self``, ``args``, ``info()``, the fingerprint, a
log line or an error message; any text coming back from the server (errors and answers) is
scrubbed of the key in case the server echoes it.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import email.utils
import hashlib
import io
import ipaddress
import json
import logging
import math
import os
import random
import re
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import SplitResult, parse_qs, urlsplit, urlunsplit

import aiohttp  # the async HTTP client (pinned in constraints.txt)

from mmeval.models.base import Model, ModelArgsError, prepare_each
from mmeval.types import MediaError, MediaPart, Request, Response, TextPart

log = logging.getLogger("mmeval.models.api")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})
RETRY_AFTER_CAP_S = 600.0  # a server asking for longer than this is waited on for this long
REDACTED = "[REDACTED]"
ERROR_TEXT_LIMIT = 500  # characters of a server's error message kept in a sample's error
BODY_HEAD_LIMIT = 80  # bytes of a body that is not JSON quoted in the error (an HTML page from a proxy, a cut answer)
# Bump when the way requests are built changes (so cached responses of the old format are not
# reused): part of every API adapter's fingerprint.
PAYLOAD_FORMAT = 1
SECRET_QUERY = frozenset({"key", "api_key", "apikey", "api-key", "token", "access_token"})
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


# --------------------------------------------------------------------------- retry policy


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff: float = 1.0  # seconds; the jitter window before retry n is backoff * 2**n
    backoff_max: float = 60.0  # the window never grows past this

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0 = the first retry)."""
        window = min(self.backoff_max, self.backoff * 2 ** min(retry, 60))
        jitter = rng.uniform(0.0, window)
        if retry_after is not None:
            return max(min(retry_after, RETRY_AFTER_CAP_S), jitter)
        return jitter


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (delta-seconds or HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
            if math.isfinite(value):
                return max(0.0, value)
        except ValueError:
            pass
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
        return max(0.0, value) if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now_dt = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    return max(0.0, (when - now_dt).total_seconds())


# --------------------------------------------------------------------------- secrets


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced by [REDACTED]."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def scrub_obj(obj: Any, secrets: Sequence[str]) -> Any:
    """A JSON-like value with secrets scrubbed from every string in it."""
    if not any(secrets):
        return obj
    if isinstance(obj, str):
        return scrub(obj, secrets)
    if isinstance(obj, dict):
        return {scrub(str(k), secrets): scrub_obj(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_obj(v, secrets) for v in obj]
    return obj


# --------------------------------------------------------------------------- media


def _image_kind(raw: bytes) -> str | None:
    if raw[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if raw[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


def encode_image(part: MediaPart, max_side: int) -> tuple[str, bytes]:
    """(mime type, encoded bytes) of an image, its longest side at most ``max_side`` (0: no cap).

    PNG and JPEG files already within the cap are sent as they are (no generation loss); others
    are decoded, downscaled (Lanczos) and re-encoded: JPEG (quality 95) if the source was JPEG,
    else PNG. Decoding goes through ``MediaPart.load_image`` (corrupt-file and bomb guards), so
    a bad image is a MediaError for its sample only.
    """
    from PIL import Image

    raw = part.read_bytes()
    img = part.load_image()
    kind = _image_kind(raw)
    w, h = img.size
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    elif kind is not None and _mode(raw) in {"RGB", "L", "RGBA", "LA", "P"}:
        return f"image/{kind}", raw
    out = io.BytesIO()
    if kind == "jpeg":
        img.save(out, format="JPEG", quality=95)
        return "image/jpeg", out.getvalue()
    img.save(out, format="PNG")
    return "image/png", out.getvalue()


def _mode(raw: bytes) -> str | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw)) as im:
            return im.mode
    except Exception:
        return None


def audio_format(raw: bytes) -> str:
    """'wav' or 'mp3' from the file's magic bytes (what OpenAI's ``input_audio`` accepts)."""
    if raw[:4] == b"RIFF" and raw[8:12] == b"WAVE":
        return "wav"
    if raw[:3] == b"ID3" or (len(raw) > 1 and raw[0] == 0xFF and raw[1] & 0xE0 == 0xE0):
        return "mp3"
    raise MediaError("audio must be a WAV or MP3 file for the API's input_audio (got neither)")


class _MediaCache:
    """Recently encoded media by (sha256, setting), bounded by total bytes: an image asked
    about several times in a task (MME, POPE) is decoded and re-encoded once."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self.items: OrderedDict[tuple[str, int], tuple[str, str]] = OrderedDict()
        self.size = 0

    def get_image(self, part: MediaPart, max_side: int) -> tuple[str, str]:
        key = (part.sha256(), max_side)
        hit = self.items.get(key)
        if hit is not None:
            self.items.move_to_end(key)
            return hit
        mime, data = encode_image(part, max_side)
        value = (mime, base64.b64encode(data).decode("ascii"))
        self.items[key] = value
        self.size += len(value[1])
        while self.size > self.max_bytes and len(self.items) > 1:
            _, (_, old) = self.items.popitem(last=False)
            self.size -= len(old)
        return value


# --------------------------------------------------------------------------- outcomes


class MalformedResponse(ValueError):
    """A 2xx answer whose JSON lacks what the API promises (retried like invalid JSON)."""


def answer_keys(data: dict[str, Any], limit: int = 8) -> str:
    """The top-level keys an answer did have, for errors about the ones it lacks."""
    keys = [str(k)[:40] for k in list(data)[:limit]]
    more = ", ..." if len(data) > limit else ""
    return f"it has keys: {', '.join(keys)}{more}" if keys else "it is an empty object"


@dataclass
class Parsed:
    """What an adapter extracts from a successful answer."""

    text: str
    finish_reason: str | None
    model: str | None
    usage: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Attempt:
    parsed: Parsed | None = None
    error: str | None = None  # "HTTP 500: message", "timeout: ...", ...
    retryable: bool = False
    retry_after: float | None = None


@dataclass
class Prepared:
    """A request ready to send: its JSON body (serialised once, reused by every retry)."""

    body: bytes
    post: Any = None  # adapter data for post-processing the answer (e.g. client-side stops)


# --------------------------------------------------------------------------- the adapter base


COMMON_ARGS = frozenset(
    {"model", "base_url", "api_key_env", "concurrency", "timeout", "max_retries", "backoff", "backoff_max", "max_image_side", "seed"}
)


def _int_arg(args: dict[str, str], name: str, default: int, lo: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ModelArgsError(f"model arg {name} must be an integer, got {raw!r}") from exc
    if value < lo:
        raise ModelArgsError(f"model arg {name} must be >= {lo}, got {value}")
    return value


def _float_arg(args: dict[str, str], name: str, default: float, lo: float, strict: bool = False) -> float:
    raw = args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ModelArgsError(f"model arg {name} must be a number, got {raw!r}") from exc
    if not math.isfinite(value) or value < lo or (strict and value == lo):
        raise ModelArgsError(f"model arg {name} must be {'>' if strict else '>='} {lo}, got {raw!r}")
    return value


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ApiModel(Model):
    """Base class of the HTTP API adapters. Subclasses set the class variables and implement
    ``build_body`` (request -> JSON-able payload), ``headers`` (key -> headers),
    ``parse_answer`` (JSON -> Parsed) and ``error_text`` (error JSON -> message)."""

    default_base_url: ClassVar[str] = ""
    default_key_env: ClassVar[str] = ""
    endpoint: ClassVar[str] = ""  # appended to base_url
    key_required: ClassVar[bool] = True
    allowed_args = COMMON_ARGS

    def __init__(self, **args: str) -> None:
        super().__init__(**args)
        if not args.get("model"):
            raise ModelArgsError(f"{self.name} needs --model-args model=NAME (the API's model id)")
        self.model_id = args["model"]
        parts = self._base_url(args)
        self.url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + self.endpoint, parts.query, ""))
        self.host = parts.hostname
        self.key_env = self._key_env(args)
        self.concurrency = _int_arg(args, "concurrency", 16, 1)
        self.timeout = _float_arg(args, "timeout", 120.0, 0.0, strict=True)
        self.policy = RetryPolicy(
            max_retries=_int_arg(args, "max_retries", 5, 0),
            backoff=_float_arg(args, "backoff", 1.0, 0.0),
            backoff_max=_float_arg(args, "backoff_max", 60.0, 0.0),
        )
        self.max_image_side = _int_arg(args, "max_image_side", 1024, 0)
        seed = args.get("seed")
        self.rng = random.Random(_int_arg(args, "seed", 0, 0) if seed is not None else None)
        self._media = _MediaCache()
        self.served_models: set[str] = set()
        self.stats = {"requests": 0, "attempts": 0, "failed": 0}

    @classmethod
    def check_args(cls, args: dict[str, str]) -> None:
        """Unknown args, and a key where none belongs (in base_url, or given as api_key_env),
        are refused here: the runner calls this before it writes run.json, which records the
        args and the command line, so a refused key never reaches a file."""
        super().check_args(args)
        cls._base_url(args)
        cls._key_env(args)

    @classmethod
    def _base_url(cls, args: dict[str, str]) -> SplitResult:
        base = (args.get("base_url") or cls.default_base_url).rstrip("/")
        parts = urlsplit(base)
        if parts.username or parts.password:  # before quoting the URL in any message
            raise ModelArgsError(f"{cls.name}: base_url must not carry credentials; put the key in the variable named by api_key_env")
        if SECRET_QUERY & {k.lower() for k in parse_qs(parts.query)}:
            raise ModelArgsError(f"{cls.name}: base_url must not carry a key in its query; use the variable named by api_key_env")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ModelArgsError(f"{cls.name}: base_url must be an http(s) URL, got {base!r}")
        return parts

    @classmethod
    def _key_env(cls, args: dict[str, str]) -> str:
        key_env = args.get("api_key_env") or cls.default_key_env
        if not ENV_NAME.fullmatch(key_env):  # the value is not quoted: it may be the key itself
            raise ModelArgsError(f"{cls.name}: api_key_env is the NAME of an environment variable (e.g. {cls.default_key_env})")
        return key_env

    # ----------------------------------------------------------------- identity

    def fingerprint(self) -> str:
        """Only what shapes the answers: the endpoint, the model, the image cap and the payload
        format. Concurrency, timeouts, retries and the key's variable name do not change
        answers, so changing them keeps the cache."""
        payload = {
            "name": self.name,
            "url": self.url,
            "model": self.model_id,
            "max_image_side": self.max_image_side,
            "payload_format": PAYLOAD_FORMAT,
            "extra": self.fingerprint_extra(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def info(self) -> dict[str, Any]:
        return {
            "api": self.name,
            "host": self.host,
            "model": self.model_id,
            "served_models": sorted(self.served_models),  # the versions the API said answered
            "api_key_env": self.key_env,
            "max_image_side": self.max_image_side,
            "concurrency": self.concurrency,
            "timeout_s": self.timeout,
            "max_retries": self.policy.max_retries,
            "stats": dict(self.stats),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model_id!r}, host={self.host!r})"

    # ----------------------------------------------------------------- adapter hooks

    def build_body(self, req: Request) -> tuple[dict[str, Any], Any]:
        raise NotImplementedError

    def headers(self, key: str | None) -> dict[str, str]:
        raise NotImplementedError

    def parse_answer(self, data: Any) -> Parsed:
        raise NotImplementedError

    def error_text(self, data: Any) -> str | None:
        """The human message inside an error body (None: use the raw text)."""
        return None

    def postprocess(self, parsed: Parsed, post: Any) -> Parsed:
        return parsed

    def image_b64(self, part: MediaPart) -> tuple[str, str]:
        """(mime type, base64) of an image part, downscaled to ``max_image_side``."""
        return self._media.get_image(part, self.max_image_side)

    # ----------------------------------------------------------------- generation

    def _prepare(self, req: Request) -> Prepared:
        body, post = self.build_body(req)
        return Prepared(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(), post)

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        # Read per call, never stored. Stripped: a trailing newline (``export K=$(cat file)``)
        # would otherwise make an invalid header whose error message could quote the key.
        key = (os.environ.get(self.key_env) or "").strip() or None
        ready, failed = prepare_each(requests, self._prepare)
        if key is None and self.key_required and ready:
            msg = f"api auth: environment variable {self.key_env} is not set (no request sent)"
            return [failed.get(r.id) or Response.failed(r.id, msg) for r in requests]
        done: dict[str, Response] = {}
        if ready:
            done = _run_coroutine(lambda: self._run_batch(ready, key))
        return [failed.get(r.id) or done.get(r.id) or Response.failed(r.id, "api: no response") for r in requests]

    async def _run_batch(self, ready: list[tuple[Request, Prepared]], key: str | None) -> dict[str, Response]:
        limit = max(1, min(self.concurrency, len(ready)))
        sem = asyncio.Semaphore(limit)
        connector = aiohttp.TCPConnector(limit=limit)
        proxy, proxy_auth = _proxy_for(self.url)
        # trust_env stays off: proxies come from _proxy_for, and aiohttp's netrc lookup would
        # clash with our own auth header.
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            ctx = _Ctx(session, sem, self.headers(key), [key] if key else [], proxy, proxy_auth)
            out = await asyncio.gather(*(self._call(ctx, req, prep) for req, prep in ready))
        return {r.id: r for r in out}

    async def _call(self, ctx: _Ctx, req: Request, prep: Prepared) -> Response:
        """One request with retries; never raises (a failure is a failed Response)."""
        self.stats["requests"] += 1
        start = time.perf_counter()
        attempts = 0
        try:
            while True:
                attempts += 1
                self.stats["attempts"] += 1
                async with ctx.sem:
                    t0 = time.perf_counter()
                    outcome = await self._attempt(ctx, prep.body)
                    latency = time.perf_counter() - t0
                if outcome.parsed is not None:
                    return self._success(req, prep, outcome.parsed, attempts, latency, time.perf_counter() - start, ctx.secrets)
                error = scrub(outcome.error or "unknown error", ctx.secrets)
                if not outcome.retryable:
                    hint = ""
                    if not ctx.secrets and error.startswith(("HTTP 401", "HTTP 403")):
                        hint = f"; environment variable {self.key_env} is not set"
                    return self._failure(req, f"api {error} (not retried; {attempts} attempt{hint})", attempts, start)
                if attempts > self.policy.max_retries:
                    return self._failure(req, f"api {error} (gave up after {attempts} attempts)", attempts, start)
                delay = self.policy.delay(attempts - 1, self.rng, outcome.retry_after)
                log.debug("%s: %s: %s; retry %d in %.2fs", self.name, req.id, error, attempts, delay)
                await asyncio.sleep(delay)
        except Exception as exc:  # a bug or an unforeseen client error: fail this request only
            msg = scrub(f"{type(exc).__name__}: {exc}", ctx.secrets)
            return self._failure(req, f"api client error: {msg} (after {attempts} attempts)", attempts, start)

    def _success(
        self, req: Request, prep: Prepared, parsed: Parsed, attempts: int, latency: float, total: float, secrets: list[str]
    ) -> Response:
        parsed = self.postprocess(parsed, prep.post)
        if parsed.model:
            self.served_models.add(scrub(parsed.model, secrets))
        meta: dict[str, Any] = {"model": parsed.model, "usage": parsed.usage, "attempts": attempts, **parsed.extra}
        return Response(
            id=req.id,
            text=scrub(parsed.text, secrets),
            finish_reason=parsed.finish_reason,
            timings={"latency_s": round(latency, 6), "total_s": round(total, 6)},
            meta=scrub_obj(meta, secrets),
        )

    def _failure(self, req: Request, error: str, attempts: int, start: float) -> Response:
        self.stats["failed"] += 1
        resp = Response.failed(req.id, error)
        resp.meta = {"attempts": attempts}
        resp.timings = {"total_s": round(time.perf_counter() - start, 6)}
        return resp

    async def _attempt(self, ctx: _Ctx, body: bytes) -> _Attempt:
        try:
            async with asyncio.timeout(self.timeout):
                async with ctx.session.post(
                    self.url, data=body, headers=ctx.headers, allow_redirects=False, proxy=ctx.proxy, proxy_auth=ctx.proxy_auth
                ) as resp:
                    raw = await resp.read()
                    status, reason, headers = resp.status, resp.reason or "", resp.headers
        except TimeoutError:
            return _Attempt(error=f"timeout: no complete answer within {self.timeout:g}s", retryable=True)
        except aiohttp.InvalidURL as exc:
            return _Attempt(error=f"bad URL: {exc}")
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            return _Attempt(error=f"connection error: {_connection_problem(exc)}", retryable=True)
        except aiohttp.ClientError as exc:
            return _Attempt(error=f"client error: {_describe(exc)}", retryable=True)
        if 200 <= status < 300:
            try:
                data = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                # Its own error kind (not "malformed response"): a truncated or non-JSON body
                # points at the transport or a proxy, a wrong shape at the server's API.
                head = " ".join(raw[:BODY_HEAD_LIMIT].decode("utf-8", errors="replace").split())
                more = "..." if len(raw) > BODY_HEAD_LIMIT else ""
                return _Attempt(
                    error=f"invalid JSON: HTTP {status} body is not valid JSON ({exc}; {len(raw)} bytes: {head!r}{more})", retryable=True
                )
            try:
                return _Attempt(parsed=self.parse_answer(data))
            except MalformedResponse as exc:  # the adapter's own message says what is missing
                return _Attempt(error=f"malformed response: {exc}", retryable=True)
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                return _Attempt(error=f"malformed response: unexpected answer shape ({_describe(exc)})", retryable=True)
        message = self._error_message(raw)
        if 300 <= status < 400:
            where = headers.get("Location", "?")
            return _Attempt(error=f"HTTP {status} {reason}: redirect to {where} not followed (check base_url)")
        retryable = status in RETRY_STATUSES
        retry_after = parse_retry_after(headers) if retryable else None
        return _Attempt(error=f"HTTP {status} {reason}: {message}".rstrip(": "), retryable=retryable, retry_after=retry_after)

    def _error_message(self, raw: bytes) -> str:
        text = raw.decode("utf-8", errors="replace")
        try:
            msg = self.error_text(json.loads(text))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            msg = None
        msg = (msg if isinstance(msg, str) and msg else text).strip()
        msg = " ".join(msg.split())  # one line: error summaries group by prefix
        return msg[:ERROR_TEXT_LIMIT] + ("..." if len(msg) > ERROR_TEXT_LIMIT else "")


def _describe(exc: BaseException) -> str:
    """``Type: message``, or the type alone when the exception carries no message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _connection_problem(exc: BaseException) -> str:
    """What went wrong on the wire, in words: aiohttp's own messages ("Server disconnected")
    do not say whether an answer was under way."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"connection dropped: the server closed it without answering ({_describe(exc)})"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"connection dropped in the middle of the answer ({_describe(exc)})"
    return _describe(exc)


@dataclass
class _Ctx:
    session: Any
    sem: asyncio.Semaphore
    headers: dict[str, str] = field(repr=False)
    secrets: list[str] = field(repr=False)
    proxy: str | None = None
    proxy_auth: Any = field(default=None, repr=False)


def _proxy_for(url: str) -> tuple[str | None, Any]:
    """The proxy from HTTP(S)_PROXY / NO_PROXY for ``url`` (never for loopback), with its
    credentials split out as aiohttp wants them."""
    parts = urlsplit(url)
    if _is_loopback(parts.hostname) or urllib.request.proxy_bypass(parts.hostname or ""):
        return None, None
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy:
        return None, None
    p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    auth = aiohttp.BasicAuth(p.username, p.password or "") if p.username else None
    netloc = p.hostname + (f":{p.port}" if p.port else "") if p.hostname else p.netloc
    return urlunsplit((p.scheme, netloc, p.path, "", "")), auth


def _run_coroutine(make: Any) -> Any:
    """Run ``make()`` to completion on a fresh event loop; from a thread if this one already
    runs a loop (a notebook), since a loop cannot be nested."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def message_text_only(parts: Sequence[Any], where: str) -> str:
    """The text of a message that may only hold text (e.g. a system prompt)."""
    if any(not isinstance(p, TextPart) for p in parts):
        raise MediaError(f"{where} may hold text only")
    return "".join(p.text for p in parts)


def truncate_at_stops(parsed: Parsed, stops: Sequence[str]) -> Parsed:
    """Cut the answer at the first stop sequence the server was not told about (APIs limit
    how many they take, and Claude refuses whitespace-only ones); the sequence is dropped, as
    the APIs do."""
    cut = min((i for i in (parsed.text.find(s) for s in stops if s) if i >= 0), default=-1)
    if cut >= 0:
        parsed.text = parsed.text[:cut]
        parsed.finish_reason = "stop"
    return parsed
