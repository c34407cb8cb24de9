"""Audio encode/decode for generated clips, reference sets and model inputs.

Generated audio is stored as 16-bit PCM WAV (what AudioLDM-style vocoders produce, readable
everywhere). WAV decodes with the standard library (``decode_wav``, behind
``MediaPart.load_audio``, which every audio adapter uses); any other container (FLAC, MP3, OGG
in AudioCaps/Clotho mirrors) goes through the ``ffmpeg`` command-line tool. ``resample`` is
polyphase (scipy), deterministic and exact for integer rate ratios.

Broken files fail their own sample with a MediaError naming the file: an empty file, a header
that ends early, a data chunk shorter than the header declares (a cut download), no samples,
and a sample rate no recording has (1 Hz, 10 MHz: a corrupt header, which resampling would
turn into a huge allocation).
"""

from __future__ import annotations

import io
import math
import subprocess
import wave

import numpy as np

from mmeval.media import ffmpeg
from mmeval.types import MediaError, MediaPart

# Telephone audio is 8 kHz and some old corpora 4-6 kHz; 768 kHz is the highest rate audio
# interfaces record. Anything outside is a corrupt header, not a recording.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000

_UNKNOWN_LENGTH = 0xFFFF_FFFF  # the data-chunk size streaming writers (ffmpeg to a pipe) leave in the header


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


def check_sample_rate(rate: int, name: str) -> None:
    """Refuse a sample rate outside what recordings use (MediaError naming the file)."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise MediaError(
            f"audio {name} declares a sample rate of {rate:,} Hz, outside the plausible "
            f"{MIN_SAMPLE_RATE:,}-{MAX_SAMPLE_RATE:,} Hz: its header is corrupt"
        )


def decode_wav(raw: bytes, name: str) -> tuple[np.ndarray, int]:
    """PCM WAV bytes -> (float32 mono samples in [-1, 1], sample rate); ``name`` is for errors."""
    try:
        with wave.open(io.BytesIO(raw)) as wav:
            rate, width, channels, declared = wav.getframerate(), wav.getsampwidth(), wav.getnchannels(), wav.getnframes()
            frames = wav.readframes(declared)
    except EOFError as exc:
        raise MediaError(f"cannot decode audio {name} as WAV: the file ends inside its header (truncated)") from exc
    except Exception as exc:  # wave.Error for a bad header; struct.error and others for garbage
        raise MediaError(f"cannot decode audio {name} as WAV: {str(exc).strip() or type(exc).__name__}") from exc
    check_sample_rate(rate, name)
    dtype = {1: np.uint8, 2: np.dtype("<i2"), 4: np.dtype("<i4")}.get(width)
    if dtype is None:
        raise MediaError(f"audio {name}: unsupported sample width {width * 8} bits (mmeval reads 8-, 16- and 32-bit PCM WAV)")
    frame_size = width * channels
    got = len(frames) // frame_size
    if got == 0:
        raise MediaError(f"audio {name} has no samples (0 frames)")
    if got < declared and declared * frame_size < _UNKNOWN_LENGTH - frame_size:
        raise MediaError(
            f"audio {name} is truncated: its header declares {declared:,} frames ({declared / rate:.2f} s), the file holds {got:,}"
        )
    arr = np.frombuffer(frames[: got * frame_size], dtype=dtype).astype(np.float32)
    if width == 1:
        arr = (arr - 128.0) / 128.0
    else:
        arr /= float(2 ** (8 * width - 1))
    if channels > 1:
        arr = arr.reshape(-1, channels).mean(axis=1)
    return arr, rate


def decode_audio(part: MediaPart, rate: int | None = None) -> tuple[np.ndarray, int]:
    """(float32 mono samples, sample rate); resampled to ``rate`` when given."""
    raw = part.read_bytes()
    name = part.label
    if raw[:4] == b"RIFF" and raw[8:12] == b"WAVE":
        x, sr = decode_wav(raw, name)
    else:
        x, sr = _decode_ffmpeg(raw, name)
    if rate and sr != rate:
        x = resample(x, sr, rate)
        if x.size == 0:
            raise MediaError(f"audio {name} is too short to resample from {sr} Hz to {rate} Hz")
        sr = rate
    return x, sr


def resample(x: np.ndarray, orig: int, target: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = math.gcd(int(orig), int(target))
    return resample_poly(np.asarray(x, dtype=np.float64), int(target) // g, int(orig) // g).astype(np.float32)


def _decode_ffmpeg(raw: bytes, name: str) -> tuple[np.ndarray, int]:
    if not ffmpeg.available("ffmpeg"):
        raise MediaError(ffmpeg.missing_tool_error(raw, name, "audio"))
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "-", "-f", "wav", "-acodec", "pcm_s16le", "-ac", "1", "-"], input=raw, capture_output=True
    )
    if out.returncode != 0 or len(out.stdout) <= 44:
        what = "not WAV, and ffmpeg cannot read it" if ffmpeg.container(raw) is None else "ffmpeg failed"
        raise MediaError(f"cannot decode audio {name}: {what}: {ffmpeg.reason(out.stderr) or 'no samples'}")
    return decode_wav(out.stdout, name)
