"""A tiny deterministic random image network (extractor ``tiny-image``), for tests only.

The numbers it gives mean nothing outside tests: its weights are random. It exists so FID,
KID and the Inception Score run end to end (decoding, batching, reference cache, statistics) in
well under a second on a CPU, without the 90 MB Inception weights.

Images are decoded to RGB, resized to 32x32 (PIL bilinear), scaled to [-1, 1] and passed
through three stride-2 3x3 convolutions with tanh (16, 32, 64 channels); the 64 channels are
mean-pooled into the feature vector, and a linear layer gives 10 class logits. Weights are drawn
from a private ``torch.Generator`` with a fixed seed, so they never depend on (or disturb) the
global RNG, and everything runs in float64 so a sample's features do not depend on which batch
it was in. The id is versioned: change the network, bump ``VERSION`` (cached reference features
are keyed by it).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from mmeval.metrics.extractors.clip import batch_size_arg
from mmeval.metrics.features import FeatureExtractor, MediaSource, media_part

VERSION = "tiny-image-v1"
SIZE = 32
CHANNELS = (3, 16, 32, 64)
NUM_CLASSES = 10
SEED = 20240611


class TinyImageNet:
    """The network itself: ``embed`` maps uint8 (N, H, W, 3) frames to (features, logits)."""

    def __init__(self, seed: int = SEED) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.convs = []
        for cin, cout in itertools.pairwise(CHANNELS):
            w = torch.randn(cout, cin, 3, 3, generator=gen, dtype=torch.float64) * (2.0 / (cin * 9)) ** 0.5
            b = torch.randn(cout, generator=gen, dtype=torch.float64) * 0.1
            self.convs.append((w, b))
        self.head_w = torch.randn(NUM_CLASSES, CHANNELS[-1], generator=gen, dtype=torch.float64) * 2.0
        self.head_b = torch.randn(NUM_CLASSES, generator=gen, dtype=torch.float64) * 0.1

    def embed(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image

        if not len(frames):
            return np.zeros((0, CHANNELS[-1])), np.zeros((0, NUM_CLASSES))
        small = [np.asarray(Image.fromarray(np.asarray(f, dtype=np.uint8)).resize((SIZE, SIZE), Image.Resampling.BILINEAR)) for f in frames]
        x = torch.from_numpy(np.stack(small)).permute(0, 3, 1, 2).to(torch.float64) / 127.5 - 1.0
        for w, b in self.convs:
            x = torch.tanh(F.conv2d(x, w, b, stride=2, padding=1))
        feats = x.mean(dim=(2, 3))
        logits = feats @ self.head_w.T + self.head_b
        return feats.numpy(), logits.numpy()


class TinyImageExtractor(FeatureExtractor):
    """Extractor ``tiny-image``: 64-d features and 10 logits from :class:`TinyImageNet`."""

    modality = "image"
    args: ClassVar[frozenset[str]] = frozenset({"feature_batch_size"})
    id = VERSION
    dim = CHANNELS[-1]

    def __init__(self, feature_batch_size: Any = None) -> None:
        self.batch_size = batch_size_arg(feature_batch_size)
        self.net = TinyImageNet()

    def features_and_logits(self, items: Sequence[MediaSource]) -> tuple[np.ndarray, np.ndarray]:
        feats, logits = [np.zeros((0, self.dim))], [np.zeros((0, NUM_CLASSES))]
        for start in range(0, len(items), self.batch_size):
            f, lg = self.net.embed([np.asarray(media_part("image", src).load_image()) for src in items[start : start + self.batch_size]])
            feats.append(f)
            logits.append(lg)
        return np.concatenate(feats), np.concatenate(logits)

    def features(self, items: Sequence[MediaSource]) -> np.ndarray:
        return self.features_and_logits(items)[0]

    def logits(self, items: Sequence[MediaSource]) -> np.ndarray:
        return self.features_and_logits(items)[1]
