"""Reference baselines: constant answer, seeded random choice, and replay of a predictions file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmeval.models.base import ArchitectureCard, Capabilities, Model, ModelArgsError
from mmeval.types import MODALITIES, Artifact, MediaError, Request, Response

MEDIA_KEYS = ("image", "audio", "video")

ANY_INPUT = Capabilities(input_modalities=frozenset(MODALITIES), output_modalities=frozenset({"text"}))
BASELINE_CARD = ArchitectureCard(llm_backbone="none (baseline)", params=0, license="n/a", open_weights=True)


def split_request_id(request_id: str) -> tuple[str, str]:
    """Request ids are ``<task>/<doc_id>``; task names never contain '/'."""
    task, _, doc_id = request_id.partition("/")
    return task, doc_id


class ConstantModel(Model):
    """Answers every request with the same text (``answer``, default "yes")."""

    name = "constant"
    capabilities = ANY_INPUT
    card = BASELINE_CARD
    allowed_args = frozenset({"answer"})

    def __init__(self, **args: str) -> None:
        super().__init__(**args)
        self.answer = args.get("answer", "yes")

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        return [Response(id=r.id, text=self.answer, finish_reason="stop") for r in requests]


class RandomChoiceModel(Model):
    """Picks one of a multiple-choice request's labels, seeded by (seed, request id).

    The pick depends only on the seed and the request, never on batch order, so the baseline
    is reproducible and batch-invariant. Requests without choices fail (counted, not scored)."""

    name = "random-choice"
    capabilities = ANY_INPUT
    card = BASELINE_CARD
    allowed_args = frozenset({"seed"})

    def __init__(self, **args: str) -> None:
        super().__init__(**args)
        try:
            self.seed = int(args.get("seed", "0"))
        except ValueError as exc:
            raise ModelArgsError(f"random-choice: seed must be an integer, got {args['seed']!r}") from exc

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        out = []
        for r in requests:
            if not r.choices:
                out.append(Response.failed(r.id, "random-choice needs a multiple-choice request (no choices given)"))
                continue
            digest = hashlib.sha256(f"{self.seed}:{r.id}".encode()).digest()
            pick = r.choices[int.from_bytes(digest[:8], "big") % len(r.choices)]
            out.append(Response(id=r.id, text=pick, finish_reason="stop", meta={"random": True, "seed": self.seed}))
        return out


RESPONSE_KEYS = ("response", "prediction", "pred", "answer", "text", "output")
ID_KEYS = ("doc_id", "question_id", "id")


class ReplayModel(Model):
    """Responses from a predictions file (jsonl or a json list/dict), keyed by doc id.

    Rows may carry a ``task`` field to disambiguate doc ids shared by several tasks. Model args:
    ``predictions`` (path, required), ``id_key`` and ``response_key`` (auto-detected if absent),
    ``name`` (what to call the replayed model in results).

    Media generated elsewhere are scored the same way: a row with an ``image``, ``audio`` or
    ``video`` field (a path, relative to the predictions file's folder or absolute; or a list of
    paths) replays those files as the response's artifacts, e.g.
    ``{"doc_id": "t2i000", "image": "outputs/t2i000.png"}``; the response text is optional then.
    """

    name = "replay"
    capabilities = Capabilities(input_modalities=frozenset(MODALITIES), output_modalities=frozenset(MODALITIES))
    card = ArchitectureCard()
    allowed_args = frozenset({"predictions", "id_key", "response_key", "name"})

    def __init__(self, **args: str) -> None:
        super().__init__(**args)
        if "predictions" not in args:
            raise ModelArgsError("replay needs --model-args predictions=PATH (a jsonl file with doc_id and response)")
        self.path = Path(args["predictions"]).expanduser()
        if not self.path.is_file():
            raise ModelArgsError(f"replay: predictions file {self.path} does not exist")
        self.raw = self.path.read_bytes()
        self.by_task: dict[tuple[str | None, str], str] = {}
        self.media: dict[tuple[str | None, str], list[tuple[str, Path]]] = {}
        for row, where in self._rows():
            id_key = args.get("id_key") or next((k for k in ID_KEYS if k in row), None)
            resp_key = args.get("response_key") or next((k for k in RESPONSE_KEYS if k in row), None)
            if id_key is None or id_key not in row:
                raise ModelArgsError(f"{self.path}: {where}: no id field (looked for {args.get('id_key') or ID_KEYS})")
            key = (row.get("task"), str(row[id_key]))
            media = self._media_of(row, where)
            if media:
                self.media[key] = media
            if (resp_key is None or resp_key not in row) and not media:
                raise ModelArgsError(
                    f"{self.path}: {where}: no response field (looked for {args.get('response_key') or RESPONSE_KEYS}) "
                    f"and no media field ({', '.join(MEDIA_KEYS)})"
                )
            value = row.get(resp_key, "") if resp_key else ""
            self.by_task[key] = value if isinstance(value, str) else json.dumps(value)

    def _media_of(self, row: dict[str, Any], where: str) -> list[tuple[str, Path]]:
        out = []
        for modality in MEDIA_KEYS:
            value = row.get(modality)
            if value is None:
                continue
            for item in value if isinstance(value, list) else [value]:
                if not isinstance(item, str) or not item:
                    raise ModelArgsError(f"{self.path}: {where}: {modality} must be a file path or a list of paths, got {item!r}")
                path = Path(item).expanduser()
                out.append((modality, path if path.is_absolute() else self.path.parent / path))
        return out

    def _rows(self) -> list[tuple[dict[str, Any], str]]:
        text = self.raw.decode("utf-8")
        if self.path.suffix == ".json":
            data = json.loads(text)
            if isinstance(data, dict):  # {doc_id: response}
                return [({"doc_id": k, "response": v}, f"key {k!r}") for k, v in data.items()]
            return [(row, f"item {i}") for i, row in enumerate(data)]
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((json.loads(line), f"line {lineno}"))
                except json.JSONDecodeError as exc:
                    raise ModelArgsError(f"{self.path}: line {lineno}: invalid JSON: {exc.msg}") from exc
        return rows

    def fingerprint_extra(self) -> Any:
        h = hashlib.sha256(self.raw)
        for key in sorted(self.media, key=str):  # replayed media may change under the same predictions file
            for modality, path in self.media[key]:
                st = path.stat() if path.exists() else None
                h.update(f"{modality}:{path}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1}".encode())
        return h.hexdigest()

    def info(self) -> dict[str, Any]:
        return {"predictions": str(self.path), "sha256": self.fingerprint_extra(), "n_predictions": len(self.by_task)}

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        out = []
        for r in requests:
            task, doc_id = split_request_id(r.id)
            text = self.by_task.get((task, doc_id), self.by_task.get((None, doc_id)))
            if text is None:
                out.append(Response.failed(r.id, f"replay: no prediction for doc {doc_id!r} in {self.path}"))
                continue
            media = self.media.get((task, doc_id), self.media.get((None, doc_id), []))
            try:
                arts = [Artifact.from_file(m, p) for m, p in media]  # type: ignore[arg-type]
            except MediaError as exc:
                out.append(Response.failed(r.id, f"replay: {exc}"))
                continue
            out.append(Response(id=r.id, text=text, artifacts=arts, finish_reason="stop"))
        return out
