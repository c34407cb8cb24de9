"""What the audio and video decoders share about the ``ffmpeg`` command-line tool.

``container`` names the format of encoded media from its magic bytes, so that when ffmpeg is
missing the error can say "install ffmpeg" for a real MP4 and "not a media file" for random
bytes, rather than blaming a missing tool for a corrupt file. ``reason`` turns ffmpeg's stderr
into a short message for a per-sample error.
"""

from __future__ import annotations

import re
import shutil

INSTALL_HINT = "run `make sysdeps`, or apt-get install ffmpeg"

# (offset, magic bytes, format name): containers ffmpeg decodes that Pillow and the wave module do not.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "MP4/MOV"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"fLaC", "FLAC"),
    (0, b"OggS", "Ogg"),
    (0, b"ID3", "MP3"),
    (0, b"FLV", "FLV"),
    (0, b"FORM", "AIFF"),
    (0, b"caff", "CAF"),
    (0, b".snd", "AU"),
    (0, b"#!AMR", "AMR"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "ASF/WMV/WMA"),
    (0, b"\x00\x00\x01\xba", "MPEG-PS"),
    (0, b"\x00\x00\x01\xb3", "MPEG video"),
)


def container(raw: bytes) -> str | None:
    """The container format of encoded media by its magic bytes, or None if none is known."""
    for offset, magic, name in _SIGNATURES:
        if raw[offset : offset + len(magic)] == magic:
            return name
    if raw[:4] == b"RIFF":
        return f"RIFF/{raw[8:12].decode('latin-1').strip() or '?'}"  # WAVE, AVI, WEBP...
    if _mpeg_audio_frame(raw):
        return "MPEG audio/AAC"
    if len(raw) > 188 and raw[0] == 0x47 and raw[188] == 0x47:
        return "MPEG-TS"
    return None


def _mpeg_audio_frame(raw: bytes) -> bool:
    """A frame header at the start: MP3 without an ID3 tag, or ADTS AAC (reserved values excluded)."""
    if len(raw) < 3 or raw[0] != 0xFF or raw[1] & 0xE0 != 0xE0:
        return False
    if raw[1] & 0xF6 == 0xF0:  # ADTS: MPEG-4/2 AAC, layer 00
        return True
    # MPEG audio: version and layer not reserved; bitrate index not 1111; sample-rate index not 11.
    return raw[1] & 0x18 != 0x08 and raw[1] & 0x06 != 0 and raw[2] & 0xF0 != 0xF0 and raw[2] & 0x0C != 0x0C


def available(*tools: str) -> bool:
    return all(shutil.which(t) is not None for t in tools)


def missing_tool_error(raw: bytes, name: str, modality: str, tools: str = "ffmpeg") -> str:
    """Why ``name`` cannot be decoded without ffmpeg: a known container needs the tool; unknown
    bytes are not media at all (installing ffmpeg would not help)."""
    kind = container(raw)
    if kind is None:
        return f"cannot decode {modality} {name}: not a recognised {modality} format (it starts with {raw[:8]!r})"
    return f"decoding {kind} {modality} {name} needs {tools} ({INSTALL_HINT})"


_PREFIX = re.compile(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*")


def reason(stderr: bytes, limit: int = 300) -> str:
    """ffmpeg's error output as one short line: its last messages, without the '[demuxer @ 0x...]' prefixes."""
    lines = [_PREFIX.sub("", line).strip().removeprefix("pipe:: ") for line in stderr.decode(errors="replace").splitlines()]
    text = "; ".join([line for line in lines if line][-3:])
    return text if len(text) <= limit else "..." + text[-limit:]
