"""Video encode/decode for generated clips and reference videos.

Generated videos are stored as animated PNG (APNG): lossless (metrics see exactly the frames
the generator produced, unlike a re-encoded MP4), readable by Pillow with no extra dependency,
and played by every current browser, so the leaderboard site shows them as they are.

Reference videos (MSR-VTT's MP4s) are decoded with the ``ffmpeg`` command-line tool (installed
by ``make sysdeps``) into raw RGB frames; APNG, GIF and animated WebP decode through Pillow.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Sequence

import numpy as np

from mmeval.types import MediaError, MediaPart

PIL_FORMATS = (b"\x89PNG", b"GIF8", b"RIFF")  # APNG/PNG, GIF, WebP magic numbers


def encode_apng(frames: np.ndarray | Sequence[np.ndarray], fps: float) -> bytes:
    """(T, H, W, 3) uint8 frames (or floats in [0, 1]) -> APNG bytes that loop forever."""
    from PIL import Image

    arr = _as_uint8(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] < 1:
        raise ValueError(f"video frames must be (T, H, W, 3), got shape {arr.shape}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    images = [Image.fromarray(f, "RGB") for f in arr]
    buf = io.BytesIO()
    images[0].save(buf, format="PNG", save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0, default_image=False)
    return buf.getvalue()


def _as_uint8(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    arr = np.stack([np.asarray(f) for f in frames]) if not isinstance(frames, np.ndarray) else frames
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return arr


def decode_video(part: MediaPart, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """(frames (T, H, W, 3) uint8, fps). A corrupt or unreadable file is a MediaError."""
    raw = part.read_bytes()
    name = part.path or "<bytes>"
    if raw[:4] in PIL_FORMATS:
        return _decode_pil(raw, name, max_frames)
    return _decode_ffmpeg(raw, name, max_frames)


def _decode_pil(raw: bytes, name: str, max_frames: int | None) -> tuple[np.ndarray, float]:
    from PIL import Image, ImageSequence

    try:
        with Image.open(io.BytesIO(raw)) as img:
            frames, durations = [], []
            for frame in ImageSequence.Iterator(img):
                frames.append(np.asarray(frame.convert("RGB")))
                durations.append(float(frame.info.get("duration") or 0.0))
                if max_frames and len(frames) >= max_frames:
                    break
    except Exception as exc:
        raise MediaError(f"cannot decode video {name}: {exc}") from exc
    mean_ms = sum(durations) / len(durations) if durations and all(durations) else 0.0
    return np.stack(frames), (1000.0 / mean_ms if mean_ms > 0 else 8.0)


def _decode_ffmpeg(raw: bytes, name: str, max_frames: int | None) -> tuple[np.ndarray, float]:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise MediaError(f"decoding video {name} needs ffmpeg and ffprobe (run `make sysdeps`, or apt-get install ffmpeg)")
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height,r_frame_rate", "-of", "json", "-"],
        input=raw,
        capture_output=True,
    )
    try:
        stream = json.loads(probe.stdout)["streams"][0]
        width, height = int(stream["width"]), int(stream["height"])
        num, _, den = stream["r_frame_rate"].partition("/")
        fps = float(num) / float(den or 1)
    except (ValueError, KeyError, IndexError, ZeroDivisionError) as exc:
        raise MediaError(
            f"cannot decode video {name}: ffprobe found no video stream ({probe.stderr.decode(errors='replace')[-200:]})"
        ) from exc
    cmd = ["ffmpeg", "-v", "error", "-i", "-", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    if max_frames:
        cmd += ["-frames:v", str(max_frames)]
    out = subprocess.run([*cmd, "-"], input=raw, capture_output=True)
    frame_bytes = width * height * 3
    if out.returncode != 0 or len(out.stdout) < frame_bytes:
        raise MediaError(f"cannot decode video {name}: {out.stderr.decode(errors='replace')[-300:] or 'no frames'}")
    n = len(out.stdout) // frame_bytes
    return np.frombuffer(out.stdout[: n * frame_bytes], dtype=np.uint8).reshape(n, height, width, 3), fps


def sample_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """``n`` frames evenly spaced over the clip (all of them when it has fewer)."""
    if n <= 0 or frames.shape[0] <= n:
        return frames
    idx = np.linspace(0, frames.shape[0] - 1, n).round().astype(int)
    return frames[idx]
