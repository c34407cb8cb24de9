"""VGGish audio embeddings (Hershey et al., 2017) for the Fréchet Audio Distance, in plain torch.

The reference FAD (Kilgour et al., 2019; ``frechet_audio_distance`` in google-research) embeds
audio with the TensorFlow VGGish model. This module re-implements both halves:

- The log-mel frontend of the reference (``vggish_input`` / ``mel_features``), in numpy:
  16 kHz mono; 25 ms periodic-Hann windows (400 samples) every 10 ms (160), zero-padded to a
  512-point FFT, magnitude spectrum; 64 HTK-mel triangles from 125 to 7500 Hz (the DC bin gets
  no weight); ``log(mel + 0.01)``; frames grouped into examples of 96 frames (0.96 s) with no
  padding at either end.
- The network: four VGG conv blocks (64, 128, 256x2, 512x2 channels, 3x3, max-pool 2) and three
  fully connected layers 12288 -> 4096 -> 4096 -> 128, laid out like the widely used PyTorch
  port (harritaylor/torchvggish), so its converted checkpoint ``vggish-10086976.pth`` loads
  as is: keys ``features.{0,3,6,8,11,13}.{weight,bias}`` and ``embeddings.{0,2,4}.{weight,bias}``.
  The conv output is flattened in TensorFlow's (height, width, channel) order, as the port does.

Choices, and why (checked against the public sources):

- Framing (``vggish_framing``). ``google`` (default) is what the FAD reference does
  (``audioset_model.AudioSetModel`` with ``create_embeddings_main``'s default step of 8000
  samples): the clip is loudness-normalised by ``x / max(0.1, max(x))`` (gain capped at +20 dB),
  cut into 1 s windows every 0.5 s, and each window gives one 96-frame example, i.e. one
  embedding per 0.5 s of audio. ``torchvggish`` is what audioldm_eval and the
  ``frechet_audio_distance`` package (used for AudioLDM-era text-to-audio numbers) do: no
  normalisation, the whole clip's log-mel cut into non-overlapping 0.96 s examples. Clips too
  short for one example are zero-padded to one (the reference would yield no embedding at all).
- No final ReLU: the embedding is fc2's raw output, as in the current TF ``vggish_slim``
  (``activation_fn=None``) and as audioldm_eval / ``frechet_audio_distance`` use the port
  (``use_activation=False`` drops its trailing ReLU).
- No PCA/whitening or 8-bit quantisation: the FAD reference reads the raw ``vggish/embedding``
  tensor, not the AudioSet-release postprocessed one.
- Resampling to 16 kHz is scipy's polyphase filter (``mmeval.media.audio.resample``), not
  resampy: clips at other rates can differ slightly from the reference's features.

The FAD Gaussian is fitted over these per-window embeddings of all clips (``clip_frames``), as
in the reference, not over one mean per clip; ``features`` (one row per clip, the mean of its
windows) only serves the generic extractor contract.

Other embeddings (PANNs CNN14, EnCodec, OpenL3, ...) plug in without changes here, through
``extractor: module:<pkg.mod>:<factory>`` (see :mod:`mmeval.metrics.features`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmeval.metrics.features import ExtractorError, ExtractorWeightsError, FeatureExtractor, MediaSource, media_part, weights_fingerprint

SAMPLE_RATE = 16_000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
FFT = 512  # next power of two of the window
MEL_BANDS = 64
MEL_LOW_HZ, MEL_HIGH_HZ = 125.0, 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s
EMBEDDING_DIM = 128
FRAMINGS = ("google", "torchvggish")
WEIGHTS_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
# Conv channels per layer, "M" a 2x2 max-pool: indices in nn.Sequential give the port's keys.
_CONV_PLAN: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


# --------------------------------------------------------------------------- frontend


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)  # HTK


def mel_matrix() -> np.ndarray:
    """(FFT//2 + 1, 64) triangular HTK-mel weights, linear in mel, DC bin zeroed."""
    bins_mel = _hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, FFT // 2 + 1))
    edges = np.linspace(_hz_to_mel(MEL_LOW_HZ), _hz_to_mel(MEL_HIGH_HZ), MEL_BANDS + 2)
    low, centre, high = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - low) / (centre - low)
    falling = (high - bins_mel[:, None]) / (high - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


_MEL = mel_matrix()
_HANN = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)  # periodic


def log_mel(x: np.ndarray) -> np.ndarray:
    """(frames, 64) log-mel spectrogram of 16 kHz samples (no padding: partial frames dropped)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < WINDOW:
        return np.zeros((0, MEL_BANDS))
    frames = np.lib.stride_tricks.sliding_window_view(x, WINDOW)[::HOP]
    magnitude = np.abs(np.fft.rfft(frames * _HANN, FFT))
    return np.log(magnitude @ _MEL + LOG_OFFSET)


def _examples(mel: np.ndarray) -> np.ndarray:
    n = mel.shape[0] // EXAMPLE_FRAMES
    return mel[: n * EXAMPLE_FRAMES].reshape(n, EXAMPLE_FRAMES, MEL_BANDS)


def examples(x: np.ndarray, framing: str = "google") -> np.ndarray:
    """(n, 96, 64) VGGish input examples of one 16 kHz clip, framed as ``framing`` says."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if framing == "google":
        x = x / max(0.1, float(x.max()))  # the reference's loudness normalisation
        if x.shape[0] < SAMPLE_RATE:
            x = np.pad(x, (0, SAMPLE_RATE - x.shape[0]))
        starts = range(0, x.shape[0] - SAMPLE_RATE + 1, SAMPLE_RATE // 2)
        return np.stack([_examples(log_mel(x[s : s + SAMPLE_RATE]))[0] for s in starts])
    if framing == "torchvggish":
        shortest = WINDOW + (EXAMPLE_FRAMES - 1) * HOP
        if x.shape[0] < shortest:
            x = np.pad(x, (0, shortest - x.shape[0]))
        return _examples(log_mel(x))
    raise ExtractorError(f"vggish_framing={framing!r}: expected one of {', '.join(FRAMINGS)}")


# --------------------------------------------------------------------------- network


def build_network() -> Any:
    """The VGGish torch module (random init), with the PyTorch port's parameter names."""
    import torch
    from torch import nn

    class VGGishNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            channels = 1
            for v in _CONV_PLAN:
                if v == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                else:
                    layers += [nn.Conv2d(channels, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                    channels = int(v)
            self.features = nn.Sequential(*layers)
            self.embeddings = nn.Sequential(
                nn.Linear(512 * 6 * 4, 4096), nn.ReLU(True), nn.Linear(4096, 4096), nn.ReLU(True), nn.Linear(4096, EMBEDDING_DIM)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # (N, 1, 96, 64) -> (N, 512, 6, 4) -> TF's NHWC flattening order
            h = self.features(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1)
            return self.embeddings(h)

    return VGGishNet()


def expected_layout() -> dict[str, tuple[int, ...]]:
    """State-dict key -> shape that a VGGish checkpoint must have."""
    import torch

    with torch.device("meta"):  # shapes only: no 290 MB random init
        return {k: tuple(v.shape) for k, v in build_network().state_dict().items()}


class VGGish(FeatureExtractor):
    """128-d VGGish embeddings; weights from ``vggish_weights`` (required, loaded lazily)."""

    modality: ClassVar = "audio"
    args: ClassVar[frozenset[str]] = frozenset({"vggish_weights", "vggish_framing", "device", "feature_batch_size"})

    def __init__(
        self, vggish_weights: str | None = None, vggish_framing: str = "google", device: str = "cpu", feature_batch_size: int | str = 64
    ) -> None:
        if not vggish_weights:
            raise ExtractorWeightsError(
                "the vggish extractor needs the VGGish weights: pass --metric-args vggish_weights=PATH "
                f"(the PyTorch port's vggish-10086976.pth, from {WEIGHTS_URL})"
            )
        path = Path(str(vggish_weights)).expanduser()
        if not path.is_file():
            raise ExtractorWeightsError(f"vggish_weights={vggish_weights}: no such file (download vggish-10086976.pth from {WEIGHTS_URL})")
        if vggish_framing not in FRAMINGS:
            raise ExtractorError(f"vggish_framing={vggish_framing!r}: expected one of {', '.join(FRAMINGS)}")
        self.path, self.framing, self.device = path, vggish_framing, str(device)
        self.batch_size = max(1, int(feature_batch_size))
        self.id = f"vggish-{vggish_framing}-{weights_fingerprint(path)}"
        self.dim = EMBEDDING_DIM
        self._net: Any = None

    def _network(self) -> Any:
        if self._net is None:
            import torch

            try:
                state = torch.load(self.path, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise ExtractorWeightsError(f"vggish_weights={self.path}: cannot load as a torch state dict: {exc}") from exc
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            check_layout(state, str(self.path))
            with torch.device("meta"):
                net = build_network()
            net.load_state_dict({k: v.float() for k, v in state.items()}, assign=True)
            self._net = net.eval().to(self.device)
        return self._net

    def embed_examples(self, batch: np.ndarray) -> np.ndarray:
        """(n, 96, 64) examples -> (n, 128) float64 embeddings."""
        import torch

        net = self._network()
        out = []
        with torch.inference_mode():
            for i in range(0, batch.shape[0], self.batch_size):
                x = torch.as_tensor(batch[i : i + self.batch_size], dtype=torch.float32, device=self.device)[:, None]
                out.append(net(x).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, EMBEDDING_DIM))

    def clip_frames(self, items: Sequence[MediaSource]) -> list[np.ndarray]:
        """One (windows, 128) array per clip: what the FAD Gaussian is fitted over."""
        from mmeval.media.audio import decode_audio

        out: list[np.ndarray] = []
        pending: list[np.ndarray] = []  # a batch's worth of clips' examples: a whole reference set would not fit in memory

        def flush() -> None:
            flat = self.embed_examples(np.concatenate(pending))
            bounds = np.cumsum([0] + [e.shape[0] for e in pending])
            out.extend(flat[a:b] for a, b in itertools.pairwise(bounds))
            pending.clear()

        for src in items:
            pending.append(examples(decode_audio(media_part("audio", src), SAMPLE_RATE)[0], self.framing).astype(np.float32))
            if sum(e.shape[0] for e in pending) >= self.batch_size:
                flush()
        if pending:
            flush()
        return out

    def features(self, items: Sequence[MediaSource]) -> np.ndarray:
        """(len(items), 128): the mean of each clip's window embeddings."""
        return np.stack([f.mean(axis=0) for f in self.clip_frames(items)]) if items else np.zeros((0, EMBEDDING_DIM))


def check_layout(state: Any, where: str) -> None:
    """Raise ExtractorWeightsError unless ``state`` has exactly the port's keys and shapes."""
    if not isinstance(state, dict):
        raise ExtractorWeightsError(f"vggish_weights={where}: expected a state dict, got {type(state).__name__}")
    want = expected_layout()
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    wrong = sorted(k for k in set(want) & set(state) if tuple(state[k].shape) != want[k])
    if missing or extra or wrong:
        detail = "; ".join(
            s
            for s in (
                f"missing {missing[:6]}" if missing else "",
                f"unexpected {extra[:6]}" if extra else "",
                ", ".join(f"{k} is {tuple(state[k].shape)}, expected {want[k]}" for k in wrong[:6]),
            )
            if s
        )
        raise ExtractorWeightsError(
            f"vggish_weights={where} is not a VGGish checkpoint in the torchvggish layout ({detail}); "
            f"use vggish-10086976.pth from {WEIGHTS_URL}"
        )
