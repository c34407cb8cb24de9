"""Load a task's documents from a local file/folder, a generated fixture, or the HF hub.

Every document is a plain dict. Media columns are normalised to an absolute path (confined
to the dataset root), raw bytes, or None; anything else is left to the prompt renderer.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import meta

from mmeval.tasks.prompts import ENV
from mmeval.tasks.spec import TaskSpec

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


def load_docs(spec: TaskSpec, limit: int | float | None = None, cache_root: Path | None = None) -> LoadedDataset:
    ds = spec.dataset
    if ds.fixture:
        from mmeval.tasks.fixtures import fixture_dir

        root = fixture_dir(ds.fixture, cache_root)
        docs, fingerprint, source = _load_local(root, spec)
        info = {"fixture": ds.fixture, "path": str(root)}
    elif ds.is_hub:
        docs, fingerprint, info = _load_hub(spec)
        root = None
    else:
        root = _resolve_local(ds.path or "", spec)
        docs, fingerprint, source = _load_local(root, spec)
        info = {"path": str(source)}
    info.update({"split": ds.split, "revision": ds.revision, "fingerprint": fingerprint})
    if ds.filter:
        docs = _apply_filter(docs, ds.filter, spec)
        info["filter"] = ds.filter
    total = len(docs)
    if limit is not None:
        n = int(limit * total) if isinstance(limit, float) and limit < 1 else int(limit)
        docs = docs[:n]
    check_columns(spec, docs)
    media_root = _media_root(spec, root)
    media_columns = {p.value for parts in (spec.prompt, *spec.prompts.values()) for p in parts if p.kind != "text"}
    if spec.output_modality != "text" and "{{" not in spec.target:
        media_columns.add(spec.target)  # a generation task's references are media too (FID's real images)
    for doc in docs:
        for col in media_columns:
            doc[col] = _media_value(doc.get(col), media_root)
    doc_ids = _doc_ids(spec, docs)
    return LoadedDataset(docs=docs, doc_ids=doc_ids, fingerprint=fingerprint, info=info, total=total)


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


def _load_local(root: Path, spec: TaskSpec) -> tuple[list[dict[str, Any]], str, Path]:
    path = _data_file(root)
    raw = path.read_bytes()
    fingerprint = "sha256:" + hashlib.sha256(raw).hexdigest()
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        docs = list(_read_jsonl(raw, path))
    elif suffix == ".json":
        data = _parse_json(raw, path)
        if not isinstance(data, list):
            raise DatasetError(f"{path}: a .json dataset must be a list of objects")
        docs = data
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        docs = pq.read_table(path).to_pylist()
    elif suffix == ".csv":
        import pandas as pd

        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        docs = frame.to_dict(orient="records")
        for doc in docs:  # list-valued columns (answers, options) are written as JSON in CSV
            for key, value in doc.items():
                if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
                    with contextlib.suppress(json.JSONDecodeError):
                        doc[key] = json.loads(value)
    else:
        raise DatasetError(f"{path}: unsupported dataset file type {suffix!r} (use jsonl, json, parquet or csv)")
    return docs, fingerprint, path


def _parse_json(raw: bytes, path: Path, lineno: int | None = None) -> Any:
    """json.loads with an error naming the file and line (``lineno``: the jsonl line)."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: line {lineno or exc.lineno}: invalid JSON: {exc.msg}") from exc


def _read_jsonl(raw: bytes, path: Path) -> Iterator[dict[str, Any]]:
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        obj = _parse_json(line, path, lineno)
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}: line {lineno}: expected a JSON object, got {type(obj).__name__}")
        yield obj


def _load_hub(spec: TaskSpec) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
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
    return list(data), f"hf:{data._fingerprint}", info


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


def _apply_filter(docs: list[dict[str, Any]], where: dict[str, Any], spec: TaskSpec) -> list[dict[str, Any]]:
    """Keep the rows whose columns equal the given values (a list value: any of them)."""
    if docs:
        missing = sorted(set(where) - set(docs[0]))
        if missing:
            raise DatasetError(
                f"task {spec.task} ({spec.source}): dataset.filter column(s) {missing} not in the dataset; "
                f"columns present: {', '.join(sorted(docs[0]))}"
            )
    wanted = {k: set(v) if isinstance(v, list) else {v} for k, v in where.items()}
    return [d for d in docs if all(d.get(k) in vals for k, vals in wanted.items())]


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
    String operations (normpath) rather than Path.resolve: this runs once per document and must
    stay cheap at 100k+ documents; ``..`` segments are what a traversal uses."""
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


def _doc_ids(spec: TaskSpec, docs: list[dict[str, Any]]) -> list[str]:
    if not spec.doc_id:
        return [str(i) for i in range(len(docs))]
    ids = [str(doc[spec.doc_id]) for doc in docs]
    seen: set[str] = set()
    for i, doc_id in enumerate(ids):
        if doc_id in seen:
            raise DatasetError(f"task {spec.task}: doc_id column {spec.doc_id!r} is not unique: {doc_id!r} repeats (row {i + 1})")
        seen.add(doc_id)
    return ids
