"""Audio encode/decode for generated clips and reference sets.

Generated audio is stored as 16-bit PCM WAV (what AudioLDM-style vocoders produce, readable
everywhere). References decode from WAV directly (``MediaPart.load_audio``) and from any other
container (FLAC, MP3, OGG in AudioCaps/Clotho mirrors) through the ``ffmpeg`` command-line
tool. ``resample`` is polyphase (scipy), deterministic and exact for integer rate ratios.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import wave

import numpy as np

from mmeval.types import MediaError, MediaPart


def encode_wav(samples: np.ndarray, rate: int) -> bytes:
    """Mono float samples in [-1, 1] (clipped) -> 16-bit PCM WAV bytes."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("cannot encode an empty audio clip")
    pcm = (np.clip(np.nan_to_num(x), -1.0, 1.0) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def decode_audio(part: MediaPart, rate: int | None = None) -> tuple[np.ndarray, int]:
    """(float32 mono samples, sample rate); resampled to ``rate`` when given."""
    raw = part.read_bytes()
    if raw[:4] == b"RIFF":
        x, sr = part.load_audio()
    else:
        x, sr = _decode_ffmpeg(raw, part.path or "<bytes>")
    if rate and sr != rate:
        x, sr = resample(x, sr, rate), rate
    return x, sr


def resample(x: np.ndarray, orig: int, target: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = math.gcd(int(orig), int(target))
    return resample_poly(np.asarray(x, dtype=np.float64), int(target) // g, int(orig) // g).astype(np.float32)


def _decode_ffmpeg(raw: bytes, name: str) -> tuple[np.ndarray, int]:
    if shutil.which("ffmpeg") is None:
        raise MediaError(f"decoding non-WAV audio {name} needs ffmpeg (run `make sysdeps`, or apt-get install ffmpeg)")
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "-", "-f", "wav", "-acodec", "pcm_s16le", "-ac", "1", "-"], input=raw, capture_output=True
    )
    if out.returncode != 0 or len(out.stdout) <= 44:
        raise MediaError(f"cannot decode audio {name}: {out.stderr.decode(errors='replace')[-300:] or 'no samples'}")
    return MediaPart("audio", data=out.stdout).load_audio()
