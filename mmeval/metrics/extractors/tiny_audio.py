"""``tiny-audio``: a deterministic 32-d audio embedding for tests. Its numbers mean nothing.

It exists so FAD's plumbing (decoding, the reference cache, the Gaussian fit, the bootstrap)
can be tested without downloading VGGish or CLAP weights. The "network" is fixed, seeded
numpy: a 16 kHz log-power spectrogram (25 ms windows, 10 ms hop) pooled into 16 log-spaced
bands, the per-band mean and standard deviation over time (32 numbers), a seeded random
32x32 mixing matrix and a tanh. It does separate tones from noise and loud from quiet clips,
which is all a test needs; outside tests, use ``vggish`` or ``clap``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from mmeval.metrics.features import FeatureExtractor, MediaSource, media_part

SAMPLE_RATE = 16_000
WINDOW, HOP, FFT = 400, 160, 512
BANDS = 16
DIM = 2 * BANDS
SEED = 20240601


def _band_matrix() -> np.ndarray:
    """(FFT//2 + 1, BANDS) rectangular pooling over log-spaced bands from 50 Hz to Nyquist."""
    freqs = np.linspace(0.0, SAMPLE_RATE / 2, FFT // 2 + 1)
    edges = np.geomspace(50.0, SAMPLE_RATE / 2 + 1, BANDS + 1)
    m = ((freqs[:, None] >= edges[:-1]) & (freqs[:, None] < edges[1:])).astype(np.float64)
    return m / np.maximum(m.sum(axis=0), 1.0)


_POOL = _band_matrix()
_MIX = np.random.default_rng(SEED).standard_normal((DIM, DIM)) / np.sqrt(DIM)
_HANN = np.hanning(WINDOW)


def embed(x: np.ndarray) -> np.ndarray:
    """32-d embedding of one 16 kHz mono clip (zero-padded to one window if shorter)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.shape[0] < WINDOW:
        x = np.pad(x, (0, WINDOW - x.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(x, WINDOW)[::HOP]
    power = np.abs(np.fft.rfft(frames * _HANN, FFT)) ** 2
    bands = np.log(power @ _POOL + 1e-6)
    stats = np.concatenate([bands.mean(axis=0) / 10.0, bands.std(axis=0)])
    return np.tanh(stats @ _MIX)


class TinyAudioExtractor(FeatureExtractor):
    """Deterministic, weight-free 32-d audio features (tests only; the values mean nothing)."""

    modality: ClassVar = "audio"
    args: ClassVar[frozenset[str]] = frozenset()
    id = "tiny-audio-v1"
    dim = DIM

    def features(self, items: Sequence[MediaSource]) -> np.ndarray:
        from mmeval.media.audio import decode_audio

        rows = [embed(decode_audio(media_part("audio", src), SAMPLE_RATE)[0]) for src in items]
        return np.stack(rows) if rows else np.zeros((0, DIM))
