"""Video encode/decode for generated clips and reference videos.

Generated videos are stored as animated PNG (APNG): lossless (metrics see exactly the frames
the generator produced, unlike a re-encoded MP4), readable by Pillow with no extra dependency,
and played by every current browser, so the leaderboard site shows them as they are.

Reference videos (MSR-VTT's MP4s) are decoded with the ``ffmpeg`` command-line tool (installed
by ``make sysdeps``) into raw RGB frames; APNG, GIF and animated WebP decode through Pillow.

Broken files fail their own sample with a MediaError naming the file: truncated or corrupt
data on either path (including a cut file that ffmpeg half-decodes without failing: fewer frames
than the container declares, with decode errors), frames over the image pixel limit (the
decompression-bomb guard, checked on the header), and bytes that are no video at all.
"""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Sequence
from typing import Any

import numpy as np

from mmeval.media import ffmpeg
from mmeval.media.image import MAX_IMAGE_PIXELS, check_pixels, open_image, pil_reason
from mmeval.types import MediaError, MediaPart


def _pil_format(raw: bytes) -> bool:
    """APNG/PNG, GIF and WebP (RIFF....WEBP: other RIFF files, such as AVI, go to ffmpeg)."""
    return raw[:4] in (b"\x89PNG", b"GIF8") or (raw[:4] == b"RIFF" and raw[8:12] == b"WEBP")


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


def decode_video(part: MediaPart, max_frames: int | None = None, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, float]:
    """(frames (T, H, W, 3) uint8, fps). A corrupt, truncated or unreadable file, or frames over
    ``max_pixels``, is a MediaError naming the file."""
    raw = part.read_bytes()
    name = part.label
    if _pil_format(raw):
        return _decode_pil(raw, name, max_frames, max_pixels)
    return _decode_ffmpeg(raw, name, max_frames, max_pixels)


def _decode_pil(raw: bytes, name: str, max_frames: int | None, max_pixels: int) -> tuple[np.ndarray, float]:
    from PIL import ImageSequence

    with open_image(raw, name, max_pixels, what="video") as img:
        declared, frames, durations = 1, [], []
        try:
            declared = int(getattr(img, "n_frames", 1))  # GIF counts by scanning the file: may fail too
            for frame in ImageSequence.Iterator(img):
                frames.append(np.asarray(frame.convert("RGB")))
                durations.append(float(frame.info.get("duration") or 0.0))
                if max_frames and len(frames) >= max_frames:
                    break
        except Exception as exc:  # OSError for truncated data, SyntaxError for broken chunks
            raise MediaError(f"cannot decode video {name}: {pil_reason(exc)} (after {len(frames)} of {declared} frames)") from exc
    if len(frames) < min(declared, max_frames or declared):  # Pillow stops quietly at a missing frame
        raise MediaError(f"video {name} is truncated: it declares {declared} frames, {len(frames)} could be read")
    mean_ms = sum(durations) / len(durations) if all(durations) else 0.0
    return np.stack(frames), (1000.0 / mean_ms if mean_ms > 0 else 8.0)


def _decode_ffmpeg(raw: bytes, name: str, max_frames: int | None, max_pixels: int) -> tuple[np.ndarray, float]:
    if not ffmpeg.available("ffmpeg", "ffprobe"):
        raise MediaError(ffmpeg.missing_tool_error(raw, name, "video", "ffmpeg and ffprobe"))
    fields = "stream=width,height,r_frame_rate,nb_frames,duration:format=duration"
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", fields, "-of", "json", "-"], input=raw, capture_output=True
    )
    try:
        info = json.loads(probe.stdout)
        stream = info["streams"][0]
        width, height = int(stream["width"]), int(stream["height"])
        num, _, den = stream["r_frame_rate"].partition("/")
        fps = float(num) / float(den or 1)
    except (ValueError, KeyError, IndexError, ZeroDivisionError) as exc:
        what = "not a recognised video format" if ffmpeg.container(raw) is None else "ffprobe finds no video stream"
        raise MediaError(f"cannot decode video {name}: {what} ({ffmpeg.reason(probe.stderr) or 'no output'})") from exc
    check_pixels(width, height, name, max_pixels, what="video")
    cmd = ["ffmpeg", "-v", "error", "-i", "-", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    if max_frames:
        cmd += ["-frames:v", str(max_frames)]
    out = subprocess.run([*cmd, "-"], input=raw, capture_output=True)
    frame_bytes = width * height * 3
    n = len(out.stdout) // frame_bytes
    errors = ffmpeg.reason(out.stderr)
    if out.returncode != 0 or n == 0:
        raise MediaError(f"cannot decode video {name}: {errors or 'no frames'}")
    declared = _declared_frames(stream, info.get("format") or {}, fps)
    expected = min(declared, max_frames) if declared and max_frames else declared
    # ffmpeg decodes a cut file up to the cut and exits 0; fewer frames than the container
    # declares *and* decode errors mean the file is damaged (either alone is common in valid files).
    if expected and n < expected and errors:
        raise MediaError(f"video {name} is truncated or corrupt: {n} of its {expected} frames decode ({errors})")
    return np.frombuffer(out.stdout[: n * frame_bytes], dtype=np.uint8).reshape(n, height, width, 3), fps


def _declared_frames(stream: dict[str, Any], container: dict[str, Any], fps: float) -> int | None:
    """Frames the file says it has: the stream's count (MP4), else its duration x fps (WebM, MKV)."""
    try:
        return int(stream["nb_frames"])
    except (KeyError, ValueError):
        pass
    for duration in (stream.get("duration"), container.get("duration")):
        try:
            return round(float(duration) * fps)
        except (TypeError, ValueError):
            continue
    return None


def sample_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """``n`` frames evenly spaced over the clip (all of them when it has fewer)."""
    if n <= 0 or frames.shape[0] <= n:
        return frames
    idx = np.linspace(0, frames.shape[0] - 1, n).round().astype(int)
    return frames[idx]
