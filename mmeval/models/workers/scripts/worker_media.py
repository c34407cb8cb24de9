"""Writing generated media from a worker process (runs in the model's own environment).

Formats are chosen so that a worker needs nothing beyond what every one of these research
environments already has (numpy and Pillow) and so that mmeval reads them back losslessly:

* images: PNG (``PIL.Image.save``);
* audio: 16-bit PCM mono WAV at the generator's sample rate (stdlib ``wave``);
* video: animated PNG (APNG) at the given frame rate: lossless, written by Pillow alone (no
  ffmpeg in the worker environment), decoded by mmeval.media.video and shown by browsers.

Each writer returns the protocol's media item: ``{"modality", "path", "format", "meta"}``.
"""

from __future__ import annotations

import os
import wave
from typing import Any


def save_png(image: Any, path: str) -> dict:
    """A PIL image (or an (H, W, 3) uint8 array) -> PNG file."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(_uint8(image))
    image = image.convert("RGB")
    image.save(path, format="PNG")
    return {"modality": "image", "path": os.path.abspath(path), "format": "png", "meta": {"width": image.width, "height": image.height}}


def save_wav(samples: Any, rate: int, path: str) -> dict:
    """Mono float samples in [-1, 1] (clipped; NaN -> 0) -> 16-bit PCM WAV."""
    import numpy as np

    x = np.nan_to_num(np.asarray(samples, dtype=np.float64).reshape(-1))
    if x.size == 0:
        raise ValueError("the generator returned an empty audio clip")
    pcm = (np.clip(x, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(pcm.tobytes())
    meta = {"sample_rate": int(rate), "samples": int(x.size), "duration_s": round(x.size / float(rate), 6)}
    return {"modality": "audio", "path": os.path.abspath(path), "format": "wav", "meta": meta}


def save_apng(frames: Any, fps: float, path: str) -> dict:
    """A sequence of (H, W, 3) frames (uint8, or floats in [0, 1]) -> looping APNG."""
    from PIL import Image

    arrays = [_uint8(f) for f in frames]
    if not arrays:
        raise ValueError("the generator returned a video without frames")
    images = [Image.fromarray(a).convert("RGB") for a in arrays]
    images[0].save(path, format="PNG", save_all=True, append_images=images[1:], duration=1000.0 / float(fps), loop=0, default_image=False)
    meta = {"fps": float(fps), "frames": len(images), "width": images[0].width, "height": images[0].height}
    return {"modality": "video", "path": os.path.abspath(path), "format": "png", "meta": meta}


def _uint8(frame: Any) -> Any:
    import numpy as np

    if hasattr(frame, "detach"):  # a torch tensor
        frame = frame.detach().float().cpu().numpy()
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):  # CHW -> HWC
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return arr
