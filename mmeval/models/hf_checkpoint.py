"""Where a transformers checkpoint comes from and what identifies it, without loading weights.

Shared by every transformers adapter: a local directory is identified by its files
(``local_dir_fingerprint``), a hub id is pinned to one commit first, so config, processor and
weights come from the same repository state and that commit is what the fingerprint records.
torch and transformers are imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from mmeval.models.base import ModelArgsError
from mmeval.types import sha256_file

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
SAMPLE_BYTES = 1 << 20  # bytes hashed at each end of a weight file

_COMMIT_RE = re.compile(r"[0-9a-f]{40}")


def _sample_sha256(path: Path) -> str:
    """sha256 of the first and last MiB of a file.

    Hashing a 14 GB checkpoint in full would add minutes to every run, for a cache key.
    Size + both ends catch re-saves and fine-tunes in practice: the safetensors header (tensor
    names, shapes, offsets) is at the start and the last tensors at the end. An edit confined
    to the middle of a same-size file would go unnoticed; the name is part of the key too.
    """
    size = path.stat().st_size
    h = hashlib.sha256()
    with path.open("rb") as fh:
        h.update(fh.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            fh.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            h.update(fh.read(SAMPLE_BYTES))
    return h.hexdigest()


def local_dir_fingerprint(path: Path) -> dict[str, Any]:
    """Content identity of a checkpoint directory: full hashes of config/tokenizer/processor
    files, and name + size + end hashes of weight files (see ``_sample_sha256``)."""
    files: dict[str, Any] = {}
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel.startswith(".") or "/." in rel or rel.endswith((".md", ".lock")):
            continue  # caches, READMEs: nothing that changes outputs
        if f.name.endswith(WEIGHT_SUFFIXES):
            files[rel] = {"size": f.stat().st_size, "ends_sha256": _sample_sha256(f)}
        else:
            files[rel] = sha256_file(f)
    return files


def safetensors_param_count(path: Path) -> int | None:
    """Parameters in a checkpoint directory, from the safetensors headers (no weights read)."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with f.open("rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return total


def _resolve_hub_revision(repo_id: str, revision: str) -> tuple[str, str | None]:
    """(revision to load with, its commit sha if known). Best effort and offline-safe:
    transformers falls back to the cache or reports the real loading error itself."""
    if _COMMIT_RE.fullmatch(revision):
        return revision, revision
    try:
        from transformers.utils.hub import resolve_revision  # transformers >= 5.x
    except ImportError:
        return revision, None
    resolved = resolve_revision(repo_id, revision)
    return resolved, getattr(resolved, "resolved", None)


def _snapshot_commit(repo_id: str, revision: str) -> str | None:
    """The commit of the cached snapshot the files were loaded from (snapshots/<sha>/...)."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if isinstance(path, str) and _COMMIT_RE.fullmatch(Path(path).parent.name):
        return Path(path).parent.name
    return None


def _image_backend() -> str:
    """Which image-processor backend transformers will pick (it prefers torchvision when
    installed); PIL and torchvision resize differently, so it is part of the fingerprint."""
    from transformers.utils import is_torchvision_available

    return "torchvision" if is_torchvision_available() else "pil"


class Checkpoint:
    """One checkpoint (hub id or local dir) and its identity, resolved without loading weights.

    ``strict`` paths (the audio adapters): ``~`` expands, a path-like ``pretrained`` that is
    no directory is refused rather than looked up on the hub, ``from_pretrained`` gets the
    normalised directory, and an unreadable config is a ModelArgsError. Not strict (the
    vision adapters, as they always behaved): ``pretrained`` goes to ``from_pretrained`` as
    given and loading errors surface as transformers raises them.
    """

    def __init__(self, owner: str, pretrained: str, revision: str = "main", *, strict: bool = True) -> None:
        self.owner = owner
        self.pretrained = pretrained
        self.revision = revision
        self.strict = strict
        local = Path(pretrained).expanduser() if strict else Path(pretrained)
        self.local_dir = local if local.is_dir() else None
        self.commit: str | None = None
        self.load_revision = revision
        if self.local_dir is None:
            if strict and pretrained.startswith((".", "/", "~")):
                raise ModelArgsError(f"{owner}: {pretrained!r} is not a directory (give a checkpoint dir or a hub id)")
            # Pin a branch/tag to one commit first, so processor and weights come from the same
            # repository state and that state is what the fingerprint records.
            self.load_revision, self.commit = _resolve_hub_revision(pretrained, revision)

    @property
    def source(self) -> str:
        """What ``from_pretrained`` loads: the local dir, or the hub id."""
        if self.strict and self.local_dir is not None:
            return str(self.local_dir)
        return self.pretrained

    def kwargs(self) -> dict[str, Any]:
        if self.local_dir is not None:
            return {"revision": self.revision, "local_files_only": True}  # never turn a typo'd path into a hub lookup
        return {"revision": self.load_revision}

    def config(self) -> Any:
        from transformers import AutoConfig

        if not self.strict:
            return AutoConfig.from_pretrained(self.source, **self.kwargs())
        try:
            return AutoConfig.from_pretrained(self.source, **self.kwargs())
        except (OSError, ValueError) as exc:
            raise ModelArgsError(f"{self.owner}: cannot read the config of {self.pretrained!r}: {exc}") from exc

    def generation_config(self) -> Any | None:
        """The checkpoint's generation_config.json, or None where it has none."""
        from transformers import GenerationConfig as HfGenerationConfig

        try:
            return HfGenerationConfig.from_pretrained(self.source, **self.kwargs())
        except (OSError, ValueError):
            return None

    def identity(self) -> dict[str, Any]:
        if self.local_dir is not None:
            return {"files": local_dir_fingerprint(self.local_dir)}
        # A commit sha names the weights exactly; a bare revision is the best we have.
        return {"commit": self.commit or self.revision}

    def params(self) -> int | None:
        return safetensors_param_count(self.local_dir) if self.local_dir else None

    def loaded(self) -> None:
        """After loading from the hub: record the commit of the cached snapshot."""
        if self.local_dir is None and self.commit is None:
            self.commit = _snapshot_commit(self.pretrained, self.load_revision)

    def info(self) -> dict[str, Any]:
        return {"pretrained": self.pretrained, "revision": self.revision, "commit": self.commit}
