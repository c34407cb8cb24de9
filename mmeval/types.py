"""Core types shared by every stage of the pipeline.

Data flows one way: tasks build ``Request`` objects, models return ``Response`` objects,
tasks score them into ``SampleRecord`` objects, and the runner aggregates those into
``MetricValue`` / ``TaskResult`` / ``RunResult``. These are plain slotted dataclasses (not
pydantic) because the runner creates hundreds of thousands of them per run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Modality = Literal["text", "image", "audio", "video"]
MODALITIES: tuple[Modality, ...] = ("text", "image", "audio", "video")


class MediaError(Exception):
    """A media part could not be read or decoded. Recorded per sample; never fatal by itself."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path, what: str = "media") -> str:
    """sha256 of a file, memoised on (path, size, mtime) so repeated media are hashed once.
    ``what`` names the file's kind in the error for a missing or unreadable file."""
    p = str(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise MediaError(f"cannot read {what} file {p}: {exc.strerror or exc}") from exc
    key = (p, st.st_size, st.st_mtime_ns)
    digest = _FILE_HASHES.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        digest = _FILE_HASHES[key] = h.hexdigest()
    return digest


# --------------------------------------------------------------------------- parts


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str
    type: Literal["text"] = "text"

    def key(self) -> Any:
        return ["text", self.text]


@dataclass(frozen=True, slots=True)
class MediaPart:
    """An image, audio clip or video, given by a file path or by raw encoded bytes.

    Decoding is lazy: the runner only hashes the bytes (for the cache key); adapters decode.
    A part whose source is missing still builds: the error surfaces when the sample is
    hashed or decoded, and is recorded against that sample only.
    """

    modality: Modality
    path: str | None = None
    data: bytes | None = None
    error: str | None = None  # set by the loader for a refused source (e.g. outside the dataset root)
    type: Literal["media"] = "media"

    @property
    def label(self) -> str:
        """How errors name this part: its file path, else ``<bytes>`` (embedded in the dataset)."""
        return self.path or "<bytes>"

    def read_bytes(self) -> bytes:
        if self.error:
            raise MediaError(self.error)
        if self.data is not None:
            data = self.data
        elif self.path is None:
            raise MediaError(f"{self.modality} part has neither a path nor bytes")
        else:
            try:
                data = Path(self.path).read_bytes()
            except OSError as exc:
                raise MediaError(f"cannot read {self.modality} file {self.path}: {exc.strerror or exc}") from exc
        if not data:  # no image, clip or video is zero bytes; say so rather than "unknown format"
            raise MediaError(f"{self.modality} {self.label} is empty (0 bytes)")
        return data

    def sha256(self) -> str:
        if self.error:
            raise MediaError(self.error)
        if self.data is not None:
            return sha256_bytes(self.data)
        if self.path is None:
            raise MediaError(f"{self.modality} part has neither a path nor bytes")
        return sha256_file(self.path, self.modality)

    def key(self) -> Any:
        return [self.modality, self.sha256()]

    def load_image(self, max_pixels: int | None = None) -> Any:
        """Decode as an RGB PIL image. A corrupt or truncated file, or one over ``max_pixels``
        (default ``mmeval.media.image.MAX_IMAGE_PIXELS``: the decompression-bomb guard, checked
        before decoding), is a MediaError naming the file."""
        from mmeval.media.image import MAX_IMAGE_PIXELS, decode_image

        return decode_image(self.read_bytes(), self.label, MAX_IMAGE_PIXELS if max_pixels is None else max_pixels)

    def load_audio(self) -> tuple[Any, int]:
        """Decode a PCM WAV clip to (float32 mono numpy array in [-1, 1], sample rate). A corrupt,
        truncated or empty clip, or an implausible sample rate, is a MediaError naming the file."""
        from mmeval.media.audio import decode_wav

        return decode_wav(self.read_bytes(), self.label)


Part = TextPart | MediaPart


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["system", "user", "assistant"]
    parts: tuple[Part, ...]

    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    def media(self, modality: Modality | None = None) -> list[MediaPart]:
        return [p for p in self.parts if isinstance(p, MediaPart) and (modality is None or p.modality == modality)]


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass(frozen=True, slots=True)
class Request:
    """What a model sees: messages of typed parts, and how to generate. Never the task itself.

    ``choices`` holds the option labels of a multiple-choice question (e.g. ``("A", "B")``),
    so choice-aware baselines and log-likelihood scoring need no task knowledge.
    """

    id: str
    messages: tuple[Message, ...]
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    output_modality: Modality = "text"
    choices: tuple[str, ...] | None = None

    def parts(self) -> list[Part]:
        return [p for m in self.messages for p in m.parts]

    def media(self, modality: Modality | None = None) -> list[MediaPart]:
        return [p for m in self.messages for p in m.media(modality)]

    def input_modalities(self) -> set[Modality]:
        return {"text" if isinstance(p, TextPart) else p.modality for p in self.parts()}

    def prompt_text(self) -> str:
        return "\n".join(m.text() for m in self.messages)

    def prompt_hash(self) -> str:
        """Content hash of the prompt: messages with media by sha256 (MediaError if unreadable)."""
        payload = [[m.role, [p.key() for p in m.parts]] for m in self.messages]
        return sha256_bytes(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())

    def content_hash(self, prompt_hash: str | None = None) -> str:
        """Hash of everything that determines the response: prompt, generation config, choices.

        Generators draw their noise per sample (seeded by the request id, so batching does not
        change it), so for media outputs the id and the seed are part of the hash: two documents
        with the same prompt are two samples, never one cached image served twice."""
        payload = [
            prompt_hash or self.prompt_hash(),
            _generation_json(self.generation),
            self.output_modality,
            list(self.choices) if self.choices else None,
        ]
        if self.output_modality != "text":  # generators always use the seed, "greedy" or not
            payload += [self.id, self.generation.seed]
        return sha256_bytes(json.dumps(payload, separators=(",", ":")).encode())


@functools.lru_cache(maxsize=256)
def _generation_json(gen: GenerationConfig) -> str:
    """Canonical JSON of a generation config; a task has one, so it is computed once.
    Greedy decoding ignores the seed, so it is left out: changing --seed keeps greedy caches."""
    d = gen.to_dict()
    if gen.greedy:
        d.pop("seed")
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


# --------------------------------------------------------------------------- responses


@dataclass(slots=True)
class Artifact:
    """A generated media file, stored under the run's artifacts/ and named by its sha256.

    An adapter builds one with ``from_bytes`` (encoded media in memory) or ``from_file`` (a
    file a generator or worker process wrote). The runner then stores it content-addressed,
    ``artifacts/<sha[:2]>/<sha>.<format>`` under the run directory, and from then on ``path``
    is that run-relative path and ``data`` is None. ``data`` is never serialised.
    """

    modality: Modality
    path: str
    sha256: str
    format: str
    meta: dict[str, Any] = field(default_factory=dict)  # sample_rate, fps, frames, width, height, size_bytes
    data: bytes | None = None

    @classmethod
    def from_bytes(cls, modality: Modality, data: bytes, format: str, **meta: Any) -> Artifact:
        meta.setdefault("size_bytes", len(data))
        return cls(modality=modality, path="", sha256=sha256_bytes(data), format=format.lower().lstrip("."), meta=meta, data=data)

    @classmethod
    def from_file(cls, modality: Modality, path: str | Path, format: str | None = None, **meta: Any) -> Artifact:
        """A file on disk (e.g. written by a worker process); the runner copies it into the run."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise MediaError(f"generated {modality} file {p} cannot be read: {exc.strerror or exc}") from exc
        return cls.from_bytes(modality, data, format or p.suffix or "bin", **meta)

    @property
    def stored(self) -> bool:
        return self.data is None and bool(self.path)

    def to_dict(self) -> dict[str, Any]:
        return {"modality": self.modality, "path": self.path, "sha256": self.sha256, "format": self.format, "meta": self.meta}


@dataclass(slots=True)
class Response:
    id: str
    text: str = ""
    artifacts: list[Artifact] = field(default_factory=list)
    finish_reason: str | None = None
    error: str | None = None  # a failed call: counted as a failure, never scored as wrong
    timings: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        # Written by hand: dataclasses.asdict deep-copies and is the runner's hottest call.
        return {
            "id": self.id,
            "text": self.text,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "finish_reason": self.finish_reason,
            "error": self.error,
            "timings": self.timings,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], cached: bool = False) -> Response:
        arts = [Artifact(**a) for a in d.get("artifacts", [])]
        return cls(
            id=d["id"],
            text=d.get("text", ""),
            artifacts=arts,
            finish_reason=d.get("finish_reason"),
            error=d.get("error"),
            timings=d.get("timings", {}),
            meta=d.get("meta", {}),
            cached=cached,
        )

    @classmethod
    def failed(cls, request_id: str, error: str) -> Response:
        return cls(id=request_id, error=error, finish_reason="error")


# --------------------------------------------------------------------------- scores


@dataclass(slots=True)
class SampleRecord:
    """One line of samples/<task>.jsonl."""

    doc_id: str
    prompt_hash: str | None
    target: Any
    response: str | None
    parsed: Any = None
    extraction: str | None = None  # stage that produced ``parsed`` ("letter", "pattern", ... "unparsed")
    scores: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    cluster: str | None = None
    cached: bool = False
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "prompt_hash": self.prompt_hash,
            "target": self.target,
            "response": self.response,
            "parsed": self.parsed,
            "extraction": self.extraction,
            "scores": self.scores,
            "error": self.error,
            "cluster": self.cluster,
            "cached": self.cached,
            "artifacts": self.artifacts,
        }


@dataclass(slots=True)
class MetricValue:
    name: str
    value: float
    n: int
    stderr: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_method: str = "normal"  # normal | clustered | bootstrap | none
    n_clusters: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class TaskResult:
    task: str
    version: int
    n: int = 0
    n_errors: int = 0
    n_cached: int = 0
    metrics: list[MetricValue] = field(default_factory=list)
    extraction_rate: float | None = None
    extraction_stages: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # error message prefix -> count
    timings: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None
    # column -> value -> metric name -> MetricValue, for the task's ``breakdown`` columns
    breakdown: dict[str, dict[str, dict[str, MetricValue]]] = field(default_factory=dict)
    metric_errors: dict[str, str] = field(default_factory=dict)  # metric name -> why it has no value

    def metric(self, name: str) -> MetricValue:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"task {self.task} has no metric {name!r}; it has {[m.name for m in self.metrics]}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = {m.name: m.to_dict() for m in self.metrics}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskResult:
        d = dict(d)
        d["metrics"] = [MetricValue(**m) for m in d.get("metrics", {}).values()]
        d["breakdown"] = {
            col: {val: {name: MetricValue(**m) for name, m in ms.items()} for val, ms in vals.items()}
            for col, vals in d.get("breakdown", {}).items()
        }
        return cls(**d)


@dataclass(slots=True)
class RunResult:
    run_id: str
    path: Path
    manifest: dict[str, Any]
    tasks: dict[str, TaskResult] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.manifest.get("status") == "complete"
