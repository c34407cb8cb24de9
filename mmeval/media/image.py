"""Image decoding with the guards every adapter needs (``MediaPart.load_image`` calls it).

A dataset with broken media must fail the broken samples only, each with a message that names
the file and says what is wrong: a truncated file, bytes that are no image at all, or a
decompression bomb (a small file declaring an enormous canvas). The pixel limit is checked on
the header, before any pixel is decoded; it is mmeval's own explicit limit, because Pillow's
(``Image.MAX_IMAGE_PIXELS``) only warns below twice its value and is a process-wide setting.
"""

from __future__ import annotations

import io
import re
import warnings
from typing import Any

from mmeval.types import MediaError

# 64 MP (8000 x 8000): above any photo a multimodal model takes (they resize to ~1-4 MP), and
# one such RGB image is already 192 MB decoded.
MAX_IMAGE_PIXELS = 64_000_000


def check_pixels(width: int, height: int, name: str, max_pixels: int = MAX_IMAGE_PIXELS, what: str = "image") -> None:
    """Refuse a canvas over ``max_pixels`` (MediaError naming the file), before decoding it."""
    if width * height > max_pixels:
        raise MediaError(
            f"{what} {name} is {width}x{height} ({width * height:,} pixels), over the {max_pixels:,}-pixel limit "
            "(decompression-bomb guard): refused without decoding; downscale it if it is genuine"
        )


def open_image(raw: bytes, name: str, max_pixels: int = MAX_IMAGE_PIXELS, what: str = "image") -> Any:
    """Open (lazily: header only) an encoded image whose canvas is within ``max_pixels``.

    The caller decodes it (``convert``, frame iteration) and closes it; errors while decoding
    should go through :func:`pil_reason`."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice it; mmeval's own (lower) limit decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw))
    except Image.DecompressionBombError as exc:
        # Pillow refuses above twice its own limit while reading the header; report it as ours.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else None
        limit = f"the {max_pixels:,}-pixel limit"
        if pixels is not None and pixels <= max_pixels:  # a caller's limit above Pillow's own hard one
            limit = f"Pillow's hard limit (2 x PIL.Image.MAX_IMAGE_PIXELS = {2 * (Image.MAX_IMAGE_PIXELS or 0):,})"
        size = f"{pixels:,} pixels" if pixels is not None else "its declared size"
        raise MediaError(f"{what} {name} declares {size}, over {limit} (decompression-bomb guard): refused without decoding") from exc
    except Exception as exc:  # Pillow raises many types for corrupt headers
        raise MediaError(f"cannot decode {what} {name}: {pil_reason(exc)}") from exc
    try:
        check_pixels(img.width, img.height, name, max_pixels, what)
    except MediaError:
        img.close()
        raise
    return img


def decode_image(raw: bytes, name: str, max_pixels: int = MAX_IMAGE_PIXELS) -> Any:
    """Encoded bytes -> RGB PIL image; corrupt, truncated and oversized images are MediaErrors."""
    with open_image(raw, name, max_pixels) as img:
        try:
            return img.convert("RGB")
        except Exception as exc:  # OSError for truncated data, SyntaxError/ValueError for broken chunks
            raise MediaError(f"cannot decode image {name}: {pil_reason(exc)}") from exc


def pil_reason(exc: BaseException) -> str:
    """What Pillow found wrong, in words (its own messages name an in-memory buffer, not the file)."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not a readable image (unknown format, or a corrupt or truncated header)"
    text = str(exc).strip()
    if isinstance(exc, EOFError) and not text:
        return "the file ends early (truncated)"
    return text or type(exc).__name__
