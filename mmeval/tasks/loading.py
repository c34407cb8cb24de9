"""Load a task's documents from a local file/folder, a generated fixture, or the HF hub.

Every document is a plain dict. Media columns are normalised to an absolute path (confined
to the dataset root), raw bytes, or None; anything else is left to the prompt renderer.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import meta

from mmeval.tasks.prompts import ENV
from mmeval.tasks.spec import TaskSpec
from mmeval.types import sha256_file

DATA_FILE_NAMES = ("data.jsonl", "metadata.jsonl", "data.parquet", "data.csv", "metadata.csv", "data.json")


class DatasetError(ValueError):
    """The dataset cannot be loaded or does not have the columns the task needs."""


@dataclass
class LoadedDataset:
    docs: list[dict[str, Any]]
    doc_ids: list[str]
    fingerprint: str
    info: dict[str, Any] = field(default_factory=dict)
    total: int = 0  # size before --limit


Row = dict[str, Any]


@dataclass
class DocStream:
    """A task's documents, read lazily: iterating yields ``(index, doc_id, doc)`` for the first
    ``len(self)`` documents in dataset order, reading the file again each time, so memory does
    not grow with the dataset. Opening it makes one pass to count the documents, check the
    columns and the uniqueness of the ids (so a bad dataset fails before any generation); only
    the ids are kept. A ``.json`` list is the one format held in memory (it cannot be streamed)."""

    spec: TaskSpec
    rows: Callable[[], Iterator[Row]]  # every row after dataset.filter, in order; restartable
    doc_ids: list[str]
    fingerprint: str
    info: dict[str, Any]
    total: int  # size before --limit
    media_root: Path | None
    media_columns: frozenset[str]

    def __len__(self) -> int:
        return len(self.doc_ids)

    def __iter__(self) -> Iterator[tuple[int, str, Row]]:
        for i, row in zip(range(len(self.doc_ids)), self.rows(), strict=False):
            for col in self.media_columns:
                row[col] = _media_value(row.get(col), self.media_root)
            yield i, self.doc_ids[i], row

    def chunks(self, size: int, select: Callable[[int], bool] | None = None) -> Iterator[list[tuple[int, str, Row]]]:
        """Lists of up to ``size`` documents (those whose index ``select`` keeps: a rank's share)."""
        chunk: list[tuple[int, str, Row]] = []
        for item in self:
            if select is None or select(item[0]):
                chunk.append(item)
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk


def open_docs(spec: TaskSpec, limit: int | float | None = None, cache_root: Path | None = None) -> DocStream:
    ds = spec.dataset
    if ds.fixture:
        from mmeval.tasks.fixtures import fixture_dir

        root: Path | None = fixture_dir(ds.fixture, cache_root)
        rows, fingerprint, _source = _local_rows(root, spec)  # type: ignore[arg-type]
        info: dict[str, Any] = {"fixture": ds.fixture, "path": str(root)}
    elif ds.is_hub:
        rows, fingerprint, info = _hub_rows(spec)
        root = None
    else:
        root = _resolve_local(ds.path or "", spec)
        rows, fingerprint, source = _local_rows(root, spec)
        info = {"path": str(source)}
    info.update({"split": ds.split, "revision": ds.revision, "fingerprint": fingerprint})
    if ds.filter:
        rows = _filtered(rows, ds.filter, spec)
        info["filter"] = ds.filter
    # One pass: count, check the columns on the first row, collect the ids (only they are kept).
    first: Row | None = None
    ids: list[str] = []
    for i, row in enumerate(rows()):
        if first is None:
            first = row
            check_columns(spec, [first])
        ids.append(str(row[spec.doc_id]) if spec.doc_id else str(i))
    total = len(ids)
    n = total
    if limit is not None:
        n = min(total, int(limit * total) if isinstance(limit, float) and limit < 1 else int(limit))
    del ids[n:]
    media_columns = {p.value for parts in (spec.prompt, *spec.prompts.values()) for p in parts if p.kind != "text"}
    if spec.output_modality != "text" and "{{" not in spec.target:
        media_columns.add(spec.target)  # a generation task's references are media too (FID's real images)
    return DocStream(
        spec=spec,
        rows=rows,
        doc_ids=_unique(spec, ids),
        fingerprint=fingerprint,
        info=info,
        total=total,
        media_root=_media_root(spec, root),
        media_columns=frozenset(media_columns),
    )


def load_docs(spec: TaskSpec, limit: int | float | None = None, cache_root: Path | None = None) -> LoadedDataset:
    """Every document in memory (for inspection and small datasets; the runner streams)."""
    stream = open_docs(spec, limit, cache_root)
    docs = [doc for _, _, doc in stream]
    return LoadedDataset(docs=docs, doc_ids=list(stream.doc_ids), fingerprint=stream.fingerprint, info=stream.info, total=stream.total)


def _media_root(spec: TaskSpec, data_root: Path | None) -> Path | None:
    """Where relative media paths point: dataset.media_root, else the dataset's folder."""
    if spec.dataset.media_root:
        p = Path(spec.dataset.media_root).expanduser()
        return p if p.is_absolute() else (spec.base_dir / p).resolve()
    if data_root is None:
        return None
    return data_root if data_root.is_dir() else data_root.parent


def _resolve_local(path: str, spec: TaskSpec) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = (spec.base_dir / p).resolve()
    if not p.exists():
        raise DatasetError(f"task {spec.task}: dataset path {p} does not exist (dataset.path in {spec.source})")
    return p


def _data_file(root: Path) -> Path:
    if root.is_file():
        return root
    for name in DATA_FILE_NAMES:
        if (root / name).exists():
            return root / name
    raise DatasetError(f"dataset folder {root} has none of {', '.join(DATA_FILE_NAMES)}")


def _local_rows(root: Path, spec: TaskSpec) -> tuple[Callable[[], Iterator[Row]], str, Path]:
    path = _data_file(root)
    fingerprint = "sha256:" + sha256_file(path, "dataset")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return (lambda: _read_jsonl(path)), fingerprint, path
    if suffix == ".json":
        data = _parse_json(path.read_bytes(), path)
        if not isinstance(data, list):
            raise DatasetError(f"{path}: a .json dataset must be a list of objects")
        return (lambda: (dict(d) for d in data)), fingerprint, path
    if suffix == ".parquet":
        return (lambda: _read_parquet(path)), fingerprint, path
    if suffix == ".csv":
        return (lambda: _read_csv(path)), fingerprint, path
    raise DatasetError(f"{path}: unsupported dataset file type {suffix!r} (use jsonl, json, parquet or csv)")


def _read_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        yield from batch.to_pylist()


def _read_csv(path: Path) -> Iterator[Row]:
    import pandas as pd

    for frame in pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=4096):
        for doc in frame.to_dict(orient="records"):
            for key, value in doc.items():  # list-valued columns (answers, options) are written as JSON in CSV
                if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
                    with contextlib.suppress(json.JSONDecodeError):
                        doc[key] = json.loads(value)
            yield doc


def _parse_json(raw: bytes, path: Path, lineno: int | None = None) -> Any:
    """json.loads with an error naming the file and line (``lineno``: the jsonl line)."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: line {lineno or exc.lineno}: invalid JSON: {exc.msg}") from exc


def _read_jsonl(path: Path) -> Iterator[Row]:
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            obj = _parse_json(line, path, lineno)
            if not isinstance(obj, dict):
                raise DatasetError(f"{path}: line {lineno}: expected a JSON object, got {type(obj).__name__}")
            yield obj


def _hub_rows(spec: TaskSpec) -> tuple[Callable[[], Iterator[Row]], str, dict[str, Any]]:
    import datasets

    ds = spec.dataset
    try:
        data = datasets.load_dataset(ds.path, ds.name, split=ds.split, revision=ds.revision, data_files=ds.data_files)
    except Exception as exc:  # network, auth, missing revision: say what to do
        raise DatasetError(
            f"task {spec.task}: cannot load hub dataset {ds.path}@{ds.revision} ({type(exc).__name__}: {exc}). "
            "Offline? Prefetch it with `mmeval data pull` on a connected machine or point dataset.path at a local copy."
        ) from exc
    # Keep media as encoded bytes: hashing and decoding happen later, per sample.
    for part in {p for parts in (spec.prompt, *spec.prompts.values()) for p in parts}:
        if part.kind == "image" and part.value in data.column_names:
            data = data.cast_column(part.value, datasets.Image(decode=False))
        elif part.kind == "audio" and part.value in data.column_names:
            data = data.cast_column(part.value, datasets.Audio(decode=False))
    info = {"path": ds.path, "name": ds.name, "datasets_version": datasets.__version__}
    # Arrow-backed and memory-mapped: iterating reads rows on demand.
    return (lambda: iter(data)), f"hf:{data._fingerprint}", info


def template_columns(spec: TaskSpec) -> set[str]:
    names: set[str] = set()
    for parts in (spec.prompt, *spec.prompts.values()):
        for part in parts:
            if part.kind == "text":
                names |= meta.find_undeclared_variables(ENV.parse(part.value))
    if spec.system:
        names |= meta.find_undeclared_variables(ENV.parse(spec.system))
    return names - {"options", "options_block", "doc"}


def check_columns(spec: TaskSpec, docs: list[dict[str, Any]]) -> None:
    """Every column the task names must exist; the error lists the columns that do."""
    if not docs:
        return
    present = set(docs[0])
    needed: dict[str, str] = {}
    for key in ("doc_id", "target", "cluster_by"):
        col = getattr(spec, key)
        if col and "{{" in col:
            for name in meta.find_undeclared_variables(ENV.parse(col)) - {"doc"}:
                needed.setdefault(name, key)
        elif col:
            needed[col] = key
    if isinstance(spec.choices, str):
        needed[spec.choices] = "choices"
    # With one column per option, a dataset may lack the last ones (fewer options): not required.
    for parts in (spec.prompt, *spec.prompts.values()):
        for part in parts:
            if part.kind != "text":
                needed[part.value] = f"prompt {part.kind}"
    for name, template in spec.breakdown:
        for col in meta.find_undeclared_variables(ENV.parse(template)) - {"doc"}:
            needed.setdefault(col, f"breakdown {name}")
    for col in template_columns(spec):
        needed.setdefault(col, "prompt template")
    for col, role in needed.items():
        if col not in present:
            raise DatasetError(
                f"task {spec.task} ({spec.source}): column {col!r} ({role}) is not in the dataset; "
                f"columns present: {', '.join(sorted(present))}"
            )


def _filtered(rows: Callable[[], Iterator[Row]], where: dict[str, Any], spec: TaskSpec) -> Callable[[], Iterator[Row]]:
    """Keep the rows whose columns equal the given values (a list value: any of them)."""
    wanted = {k: set(v) if isinstance(v, list) else {v} for k, v in where.items()}

    def kept() -> Iterator[Row]:
        for i, row in enumerate(rows()):
            if i == 0:
                missing = sorted(set(where) - set(row))
                if missing:
                    raise DatasetError(
                        f"task {spec.task} ({spec.source}): dataset.filter column(s) {missing} not in the dataset; "
                        f"columns present: {', '.join(sorted(row))}"
                    )
            if all(row.get(k) in vals for k, vals in wanted.items()):
                yield row

    return kept


def _media_value(value: Any, root: Path | None) -> Any:
    if isinstance(value, (list, tuple)) and not isinstance(value, (bytes, bytearray)):
        # A column holding several media (SEED-Bench's image list): one part per item.
        return [_media_value(v, root) for v in value] if value else {"error": "media list is empty"}
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return bytes(value["bytes"])
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value:
        return confine(value, root)
    return {"error": f"media value is empty or not a path/bytes: {value!r}"}


def confine(path: str, root: Path | None) -> str | dict[str, str]:
    """Resolve a media path against the dataset root; refuse paths that escape it.

    A refused path becomes ``{"error": ...}``, which fails only that sample, with a clear message.
    What is confined is the path *the dataset's text names*: ``..`` segments and absolute paths
    are what a traversal uses. Symlinks on disk are followed: they are the user's file system
    layout, not the dataset's text, and legitimate layouts depend on them (a hub snapshot's files
    link into ``../../blobs``; ``mmeval data prepare`` links the media folder). String operations
    (normpath) rather than Path.resolve: this runs once per document and must stay cheap at 100k+
    documents."""
    if root is None:
        return path
    base = _root_str(root)
    full = os.path.normpath(os.path.join(base, path))
    if not (full == base or full.startswith(base + os.sep)):
        return {"error": f"media path {path!r} is outside the dataset root {base}; refused"}
    return full


@functools.lru_cache(maxsize=64)
def _root_str(root: Path) -> str:
    return str(root.resolve())


def _unique(spec: TaskSpec, ids: list[str]) -> list[str]:
    seen: set[str] = set()
    for i, doc_id in enumerate(ids):
        if doc_id in seen:
            raise DatasetError(f"task {spec.task}: doc_id column {spec.doc_id!r} is not unique: {doc_id!r} repeats (row {i + 1})")
        seen.add(doc_id)
    return ids
