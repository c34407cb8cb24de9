"""The I3D video network of the common FVD implementation (extractor ``i3d``).

FVD (Unterthiner et al. 2018) is a Fréchet distance between I3D (Kinetics-400) features of real
and generated clips. The original code runs a TF-Hub I3D; most recent video-generation papers
use StyleGAN-V's (Skorokhodov et al. 2022) TorchScript port, ``i3d_torchscript.pt``
(distributed at https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt, ~50 MB), which
its authors checked against the TF model (universome/fvd-comparison). mmeval loads that file
with ``torch.jit.load`` from ``i3d_torchscript=PATH`` and calls it as StyleGAN-V's
``compute_fvd`` does:

    features = detector(videos, rescale=True, resize=True, return_features=True)

- ``videos``: uint8 values, shape (N, 3, T, H, W) (channels before time), RGB;
- ``rescale=True``: the module maps [0, 255] to the [-1, 1] range I3D was trained on;
- ``resize=True``: the module resizes every frame to 224x224 itself;
- ``return_features=True``: the 400-d output before the softmax (the "logits" layer the TF FVD
  code takes), rather than class probabilities.

(The other convention found in the wild, ``rescale=False, resize=False``, expects float input
already in [-1, 1] at 224x224.) Clips in one call must share a shape, so a batch is split by
frame size.

Frames: ``frames`` (default 16, StyleGAN-V's ``fvd2048_16f``) per clip. ``frame_sampling:
even`` (default) takes them evenly spaced over the whole clip
(:func:`mmeval.media.video.sample_frames`); ``consecutive`` takes the first ``frames`` frames,
as StyleGAN-V does (the two agree for clips of exactly ``frames`` frames). A clip with fewer
frames is an error naming the file: I3D's temporal pooling needs them, and padding would bias
the statistics. StyleGAN-V's covariance divides by n, mmeval's (:mod:`mmeval.metrics.frechet`)
by n - 1, as the FID reference code does; the difference vanishes with the usual 2048 clips.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmeval.metrics.extractors.clip import batch_size_arg
from mmeval.metrics.features import ExtractorError, ExtractorWeightsError, FeatureExtractor, MediaSource, media_part
from mmeval.types import MediaError, sha256_file

I3D_FILE = "i3d_torchscript.pt"
I3D_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt"
DEFAULT_FRAMES = 16
SAMPLINGS = ("even", "consecutive")


def frames_arg(value: Any) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ExtractorError(f"frames must be a positive integer, got {value!r}")
    return n


def sampling_arg(value: Any) -> str:
    s = str(value or "even")
    if s not in SAMPLINGS:
        raise ExtractorError(f"frame_sampling must be one of {', '.join(SAMPLINGS)}, got {value!r}")
    return s


def load_clip(src: MediaSource, frames: int, sampling: str = "even") -> np.ndarray:
    """(frames, H, W, 3) uint8 frames of one video; a shorter clip is a MediaError naming it."""
    from mmeval.media.video import decode_video, sample_frames

    part = media_part("video", src)
    video, _ = decode_video(part, max_frames=frames if sampling == "consecutive" else None)
    if video.shape[0] < frames:
        raise MediaError(
            f"video {part.path or '<bytes>'} has {video.shape[0]} frames; the video features need at least {frames} "
            "(set the metric's frames argument lower to score shorter clips)"
        )
    return video[:frames] if sampling == "consecutive" else sample_frames(video, frames)


class I3DTorchScript(FeatureExtractor):
    """Extractor ``i3d``: 400-d I3D features per clip from StyleGAN-V's TorchScript file."""

    modality = "video"
    args: ClassVar[frozenset[str]] = frozenset({"i3d_torchscript", "device", "feature_batch_size", "frames", "frame_sampling"})
    dim = 400

    def __init__(
        self,
        i3d_torchscript: str | None = None,
        device: str = "cpu",
        feature_batch_size: Any = None,
        frames: Any = DEFAULT_FRAMES,
        frame_sampling: str = "even",
    ) -> None:
        if not i3d_torchscript:
            raise ExtractorWeightsError(
                f"the i3d extractor needs StyleGAN-V's TorchScript I3D: download {I3D_FILE} from {I3D_URL} "
                "and pass --metric-args i3d_torchscript=PATH"
            )
        self.path = Path(i3d_torchscript).expanduser()
        if not self.path.is_file():
            raise ExtractorWeightsError(f"i3d_torchscript={i3d_torchscript}: no such file (download {I3D_FILE} from {I3D_URL})")
        self.device = str(device or "cpu")
        self.batch_size = batch_size_arg(feature_batch_size, default=8)
        self.frames = frames_arg(frames)
        self.sampling = sampling_arg(frame_sampling)
        self.id = f"i3d-torchscript-v1:sha256:{sha256_file(self.path)[:16]}:{self.frames}f-{self.sampling}"
        self._net: Any = None

    def _network(self) -> Any:
        if self._net is None:
            import torch

            try:
                self._net = torch.jit.load(str(self.path), map_location=self.device).eval()
            except Exception as exc:
                raise ExtractorWeightsError(f"i3d_torchscript={self.path}: not a TorchScript file torch.jit.load can read ({exc})") from exc
        return self._net

    def _run(self, clips: list[np.ndarray]) -> np.ndarray:
        import torch

        net = self._network()
        out = np.zeros((len(clips), self.dim))
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, clip in enumerate(clips):
            groups.setdefault(clip.shape, []).append(i)
        for idx in groups.values():
            # (N, T, H, W, 3) -> (N, 3, T, H, W), uint8 as StyleGAN-V feeds it
            x = torch.from_numpy(np.stack([clips[i] for i in idx])).permute(0, 4, 1, 2, 3).contiguous().to(self.device)
            with torch.inference_mode():
                feats = net(x, rescale=True, resize=True, return_features=True)
            feats = feats.double().cpu().numpy()
            if feats.shape != (len(idx), self.dim):
                raise ExtractorError(
                    f"i3d_torchscript={self.path}: returned features of shape {feats.shape}, expected ({len(idx)}, {self.dim})"
                )
            out[idx] = feats
        return out

    def features(self, items: Sequence[MediaSource]) -> np.ndarray:
        out = [np.zeros((0, self.dim))]
        for start in range(0, len(items), self.batch_size):
            out.append(self._run([load_clip(src, self.frames, self.sampling) for src in items[start : start + self.batch_size]]))
        return np.concatenate(out)
