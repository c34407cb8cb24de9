"""``WorkerModel``: the base adapter for models served by a worker process in their own env.

A subclass names its worker script, its extra model args and how they become the worker's
config; everything else is shared:

* model args ``python`` (the interpreter of the model's environment, required), ``repo`` (the
  model's source checkout, required), ``timeout`` (seconds per request, default 600),
  ``startup_timeout`` (seconds to load, default 1800), ``max_restarts`` (default 2). Paths
  are taken relative to mmeval's working directory and sent to the worker as absolute paths
  (the worker runs inside the repository).
* Construction only checks arguments (paths exist, numbers parse); the worker starts on the
  first ``generate``, so a run served from the response cache never loads the model.
* Each Request becomes one generate message: media given as paths are passed as absolute
  paths, media given as bytes are written to a temp file first; generated files come back as
  ``Artifact.from_file`` artifacts (the runner then stores them content-addressed) and the
  per-request temp folders are removed. ``Response.meta["signal_tokens"]`` carries the
  worker's signal-token report; the worker's timings become the response's timings.
* A request the worker could not serve (its error, a crash, a timeout) becomes
  ``Response.failed`` with the worker's message, stderr tail and log path; a worker that
  cannot start at all raises ``WorkerStartError`` out of ``generate``.
* ``fingerprint`` covers the adapter, its worker config (checkpoints, generation settings),
  the worker script version and the repository's git commit; ``info`` adds the worker's
  ready info (checkpoint, library versions) once it has started.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from mmeval.models.base import Model, ModelArgsError, sample_seed
from mmeval.models.hf_decoding import truncate_at_stop
from mmeval.models.workers.process import WorkerProcess, WorkerSpec
from mmeval.models.workers.protocol import PROTOCOL_VERSION, ProtocolError, WorkerResponse, encode_messages, generate_message
from mmeval.types import Artifact, MediaError, MediaPart, Request, Response

SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"
COMMON_ARGS = frozenset({"python", "repo", "timeout", "startup_timeout", "max_restarts"})

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG", ".png"),
    (0, b"\xff\xd8\xff", ".jpg"),
    (0, b"GIF8", ".gif"),
    (0, b"BM", ".bmp"),
    (8, b"WEBP", ".webp"),
    (8, b"WAVE", ".wav"),
    (0, b"fLaC", ".flac"),
    (0, b"OggS", ".ogg"),
    (0, b"ID3", ".mp3"),
    (4, b"ftyp", ".mp4"),
    (0, b"\x1aE\xdf\xa3", ".webm"),
)


def guess_suffix(data: bytes) -> str:
    """A file suffix from magic bytes: model loaders often dispatch on the extension."""
    for offset, magic, suffix in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return suffix
    return ".bin"


def git_commit(path: Path) -> str | None:
    """The commit of a git checkout whose files include ``path``; None if it is not one."""
    try:
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20)
        tracked = subprocess.run(["git", "-C", str(path), "ls-files", "--", "."], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    # An untracked folder inside some other checkout is not "at" that checkout's commit.
    if head.returncode != 0 or tracked.returncode != 0 or not tracked.stdout.strip():
        return None
    return head.stdout.strip() or None


class WorkerModel(Model):
    """Base adapter for a model served by a worker process in its own Python environment."""

    script: ClassVar[str] = ""  # file name under mmeval/models/workers/scripts/
    worker_version: ClassVar[int] = 1  # bump when the script's outputs change (cached responses)
    allowed_args: ClassVar[frozenset[str]] = COMMON_ARGS

    def __init__(self, **args: str) -> None:
        super().__init__(**args)
        self.python = self._python(args.get("python"))
        self.repo = self.required_dir(args, "repo", "Point it at the model's source checkout.")
        self.timeout = self.float_arg(args, "timeout", 600.0, minimum=0.001)
        self.startup_timeout = self.float_arg(args, "startup_timeout", 1800.0, minimum=0.001)
        self.max_restarts = self.int_arg(args, "max_restarts", 2, minimum=0)
        self.code_dir = self.locate_code(self.repo)
        self.worker_config = self.build_config(args)
        self.repo_commit = git_commit(self.repo)
        self._process: WorkerProcess | None = None
        self._tmp: Path | None = None
        self._ids = itertools.count()

    # ----------------------------------------------------------------- subclass hooks

    def locate_code(self, repo: Path) -> Path:
        """The folder the worker runs in and imports from (default: the repo itself)."""
        return repo

    def build_config(self, args: dict[str, str]) -> dict[str, Any]:
        """Validate the model-specific args; the JSON config the worker script receives."""
        return {}

    def refuse(self, request: Request) -> str | None:
        """Why this model cannot serve a request (checked before it reaches the worker)."""
        return None

    def clean_text(self, text: str) -> str:
        return text.strip()

    # ----------------------------------------------------------------- argument helpers

    def _python(self, value: str | None) -> str:
        if not value:
            raise ModelArgsError(f"{self.name}: model arg python= is required: the python executable of the model's own environment")
        if os.sep in value or (os.altsep and os.altsep in value):
            path = os.path.abspath(os.path.expanduser(value))  # not resolve(): a venv's python is a symlink
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                raise ModelArgsError(f"{self.name}: python={value} is not an executable file")
            return path
        found = shutil.which(value)
        if found is None:
            raise ModelArgsError(f"{self.name}: python={value} is not on PATH; give the full path of the environment's python")
        return found

    def path_arg(self, args: dict[str, str], key: str, default: Path | None = None, *, kind: str = "file", hint: str = "") -> Path | None:
        """An existing file or folder from args (or the default location), as an absolute path."""
        raw = args.get(key)
        path = Path(os.path.abspath(os.path.expanduser(raw))) if raw else default
        if path is None:
            return None
        ok = path.is_file() if kind == "file" else path.is_dir()
        if not ok:
            where = f"{key}={raw}" if raw else f"the default {key} location {path}"
            raise ModelArgsError(f"{self.name}: {where} is not an existing {kind}. {hint}".strip())
        return path

    def required_dir(self, args: dict[str, str], key: str, hint: str = "") -> Path:
        if not args.get(key):
            raise ModelArgsError(f"{self.name}: model arg {key}= is required. {hint}".strip())
        path = self.path_arg(args, key, kind="folder", hint=hint)
        assert path is not None
        return path

    def float_arg(self, args: dict[str, str], key: str, default: float, *, minimum: float = 0.0) -> float:
        if key not in args:
            return default
        try:
            value = float(args[key])
        except ValueError:
            raise ModelArgsError(f"{self.name}: {key} must be a number, got {args[key]!r}") from None
        if value < minimum or value != value:
            raise ModelArgsError(f"{self.name}: {key} must be >= {minimum:g}, got {args[key]!r}")
        return value

    def int_arg(self, args: dict[str, str], key: str, default: int, *, minimum: int = 0) -> int:
        if key not in args:
            return default
        try:
            value = int(args[key])
        except ValueError:
            raise ModelArgsError(f"{self.name}: {key} must be an integer, got {args[key]!r}") from None
        if value < minimum:
            raise ModelArgsError(f"{self.name}: {key} must be >= {minimum}, got {value}")
        return value

    def choice_arg(self, args: dict[str, str], key: str, choices: Sequence[str], default: str) -> str:
        value = args.get(key, default)
        if value not in choices:
            raise ModelArgsError(f"{self.name}: {key} must be one of {list(choices)}, got {value!r}")
        return value

    # ----------------------------------------------------------------- Model API

    def spec(self) -> WorkerSpec:
        return WorkerSpec(
            name=self.name,
            python=self.python,
            script=SCRIPTS_DIR / self.script,
            cwd=self.code_dir,
            config=self.worker_config,
            pythonpath=(self.code_dir,),
            startup_timeout=self.startup_timeout,
            request_timeout=self.timeout,
            max_restarts=self.max_restarts,
        )

    def process(self) -> WorkerProcess:
        """The worker, started on first use (WorkerStartError if it cannot start)."""
        if self._process is None:
            self._process = WorkerProcess(self.spec())
        if self._process.starts == 0:
            self._process.start()
        return self._process

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        done: list[Response | None] = [None] * len(requests)
        for i, req in enumerate(requests):
            if why := self.refuse(req):
                done[i] = Response.failed(req.id, f"{self.name}: {why}")
        if all(r is not None for r in done):
            return done  # type: ignore[return-value]
        process = self.process()
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix=f"mmeval-{self.name}-"))
        sent: list[tuple[int, dict[str, Any]]] = []
        for i, req in enumerate(requests):
            if done[i] is None:
                try:
                    sent.append((i, self._message(req)))
                except (MediaError, ProtocolError) as exc:  # this request only
                    done[i] = Response.failed(req.id, f"media: {exc}" if isinstance(exc, MediaError) else f"{self.name}: {exc}")
        outputs = process.run([msg for _, msg in sent]) if sent else []
        for (i, msg), out in zip(sent, outputs, strict=True):
            try:
                done[i] = self._response(requests[i], out, Path(msg["output_dir"]))
            finally:
                self._cleanup(msg["id"])
        return done  # type: ignore[return-value]

    def _cleanup(self, msg_id: str) -> None:
        assert self._tmp is not None
        for kind in ("in", "out"):
            shutil.rmtree(self._tmp / kind / msg_id, ignore_errors=True)

    def _message(self, request: Request) -> dict[str, Any]:
        """The generate message; media bytes are written to temp files (removed if it fails)."""
        assert self._tmp is not None
        msg_id = f"r{next(self._ids)}"
        try:
            return self._encode(request, msg_id)
        except Exception:
            self._cleanup(msg_id)
            raise

    def _encode(self, request: Request, msg_id: str) -> dict[str, Any]:
        assert self._tmp is not None
        in_dir, out_dir = self._tmp / "in" / msg_id, self._tmp / "out" / msg_id
        counter = itertools.count()

        def path_of(part: MediaPart) -> str:
            if part.error:
                raise MediaError(part.error)
            if part.data is not None:
                in_dir.mkdir(parents=True, exist_ok=True)
                target = in_dir / f"{next(counter)}-{part.modality}{guess_suffix(part.data)}"
                target.write_bytes(part.data)
                return str(target)
            if part.path is None:
                raise MediaError(f"{part.modality} part has neither a path nor bytes")
            path = os.path.abspath(part.path)
            if not os.path.isfile(path):
                raise MediaError(f"{part.modality} file {part.path} does not exist")
            return path

        message = generate_message(msg_id, encode_messages(request, path_of), request, sample_seed(request), str(out_dir))
        out_dir.mkdir(parents=True, exist_ok=True)
        return message

    def _response(self, request: Request, out: WorkerResponse | str, out_dir: Path) -> Response:
        if isinstance(out, str):
            return Response.failed(request.id, out)
        if out.error is not None:
            resp = Response.failed(request.id, f"{self.name} worker: {out.error}")
            resp.timings = dict(out.timings)
            return resp
        artifacts = []
        root = os.path.realpath(out_dir)
        for item in out.media:
            real = os.path.realpath(item.path)
            if os.path.commonpath([root, real]) != root:
                return Response.failed(request.id, f"{self.name} worker wrote {item.path}, outside its output_dir {out_dir}")
            meta = {k: v for k, v in item.meta.items() if k not in ("modality", "path", "format")}
            try:
                artifacts.append(Artifact.from_file(item.modality, real, item.format, **meta))  # type: ignore[arg-type]
            except MediaError as exc:
                return Response.failed(request.id, f"{self.name} worker: {exc}")
        meta = dict(out.meta)
        if out.signal_tokens is not None:
            meta["signal_tokens"] = dict(out.signal_tokens)
        # Workers do not see stop strings (the research code has its own stop words): cut here.
        text, stopped = truncate_at_stop(self.clean_text(out.text), request.generation.stop)
        return Response(
            id=request.id,
            text=text.strip() if stopped else text,
            artifacts=artifacts,
            finish_reason="stop" if stopped else out.finish_reason,
            timings=dict(out.timings),
            meta=meta,
        )

    def fingerprint_extra(self) -> Any:
        return {
            "config": self.worker_config,
            "repo_commit": self.repo_commit,
            "worker_version": self.worker_version,
            "protocol": PROTOCOL_VERSION,
        }

    def fingerprint(self) -> str:
        # Operational args (interpreter path, timeouts, restarts) do not change outputs; the
        # worker config (resolved checkpoints and generation settings) and the commit do.
        payload = {"name": self.name, "extra": self.fingerprint_extra()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def info(self) -> dict[str, Any]:
        proc = self._process
        return {
            "repo": str(self.repo),
            "repo_commit": self.repo_commit,
            "python": self.python,
            "protocol": PROTOCOL_VERSION,
            "worker_script": self.script,
            "worker_version": self.worker_version,
            "config": self.worker_config,
            "worker": proc.info if proc is not None else None,
            "worker_log": str(proc.log_path) if proc is not None else None,
            "worker_restarts": proc.restarts if proc is not None else 0,
        }

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
