"""Write a run directory: results/<run-id>/{run.json, samples/<task>.jsonl, artifacts/}.

Every write goes to a temp file in the same directory, is fsynced, then renamed over the
target, so a reader (or a crash) never sees half a file. run.json is rewritten after each
task finishes, so finished tasks survive a crash of a later one.

Schema: see docs/run-schema.md. ``SCHEMA_VERSION`` changes whenever a field changes meaning.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mmeval.types import Response, SampleRecord, TaskResult

SCHEMA_VERSION = 1
RUN_FILE = "run.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n").encode())


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    lines = [_jsonl_line(r) for r in rows]
    atomic_write_bytes(path, ("\n".join(lines) + ("\n" if lines else "")).encode())


def _jsonl_line(row: dict[str, Any]) -> str:
    """One samples-file line: UTF-8 as is; bytes and arrays made JSON (``_json_default``)."""
    return json.dumps(row, ensure_ascii=False, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return f"<{len(obj)} bytes>"
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80] or "run"


def samples_file_name(task: str) -> str:
    """``<task>.jsonl``; characters unsafe in file names (``lm-eval:mmlu``) become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", task) + ".jsonl"


def claim_run_dir(output: Path, model: str) -> Path:
    """A new, empty run directory named <model>_<time>; mkdir claims it atomically, so two
    processes (or two runs in the same second) never share one."""
    output.mkdir(parents=True, exist_ok=True)
    base = f"{slug(model)}_{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 10_000):
        candidate = output / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot find a free run directory name under {output}")


def iter_manifests(output: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(run directory, run.json) for every readable run directly under ``output``, in name
    order; an unreadable run.json (a crash mid-copy, a foreign file) is passed over here:
    ``mmeval show`` reports it."""
    if not output.is_dir():
        return
    for run_json in sorted(output.glob(f"*/{RUN_FILE}")):
        try:
            yield run_json.parent, json.loads(run_json.read_text())
        except (OSError, json.JSONDecodeError):
            continue


def resumable_runs(output: Path, config_hash: str) -> list[Path]:
    """Runs under ``output`` with the same configuration that did not complete, newest first."""
    candidates = [
        ((run_dir / RUN_FILE).stat().st_mtime, run_dir)
        for run_dir, manifest in iter_manifests(output)
        if manifest.get("config_hash") == config_hash and manifest.get("status") != "complete"
    ]
    return [path for _, path in sorted(candidates, reverse=True)]


class RunLockedError(RuntimeError):
    """Another live process is writing this run directory."""


class RunLock:
    """An exclusive ``flock`` on ``<run>/.lock``, held while a process writes the run.

    Two processes evaluating into the same results directory never write the same run: a
    resumable run whose lock is held belongs to a live process and is passed over. The kernel
    drops the lock when its process dies (even by SIGKILL), so a killed run is resumable at once."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self._fh: Any = None

    def acquire(self) -> bool:
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing the descriptor drops the flock
            self._fh = None


def lock_run_dir(output: Path, config_hash: str, model: str, run_id: str | None = None) -> tuple[Path, RunLock]:
    """The run directory to write, locked: ``run_id``'s; else the newest incomplete run of the
    same configuration that no live process holds; else a new one."""
    if run_id:
        run_dir = output / slug(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(run_dir)
        if not lock.acquire():
            raise RunLockedError(
                f"run {run_dir} is being written by another process (pid {lock.holder()}); wait for it or pick another --run-id"
            )
        return run_dir, lock
    for run_dir in resumable_runs(output, config_hash):
        lock = RunLock(run_dir)
        if lock.acquire():
            if json.loads((run_dir / RUN_FILE).read_text()).get("status") != "complete":  # not finished while we looked
                return run_dir, lock
            lock.release()
    run_dir = claim_run_dir(output, model)
    lock = RunLock(run_dir)
    lock.acquire()  # a fresh directory: nobody else has it (it has no run.json to be found by)
    return run_dir, lock


class RunWriter:
    def __init__(self, run_dir: Path, manifest: dict[str, Any]) -> None:
        self.dir = run_dir
        self.manifest = manifest
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "samples").mkdir(exist_ok=True)
        (self.dir / "artifacts").mkdir(exist_ok=True)
        existing = self.dir / RUN_FILE
        self.tasks: dict[str, dict[str, Any]] = {}
        if existing.exists():  # resuming: keep tasks already finished in the earlier attempt
            try:
                previous = json.loads(existing.read_text())
                self.tasks = previous.get("results", {})
                manifest.setdefault("attempts", previous.get("attempts", 0))
            except json.JSONDecodeError:
                pass
        manifest["attempts"] = int(manifest.get("attempts", 0)) + 1
        self.flush()

    def samples_path(self, task: str) -> Path:
        return self.dir / "samples" / samples_file_name(task)

    def write_task(self, result: TaskResult, samples: list[SampleRecord]) -> None:
        write_jsonl(self.samples_path(result.task), (s.to_dict() for s in samples))
        self.record_task(result)

    def record_task(self, result: TaskResult) -> None:
        """The task's result into run.json (its samples file is already in place)."""
        self.tasks[result.task] = result.to_dict()
        self.flush()

    def set_status(self, status: str, **extra: Any) -> None:
        self.manifest["status"] = status
        self.manifest.update(extra)
        self.flush()

    def flush(self) -> None:
        doc = dict(self.manifest)
        doc["schema_version"] = SCHEMA_VERSION
        doc["results"] = self.tasks
        atomic_write_json(self.dir / RUN_FILE, doc)


class SampleSink:
    """samples/<task>.jsonl written as samples finish, so memory does not hold a task's records.

    Lines go to a hidden ``.<task>.jsonl.partial`` beside the final file, flushed after every
    chunk; ``close`` fsyncs it and renames it over the final name, so a reader never sees a
    half-written samples file and a killed attempt leaves only the partial file, which the
    next attempt truncates (its samples come back from the response cache, never twice).
    Per-sample values of corpus metrics, known only at the end, are merged in by one more
    streaming pass over the partial file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial")
        self._fh = self.partial.open("w", encoding="utf-8")

    def write(self, records: Iterable[SampleRecord]) -> None:
        self._fh.writelines(_jsonl_line(r.to_dict()) + "\n" for r in records)
        self._fh.flush()

    def close(self, corpus_scores: list[dict[str, float]] | None = None) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        if corpus_scores:
            self._merge_scores(corpus_scores)
        else:
            os.replace(self.partial, self.path)

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def _merge_scores(self, corpus_scores: list[dict[str, float]]) -> None:
        """``corpus_scores``: one dict per sample without an error, in file order."""
        scores = iter(corpus_scores)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out, self.partial.open(encoding="utf-8") as src:
                for line in src:
                    row = json.loads(line)
                    if row.get("error") is None:
                        row["scores"].update(next(scores))
                    out.write(_jsonl_line(row) + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.partial.unlink()


class RankShard:
    """One data-parallel rank's responses for one task: ``samples/.shards/<task>/rank-R-of-W.jsonl``,
    a line per document of its share (document index, prompt hash, response), in document order.
    Rank 0 merges the W shards after a barrier. The world size is in the name, so shards of an
    interrupted run with another number of ranks are never mistaken for this run's."""

    def __init__(self, run_dir: Path, task: str, rank: int, world_size: int) -> None:
        self.dir = run_dir / "samples" / ".shards" / samples_file_name(task).removesuffix(".jsonl")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.file(self.dir, rank, world_size)
        self._fh = self.path.open("w", encoding="utf-8")

    def write(self, rows: Iterable[tuple[int, str | None, Response]]) -> None:
        for i, phash, resp in rows:
            row = {"i": i, "prompt_hash": phash, "cached": resp.cached, "response": resp.to_dict()}
            self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()

    @staticmethod
    def file(shard_dir: Path, rank: int, world_size: int) -> Path:
        return shard_dir / f"rank-{rank}-of-{world_size}.jsonl"

    @staticmethod
    def read(path: Path) -> Iterator[tuple[int, str | None, Response]]:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                yield row["i"], row["prompt_hash"], Response.from_dict(row["response"], cached=row["cached"])
