"""A long-lived worker process speaking the JSON-lines protocol (see protocol.py).

``WorkerProcess`` starts the worker script with the model environment's interpreter (cwd and
PYTHONPATH set to the model's repository), waits for its ``ready`` line, then sends requests
and matches responses by id. Three daemon threads per process keep the pipes moving so the
caller never blocks on them: one reads stdout lines into a queue (the caller waits on the
queue with a deadline: that is how timeouts work), one drains stderr continuously into a log
file (and keeps the last lines for error messages), one writes request lines to stdin (a
worker busy on a long generation cannot stall the caller on a full pipe).

Failure handling, per request:

* an ``error`` in the response: that request fails, the worker keeps serving;
* a stdout line that is not a protocol message: the request being served fails (its late
  answer, if any, is dropped); the worker keeps serving;
* the worker exits (a crash, CUDA out of memory, a segfault): the request being served fails
  with the exit code and the stderr tail; the worker is restarted and the requests that were
  queued behind it are sent again;
* no answer within ``request_timeout``: the worker is killed (it cannot be interrupted in the
  middle of a generation), the request fails, the worker is restarted for the rest;
* after ``max_restarts`` restarts the worker is not started again: the remaining requests fail
  with the reason, so a broken environment cannot loop forever.

A failure to *start* the first time (bad interpreter, missing checkpoint, import error) raises
``WorkerStartError``: every request would fail the same way, so the run should stop there.
Every error message names the log file. ``close`` sends ``shutdown``, then escalates to
terminate and kill, and always reaps the process (no zombies); a finaliser kills a worker
whose owner forgot to close it.

Requests may be pipelined: ``run`` writes a whole batch before reading, so the worker starts
the next request as soon as it has answered one. Not thread-safe (one caller at a time).
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import queue
import shlex
import subprocess
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mmeval.models.workers.protocol import PROTOCOL_VERSION, SHUTDOWN, Fatal, ProtocolError, Ready, WorkerResponse, dumps, parse_line

TAIL_LINES = 20
_LOG_IDS = itertools.count()


class WorkerError(RuntimeError):
    """A worker process could not be used."""


class WorkerStartError(WorkerError):
    """The worker did not get to ``ready`` (it exited, timed out or reported a fatal error)."""


@dataclass
class WorkerSpec:
    """How to start one worker. ``config`` reaches the script as JSON in ``argv[1]``."""

    name: str
    python: str
    script: Path
    cwd: Path
    config: dict[str, Any] = field(default_factory=dict)
    pythonpath: tuple[Path, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    startup_timeout: float = 1800.0
    request_timeout: float = 600.0
    max_restarts: int = 2
    shutdown_timeout: float = 10.0

    def argv(self) -> list[str]:
        return [self.python, "-u", str(self.script), json.dumps(self.config, ensure_ascii=True)]

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [str(p) for p in self.pythonpath]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        env.update(self.env)
        return env


class _Log:
    """The worker's stderr (and mmeval's notes about it), on disk and as a short tail."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None

    def write(self, line: str, note: bool = False) -> None:
        with self._lock:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = self.path.open("a", encoding="utf-8")
            self._fh.write(f"[mmeval] {line}\n" if note else line + "\n")
            self._fh.flush()
            if not note:
                self.tail.append(line if len(line) <= 400 else line[:400] + "...")

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


class _Running:
    """One OS process of a worker, with its three pipe threads."""

    def __init__(self, spec: WorkerSpec, log: _Log) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            spec.argv(), cwd=spec.cwd, env=spec.environ(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.outbox: queue.Queue[str | None] = queue.Queue()
        self._stderr = threading.Thread(target=self._drain_stderr, name=f"{spec.name}-stderr", daemon=True)
        threads = (threading.Thread(target=self._read_stdout, daemon=True), threading.Thread(target=self._write_stdin, daemon=True))
        for t in (*threads, self._stderr):
            t.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.put(raw.decode("utf-8", "replace"))
        self.lines.put(None)

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            self.log.write(raw.decode("utf-8", "replace").rstrip("\r\n"))

    def _write_stdin(self) -> None:
        assert self.proc.stdin is not None
        while True:
            item = self.outbox.get()
            try:
                if item is None:
                    self.proc.stdin.close()
                    return
                self.proc.stdin.write(item.encode("ascii") + b"\n")
                self.proc.stdin.flush()
            except (OSError, ValueError):  # the worker is gone; its exit shows on stdout (EOF)
                return

    def send(self, line: str) -> None:
        self.outbox.put(line)

    def next_line(self, timeout: float) -> str | None:
        """The next stdout line; None at end of stream; queue.Empty after ``timeout`` seconds."""
        return self.lines.get(timeout=max(timeout, 0.0))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def settle(self, timeout: float = 5.0) -> int | None:
        """Wait for the exit and for stderr to be drained (so error tails are complete)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None:
            self.outbox.put(None)  # ends the writer thread
        self._stderr.join(timeout=2.0)
        return code

    def kill(self) -> int | None:
        if self.alive():
            self.proc.kill()
        return self.settle()

    def shutdown(self, timeout: float) -> int | None:
        """Ask politely, then terminate, then kill; always reaps the process."""
        if self.alive():
            self.send(dumps(SHUTDOWN))
            self.outbox.put(None)  # close stdin: a worker blocked on reading sees EOF too
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.log.write(f"no exit {timeout:g}s after shutdown; terminating", note=True)
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
        return self.settle()


def _kill_quietly(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class WorkerProcess:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        log_dir = spec.log_dir or _default_log_dir()
        self.log = _Log(log_dir / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(_LOG_IDS)}.log")
        self.info: dict[str, Any] | None = None
        self.starts = 0
        self.restarts = 0
        self._run: _Running | None = None
        self._abandoned: set[str] = set()
        self._finalizer: weakref.finalize | None = None

    @property
    def log_path(self) -> Path:
        return self.log.path

    @property
    def pid(self) -> int | None:
        return self._run.proc.pid if self._run is not None else None

    @property
    def alive(self) -> bool:
        return self._run is not None and self._run.alive()

    # ----------------------------------------------------------------- start / stop

    def start(self) -> dict[str, Any]:
        """Start the worker if it is not running; returns its ready info."""
        if not self.alive:
            self._spawn()
        assert self.info is not None
        return self.info

    def _spawn(self) -> None:
        self._discard()
        self.starts += 1
        pythonpath = os.pathsep.join(str(p) for p in self.spec.pythonpath)
        command = shlex.join(self.spec.argv())
        self.log.write(f"start #{self.starts}: cd {shlex.quote(str(self.spec.cwd))} && PYTHONPATH={pythonpath} {command}", note=True)
        try:
            run = _Running(self.spec, self.log)
        except OSError as exc:
            raise WorkerStartError(
                f"{self.spec.name}: cannot run the worker interpreter {self.spec.python!r} ({exc.strerror or exc}); "
                "set the model arg python= to the python executable of the model's own environment"
            ) from exc
        self._finalizer = weakref.finalize(self, _kill_quietly, run.proc)
        deadline = time.monotonic() + self.spec.startup_timeout
        while True:
            try:
                line = run.next_line(deadline - time.monotonic())
            except queue.Empty:
                run.kill()
                raise WorkerStartError(self._describe(f"was not ready after {self.spec.startup_timeout:g}s (killed it)")) from None
            if line is None:
                code = run.settle()
                raise WorkerStartError(self._describe(f"exited with code {code} before it was ready"))
            try:
                msg = parse_line(line)
            except ProtocolError as exc:  # printed before worker_loop took over stdout: log it
                self.log.write(f"ignored stdout line before ready: {exc}", note=True)
                continue
            if isinstance(msg, Fatal):
                run.settle()  # worker_loop exits right after reporting; a worker that lingers is killed
                run.kill()
                raise WorkerStartError(self._describe(f"failed to load the model: {msg.error}"))
            if isinstance(msg, Ready):
                break
            self.log.write(f"ignored a response before ready (id {msg.id})", note=True)
        if msg.protocol != PROTOCOL_VERSION:
            run.kill()
            raise WorkerStartError(
                self._describe(f"speaks protocol version {msg.protocol}, this mmeval speaks {PROTOCOL_VERSION}: update the worker script")
            )
        self.info = msg.info
        self._run = run
        self.log.write(f"ready (pid {run.proc.pid})", note=True)

    def _discard(self) -> None:
        """Forget a dead (or killed) process, reaping it."""
        if self._run is not None:
            self._run.kill()
            self._run = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def close(self) -> None:
        """Shut the worker down cleanly (idempotent)."""
        if self._run is not None:
            code = self._run.shutdown(self.spec.shutdown_timeout)
            self.log.write(f"closed (exit code {code})", note=True)
            self._run = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self.log.close()

    # ----------------------------------------------------------------- requests

    def run(self, messages: Sequence[dict[str, Any]]) -> list[WorkerResponse | str]:
        """Send generate messages (pipelined) and return, in order, each response or the
        error message of a request that failed outside the worker's control."""
        results: dict[str, WorkerResponse | str] = {}
        pending = list(messages)
        while pending:
            if not self.alive:
                problem = self._restart()
                if problem is not None:
                    results.update((m["id"], problem) for m in pending)
                    break
            assert self._run is not None
            for m in pending:
                self._run.send(dumps(m))
            pending = self._collect(self._run, pending, results)
        return [results[m["id"]] for m in messages]

    def _restart(self) -> str | None:
        """(Re)start the worker; the reason it cannot be used, or None."""
        if self.starts == 0:
            self._spawn()  # a first start that fails raises: see the module docstring
            return None
        if self.restarts >= self.spec.max_restarts:
            return self._describe(f"stopped {self.restarts + 1} times; not restarting it again (max_restarts={self.spec.max_restarts})")
        self.restarts += 1
        try:
            self._spawn()
        except WorkerStartError as exc:
            return f"restart #{self.restarts} failed: {exc}"
        return None

    def _collect(self, run: _Running, pending: list[dict[str, Any]], results: dict[str, WorkerResponse | str]) -> list[dict[str, Any]]:
        """Read responses for ``pending``; returns the requests still to send to a new process."""
        waiting = [m["id"] for m in pending]
        timeout = self.spec.request_timeout
        deadline = time.monotonic() + timeout
        while waiting:
            current = waiting[0]  # requests are served in order: the oldest is the one in flight
            try:
                line = run.next_line(deadline - time.monotonic())
            except queue.Empty:
                run.kill()
                results[current] = self._describe(
                    f"gave no answer to request {current} within {timeout:g}s (killed it; it is restarted for the next request)"
                )
                return [m for m in pending if m["id"] in waiting[1:]]
            if line is None:
                code = run.settle()
                results[current] = self._describe(
                    f"exited with code {code} while serving request {current} (it is restarted for the next request)"
                )
                return [m for m in pending if m["id"] in waiting[1:]]
            try:
                msg = parse_line(line)
                if not isinstance(msg, WorkerResponse):
                    raise ProtocolError(f"unexpected {type(msg).__name__.lower()} message after ready")
            except ProtocolError as exc:
                self.log.write(f"bad stdout line while serving {current}: {exc}", note=True)
                results[current] = self._describe(f"wrote a line that is not a protocol message while serving request {current}: {exc}")
                self._abandoned.add(current)
                waiting.pop(0)
                continue
            if msg.id in waiting:
                results[msg.id] = msg
                waiting.remove(msg.id)
                deadline = time.monotonic() + timeout
            else:
                why = "a request already failed" if msg.id in self._abandoned else "an unknown request"
                self.log.write(f"dropped a response for {why} (id {msg.id!r})", note=True)
        return []

    def _describe(self, what: str) -> str:
        tail = "\n".join(f"    {line}" for line in self.log.tail) or "    (nothing)"
        return f"{self.spec.name} worker {what}.\n  last lines of its stderr:\n{tail}\n  full log: {self.log.path}"


def _default_log_dir() -> Path:
    from mmeval.models.tiny_common import cache_root

    return cache_root() / "workers" / "logs"
