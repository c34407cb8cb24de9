"""Video generation quality: CLIPSIM (per sample) and FVD (corpus).

- CLIPSIM (Wu et al. 2021, GODIVA; used by CogVideo, Make-A-Video, VideoFusion, NExT-GPT's
  T2V table): the mean over frames of the cosine similarity between each frame's CLIP image
  embedding and the caption's CLIP text embedding. The raw cosine, as that literature reports
  it (0.2-0.3 for real CLIP ViT-B/32), not clamped at 0; kwarg ``scale`` (default 1) multiplies
  it for papers that report it x100. Frames: ``frames`` (default 16) evenly spaced over the clip
  (all of them for shorter clips), decoded with :func:`mmeval.media.video.decode_video`; one
  batch of CLIP forward passes covers the frames of many clips.
- FVD (Unterthiner et al. 2018): the Fréchet distance between I3D features of the generated
  clips and of every document's reference clip, as FID is computed for images (shared code in
  :mod:`mmeval.metrics.image_gen`); extractor ``i3d`` by default
  (:mod:`mmeval.metrics.extractors.i3d` documents the TorchScript network and its calling
  convention), kwargs ``frames`` (16) and ``frame_sampling`` (even | consecutive) go to the
  extractor; a clip shorter than ``frames`` is an error naming its file. CI: bootstrap over the
  generated clips (``bootstrap``, default 100).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mmeval.metrics.extractors.i3d import DEFAULT_FRAMES
from mmeval.metrics.features import media_part
from mmeval.metrics.image_gen import ClipMetric, FrechetMetric, _int_arg


class CLIPSIM(ClipMetric):
    name: ClassVar[str] = "clipsim"
    default_scale: ClassVar[float] = 1.0
    chunk: ClassVar[int] = 16  # clips decoded at a time (x frames each)
    own_args: ClassVar[frozenset[str]] = frozenset({"caption", "scale", "frames"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.frames = _int_arg(self.name, "frames", kwargs.get("frames", DEFAULT_FRAMES), 1)

    def similarities(self, paths: list[str], texts: np.ndarray) -> list[float]:
        from PIL import Image

        from mmeval.media.video import decode_video, sample_frames

        frames, owner = [], []
        for i, path in enumerate(paths):
            clip, _ = decode_video(media_part("video", path))
            for frame in sample_frames(clip, self.frames):
                frames.append(Image.fromarray(frame))
                owner.append(i)
        cos = (self.embedder.image_embeddings(frames) * texts[np.asarray(owner)]).sum(axis=1)
        sums = np.bincount(owner, weights=cos, minlength=len(paths))
        counts = np.bincount(owner, minlength=len(paths))
        return [self.scale * float(s / c) for s, c in zip(sums, counts, strict=True)]


class FVD(FrechetMetric):
    name: ClassVar[str] = "fvd"
    modality: ClassVar[str] = "video"
    default_extractor: ClassVar[str] = "i3d"
    run_args: ClassVar[frozenset[str]] = frozenset({"i3d_torchscript", "device", "feature_batch_size"})
    extra_extractor_args: ClassVar[frozenset[str]] = frozenset({"frames", "frame_sampling"})

    def __init__(self, **kwargs: Any) -> None:
        if "frames" in kwargs:
            _int_arg(self.name, "frames", kwargs["frames"], 1)
        super().__init__(**kwargs)
