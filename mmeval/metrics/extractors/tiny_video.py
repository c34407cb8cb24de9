"""A tiny deterministic random video network (extractor ``tiny-video``), for tests only.

Its numbers mean nothing outside tests (random weights). It lets FVD run end to end without the
I3D TorchScript file, through the same clip loading as ``i3d`` (``frames`` evenly sampled or
consecutive; a shorter clip is an error naming it).

Features (128-d): the mean over frames of the ``tiny-image`` per-frame features (appearance),
then the mean absolute difference between consecutive frames' features (motion), so a clip and
the same frames shuffled in time get different features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from mmeval.metrics.extractors.i3d import DEFAULT_FRAMES, frames_arg, load_clip, sampling_arg
from mmeval.metrics.extractors.tiny_image import TinyImageNet
from mmeval.metrics.features import FeatureExtractor, MediaSource

VERSION = "tiny-video-v1"


class TinyVideoExtractor(FeatureExtractor):
    modality = "video"
    args: ClassVar[frozenset[str]] = frozenset({"frames", "frame_sampling"})
    dim = 128

    def __init__(self, frames: Any = DEFAULT_FRAMES, frame_sampling: str = "even") -> None:
        self.frames = frames_arg(frames)
        self.sampling = sampling_arg(frame_sampling)
        self.id = f"{VERSION}:{self.frames}f-{self.sampling}"
        self.net = TinyImageNet()

    def features(self, items: Sequence[MediaSource]) -> np.ndarray:
        out = np.zeros((len(items), self.dim))
        for i, src in enumerate(items):
            per_frame, _ = self.net.embed(list(load_clip(src, self.frames, self.sampling)))
            motion = np.abs(np.diff(per_frame, axis=0)).mean(axis=0) if len(per_frame) > 1 else np.zeros(per_frame.shape[1])
            out[i] = np.concatenate([per_frame.mean(axis=0), motion])
        return out
