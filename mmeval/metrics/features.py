"""Feature extractors for distribution metrics (FID, KID, IS, FAD, FVD), and the cache of
reference-set features.

An extractor maps media (a path or encoded bytes) to one float vector each; some also give
class logits (Inception Score). Extractors are chosen by name in a metric's arguments:

    metrics: [{name: fid, extractor: inception}]
    mmeval run ... --metric-args inception_weights=/models/pt_inception-2015-12-05-6726825d.pth

Built-in names are listed in ``EXTRACTORS``; ``module:<pkg.module>:<factory>`` calls a user's
factory with the metric's extractor arguments and uses what it returns (any object with this
class's interface); the factory must live in this project's checkout or an installed plugin
(``mmeval.metrics.base.load_hook``), so a task file cannot name ``os:system``. Weights are
never downloaded silently and never replaced by random ones: a missing path is an
``ExtractorWeightsError`` naming the argument to set.

Reference features (the real images of COCO-30k, the AudioCaps clips...) are computed once
and cached under ``<cache>/refstats/``, keyed by the extractor's ``id`` (weights + preprocessing)
and the sha256 of every reference file, in order-independent form.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmeval.metrics.base import MetricArgsError, load_hook
from mmeval.types import MediaError, MediaPart, Modality

MediaSource = str | bytes | dict  # a path, encoded bytes, or a loader's {"error": ...}

EXTRACTORS: dict[str, str] = {
    "inception": "mmeval.metrics.extractors.inception:InceptionFID",
    "clip": "mmeval.metrics.extractors.clip:ClipImageFeatures",
    "tiny-image": "mmeval.metrics.extractors.tiny_image:TinyImageExtractor",
    "clap": "mmeval.metrics.extractors.clap:ClapAudioFeatures",
    "vggish": "mmeval.metrics.extractors.vggish:VGGish",
    "tiny-audio": "mmeval.metrics.extractors.tiny_audio:TinyAudioExtractor",
    "i3d": "mmeval.metrics.extractors.i3d:I3DTorchScript",
    "tiny-video": "mmeval.metrics.extractors.tiny_video:TinyVideoExtractor",
}


class ExtractorError(MetricArgsError):
    """A bad extractor name or argument."""


class ExtractorWeightsError(ExtractorError):
    """The extractor's weights are not where the arguments say (or no path was given)."""


class FeatureExtractor:
    """Base class. Subclasses set ``modality`` and ``args`` (the metric arguments they read),
    compute ``id`` and ``dim`` in ``__init__``, and implement ``features``."""

    modality: ClassVar[Modality] = "image"
    args: ClassVar[frozenset[str]] = frozenset()
    id: str = "extractor"
    dim: int = 0

    def features(self, items: Sequence[MediaSource]) -> np.ndarray:
        """(len(items), dim) float64. A MediaError names the item that could not be decoded."""
        raise NotImplementedError

    def logits(self, items: Sequence[MediaSource]) -> np.ndarray:
        """(len(items), classes) float64 class logits, for the Inception Score."""
        raise ExtractorError(f"feature extractor {self.id!r} has no classifier head; the Inception Score needs extractor=inception")


def get_extractor(name: str, args: dict[str, Any]) -> FeatureExtractor:
    """Build an extractor from its name and the metric's arguments (it reads its own keys)."""
    if name.startswith("module:"):
        # The name comes from a task file: load_hook refuses modules outside trusted code.
        return load_hook(name.removeprefix("module:"), f"extractor {name!r}")(**args)
    if name not in EXTRACTORS:
        raise ExtractorError(f"unknown feature extractor {name!r}; known: {', '.join(sorted(EXTRACTORS))}, or module:<pkg.mod>:<factory>")
    module, _, attr = EXTRACTORS[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls(**{k: v for k, v in args.items() if k in cls.args})


def extractor_arg_names() -> frozenset[str]:
    """Every argument some built-in extractor reads (metrics accept these at run time)."""
    return frozenset(
        {
            "inception_weights",
            "clip_model",
            "clip_revision",
            "clap_model",
            "clap_revision",
            "vggish_weights",
            "i3d_torchscript",
            "device",
            "feature_batch_size",
        }
    )


def media_part(modality: Modality, src: MediaSource) -> MediaPart:
    """A loader value (path, bytes, or {"error": ...}) as a MediaPart to decode."""
    if isinstance(src, dict):
        return MediaPart(modality, error=str(src.get("error") or f"not a {modality}: {src!r}"))
    if isinstance(src, (bytes, bytearray)):
        return MediaPart(modality, data=bytes(src))
    return MediaPart(modality, path=str(src))


def weights_fingerprint(path: Path) -> str:
    """Cheap identity of a large weights file for cache keys: its size and its first and last MiB
    (hashing a whole multi-hundred-MB checkpoint whenever a metric is built would be slow)."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        h.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), 2)
            h.update(fh.read())
    return h.hexdigest()[:16]


def checkpoint_fingerprint(folder: Path, configs: Sequence[str], weights: Sequence[str]) -> str:
    """Identity of a local checkpoint folder: the bytes of its config files and the fingerprints
    of its weight files (those present, in the order given)."""
    h = hashlib.sha256()
    for name in configs:
        if (folder / name).is_file():
            h.update((folder / name).read_bytes())
    for name in weights:
        if (folder / name).is_file():
            h.update(f"{name}:{weights_fingerprint(folder / name)}".encode())
    return h.hexdigest()[:16]


def source_hash(modality: Modality, src: MediaSource) -> str:
    return media_part(modality, src).sha256()


# --------------------------------------------------------------------------- reference cache


def _refstats_dir() -> Path:
    from mmeval.tasks.fixtures import default_cache_root

    return default_cache_root() / "refstats"


def reference_key(
    extractor: FeatureExtractor, refs: Sequence[MediaSource], kind: str = "features", hashes: Sequence[str] | None = None
) -> str:
    """Cache key of a reference set; ``hashes``: the references' sha256s when already computed."""
    if hashes is None:
        hashes = [source_hash(extractor.modality, r) for r in refs]
    h = hashlib.sha256(f"{kind}\n{extractor.id}\n".encode())
    for x in sorted(hashes):
        h.update(x.encode())
    return h.hexdigest()


def reference_features(extractor: FeatureExtractor, refs: Sequence[MediaSource], kind: str = "features") -> tuple[np.ndarray, bool]:
    """Features (or logits, ``kind="logits"``) of the reference set, from the cache when there.

    Returns (array, from_cache). Rows follow the sorted sha256 order of the references, so the
    same set in another order hits the same entry. A corrupt reference is a MediaError: the
    reference set defines the target distribution and must be complete."""
    hashes = [source_hash(extractor.modality, r) for r in refs]  # once: bytes references are hashed in full
    key = reference_key(extractor, refs, kind, hashes)
    path = _refstats_dir() / f"{key}.npy"
    if path.is_file():
        try:
            return np.load(path), True
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a torn or corrupt entry: recompute it
    order = sorted(range(len(refs)), key=hashes.__getitem__)
    items = [refs[i] for i in order]
    feats = extractor.logits(items) if kind == "logits" else extractor.features(items)
    feats = np.asarray(feats, dtype=np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
    with os.fdopen(fd, "wb") as fh:
        np.save(fh, feats)
    os.replace(tmp, path)
    return feats, False


def generated_sources(parsed: Sequence[Any], root: Path | None) -> tuple[list[str], list[int]]:
    """The first generated media file of each parsed sample (``MediaParser`` output), as an
    absolute path, and the indices of the samples that have one."""
    paths, idx = [], []
    for i, p in enumerate(parsed):
        media = p.get("media") if isinstance(p, dict) else None
        if media:
            paths.append(str((root / media[0]) if root is not None else Path(media[0])))
            idx.append(i)
    return paths, idx


def check_decodable(modality: Modality, src: MediaSource) -> None:
    """Raise MediaError now (naming the file) rather than deep inside a batch."""
    part = media_part(modality, src)
    if part.error:
        raise MediaError(part.error)
