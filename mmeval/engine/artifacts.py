"""Generated media: content-addressed under the run directory, kept alongside the cache.

An adapter returns ``Artifact`` objects holding encoded bytes. Before a batch's responses
are cached, ``ArtifactStore.store`` writes each one to

    <run>/artifacts/<sha[:2]>/<sha>.<format>          (what samples and the site link to)
    <cache>.artifacts/<sha[:2]>/<sha>.<format>         (a hard link, or a copy across devices)

and replaces the bytes with the run-relative path, so the response cache holds only paths and
hashes. On a cache hit in a later run, ``restore`` links the blob into the new run directory;
a blob that has gone missing (a deleted cache folder) makes the hit a miss, so the sample is
generated again rather than pointing at nothing.

Writes are atomic (temp file + rename) and idempotent: the same media is stored once per run
however many samples produce it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mmeval.engine.store import atomic_write_bytes
from mmeval.types import Artifact, Response

ARTIFACTS_DIR = "artifacts"


def relative_path(artifact: Artifact) -> str:
    fmt = "".join(c for c in artifact.format if c.isalnum()) or "bin"
    return f"{ARTIFACTS_DIR}/{artifact.sha256[:2]}/{artifact.sha256}.{fmt}"


class ArtifactStore:
    def __init__(self, run_dir: Path, blob_dir: Path | None = None) -> None:
        self.run_dir = run_dir
        self.blob_dir = blob_dir

    def store(self, response: Response) -> Response:
        """Write the response's in-memory artifacts; afterwards every artifact has a path."""
        for art in response.artifacts:
            if art.data is None:
                continue
            rel = relative_path(art)
            target = self.run_dir / rel
            if not target.exists():
                atomic_write_bytes(target, art.data)
            if self.blob_dir is not None:
                blob = self.blob_dir / rel.removeprefix(ARTIFACTS_DIR + "/")
                if not blob.exists():
                    _link_or_copy(target, blob)
            art.path, art.data = rel, None
        return response

    def restore(self, response: Response) -> bool:
        """Make a cached response's artifacts present in this run; False if a blob is gone."""
        for art in response.artifacts:
            target = self.run_dir / art.path
            if target.exists():
                continue
            if self.blob_dir is None:
                return False
            blob = self.blob_dir / art.path.removeprefix(ARTIFACTS_DIR + "/")
            if not blob.exists():
                return False
            _link_or_copy(blob, target)
        return True


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        os.link(src, tmp)
    except OSError:  # another filesystem, or links not allowed: copy
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
