"""The FID Inception network (extractor ``inception``): 2048-d pool features and 1008 logits.

FID, KID and the Inception Score are only comparable across papers when computed with one
particular network: the TensorFlow InceptionV3 graph of 2015-12-05 used by the original FID
code (Heusel et al. 2017) and the Inception Score code (Salimans et al. 2016). pytorch-fid and
torch-fidelity ported it to PyTorch as ``pt_inception-2015-12-05-6726825d.pth``. This module
re-implements that architecture in plain torch (no torchvision) with the module and parameter
names of the port, so the published state dict loads as is:

- a torchvision-style InceptionV3 (``Conv2d_1a_3x3`` ... ``Mixed_7c``, 94 conv+BN layers,
  BatchNorm eps 1e-3, no auxiliary classifier) with a 1008-class ``fc`` (the TF graph has 1008
  outputs, not 1000);
- the TF graph's deviations from torchvision: the average pools inside the A, C and first E
  blocks exclude padding (``count_include_pad=False``), and the last E block (``Mixed_7c``)
  pools its branch with a 3x3 *max* pool.

Preprocessing follows the TF graph (and torch-fidelity, which reproduces it bit-exactly on
CPU): RGB uint8 -> bilinear resize to 299x299 *as TensorFlow 1.x computes it* (source
coordinate = destination x in/out, no half-pixel offset, no antialiasing) -> (x - 128) / 128.
pytorch-fid instead resizes with PyTorch's half-pixel bilinear and scales with 2x/255 - 1; the
two agree exactly for 299x299 inputs and differ slightly (FID differences ~0.1 on COCO-sized
sets) for other sizes. Neither antialiases when downsampling (clean-fid, Parmar et al. 2022,
discusses the effect); mmeval keeps the reference behaviour so numbers stay comparable.

The Inception Score uses the *unbiased* logits, ``pool @ fc.weight.T`` without the bias, as the
original IS code (it multiplies pool_3 by the softmax MatMul weights) and torch-fidelity's
``logits_unbiased`` do.

Weights: ``inception_weights=PATH`` to the .pth file. Without it, torch-fidelity's extractor is
used when ``torch_fidelity`` is installed (it fetches its own copy of the same weights into the
torch hub cache on first use); otherwise building the extractor fails at once with an
``ExtractorWeightsError`` saying where to download the file.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmeval.metrics.extractors.clip import batch_size_arg
from mmeval.metrics.features import ExtractorError, ExtractorWeightsError, FeatureExtractor, MediaSource, media_part
from mmeval.types import sha256_file

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
INPUT_SIZE = 299
FEATURE_DIM, NUM_CLASSES = 2048, 1008


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm (eps 1e-3, as TF) -> ReLU; parameters ``conv.*`` / ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1, padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_same(x: torch.Tensor) -> torch.Tensor:
    # TF's SAME average pool divides by the number of real pixels under the window.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool_same(x))], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    """Factorised 7x7 convolutions (1x7 then 7x1)."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg_pool_same(x))], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """Expanded filter bank; ``max_pool``: the TF graph's last block pools with a max pool."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg_pool_same(x)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """The network; ``forward`` takes (N, 3, 299, 299) floats in [-1, 1] and returns
    (pool features (N, 2048), unbiased logits (N, 1008))."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        blocks = (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e)
        for block in (*blocks, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        pool = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return pool, pool @ self.fc.weight.T


def resize_bilinear_tf1(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """TensorFlow 1.x ``resize_bilinear`` (align_corners=False, no half-pixel centres) of an
    (N, C, H, W) float tensor: source coordinate = destination x (in/out), computed in float32
    as TF does; rows are interpolated before columns, in TF's order."""

    def axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(n_out, dtype=torch.float32) * torch.tensor(n_in / n_out, dtype=torch.float32)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        return lo.to(x.device), hi.to(x.device), (src - lo).to(device=x.device, dtype=x.dtype)

    ylo, yhi, fy = axis(x.shape[2], height)
    xlo, xhi, fx = axis(x.shape[3], width)
    top, bottom = x[:, :, ylo], x[:, :, yhi]
    top = top[..., xlo] + (top[..., xhi] - top[..., xlo]) * fx
    bottom = bottom[..., xlo] + (bottom[..., xhi] - bottom[..., xlo]) * fx
    return top + (bottom - top) * fy.view(1, 1, -1, 1)


def load_fid_inception(path: str | Path) -> FIDInceptionV3:
    """The network with the published state dict; a file of another layout is a clear error."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ExtractorWeightsError(f"inception_weights={path}: cannot load a PyTorch state dict ({exc}); expected {WEIGHTS_FILE}") from exc
    if not isinstance(state, dict):
        raise ExtractorWeightsError(f"inception_weights={path}: expected a state dict, found {type(state).__name__}")
    net = FIDInceptionV3()
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a key with the wrong shape
        raise ExtractorWeightsError(f"inception_weights={path}: not the FID Inception state dict ({exc}); download {WEIGHTS_URL}") from exc
    # Checkpoints saved before BatchNorm counted batches lack num_batches_tracked (unused in eval).
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ExtractorWeightsError(
            f"inception_weights={path}: not the FID Inception state dict ({len(missing)} missing keys, e.g. {missing[:3]}; "
            f"{len(result.unexpected_keys)} unexpected, e.g. {result.unexpected_keys[:3]}); download {WEIGHTS_URL}"
        )
    return net.eval()


class InceptionFID(FeatureExtractor):
    """Extractor ``inception``: ``features`` = 2048-d pool_3, ``logits`` = 1008 unbiased logits."""

    modality = "image"
    args: ClassVar[frozenset[str]] = frozenset({"inception_weights", "device", "feature_batch_size"})
    dim = FEATURE_DIM

    def __init__(self, inception_weights: str | None = None, device: str = "cpu", feature_batch_size: Any = None) -> None:
        self.device = str(device or "cpu")
        self.batch_size = batch_size_arg(feature_batch_size)
        self.weights = Path(inception_weights).expanduser() if inception_weights else None
        if self.weights is not None:
            if not self.weights.is_file():
                raise ExtractorWeightsError(
                    f"inception_weights={inception_weights}: no such file (download {WEIGHTS_FILE} from {WEIGHTS_URL})"
                )
            self.id = f"inception-fid-v1:sha256:{sha256_file(self.weights)[:16]}"
        elif importlib.util.find_spec("torch_fidelity") is not None:
            self.id = "inception-fid-v1:torch-fidelity"
        else:
            raise ExtractorWeightsError(
                f"the inception extractor needs the FID Inception weights: download {WEIGHTS_FILE} from {WEIGHTS_URL} "
                "and pass --metric-args inception_weights=PATH (or pip install torch-fidelity, which fetches its own copy)"
            )
        self._net: Any = None

    def _network(self) -> Any:
        if self._net is None:
            if self.weights is not None:
                self._net = load_fid_inception(self.weights).to(self.device)
            else:
                from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

                self._net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"]).to(self.device)
        return self._net

    def _run(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (H, W, 3) images -> (pool, logits) float64."""
        net = self._network()
        if self.weights is None:  # torch-fidelity resizes and normalises itself; it wants uint8 NCHW
            with torch.inference_mode():
                outs = [net(torch.from_numpy(im).permute(2, 0, 1)[None].to(self.device)) for im in images]
            return tuple(torch.cat([o[i] for o in outs]).double().cpu().numpy() for i in range(2))  # type: ignore[return-value]
        batch = []
        for im in images:
            x = torch.from_numpy(im).permute(2, 0, 1)[None].to(self.device, torch.float32)
            batch.append(resize_bilinear_tf1(x, INPUT_SIZE, INPUT_SIZE))
        x = (torch.cat(batch) - 128.0) / 128.0
        with torch.inference_mode():
            pool, logits = net(x)
        return pool.double().cpu().numpy(), logits.double().cpu().numpy()

    def features_and_logits(self, items: Sequence[MediaSource]) -> tuple[np.ndarray, np.ndarray]:
        """Both outputs from one pass (FID/KID and IS of a task share it)."""
        feats, logits = [], []
        for start in range(0, len(items), self.batch_size):
            images = [np.array(media_part("image", src).load_image(), dtype=np.uint8) for src in items[start : start + self.batch_size]]
            f, lg = self._run(images)
            feats.append(f)
            logits.append(lg)
        if not feats:
            raise ExtractorError("the inception extractor got no images")
        return np.concatenate(feats), np.concatenate(logits)

    def features(self, items: Sequence[MediaSource]) -> np.ndarray:
        return self.features_and_logits(items)[0]

    def logits(self, items: Sequence[MediaSource]) -> np.ndarray:
        return self.features_and_logits(items)[1]
