"""Image format sniffing and header parsing (PNG, JPEG, WEBP, GIF) from the first bytes of a file, and a writer
of solid-colour PNGs (the simulator's CDN, tests, and the picture `doctor --post-edit` uploads).

Pure functions over a byte prefix: `sniff_format(head)` needs the first 12 bytes; `read_info(head)` needs the
bytes up to the size field (a few dozen for PNG/GIF/WEBP, up to the first SOF marker for JPEG).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
GIF_MAGICS = (b"GIF87a", b"GIF89a")

# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """Format ("png", "jpeg", "webp" or "gif") and pixel size of an image."""

    format: str
    width: int
    height: int


def sniff_format(head: bytes) -> str | None:
    """The image format the magic bytes announce, or None when `head` is not one of the four formats."""
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(GIF_MAGICS):
        return "gif"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def read_info(head: bytes) -> ImageInfo | None:
    """Format and size read from the header in `head`, or None when unknown or truncated."""
    fmt = sniff_format(head)
    size: tuple[int, int] | None = None
    if fmt == "png":
        size = _png_size(head)
    elif fmt == "gif":
        size = struct.unpack("<HH", head[6:10]) if len(head) >= 10 else None
    elif fmt == "webp":
        size = _webp_size(head)
    elif fmt == "jpeg":
        size = _jpeg_size(head)
    if fmt is None or size is None:
        return None
    return ImageInfo(fmt, size[0], size[1])


def _png_size(head: bytes) -> tuple[int, int] | None:
    # Signature (8), then the IHDR chunk: length (4), "IHDR", width (4), height (4).
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        if marker in _SOF_MARKERS:
            if pos + 9 > len(head):
                return None
            height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return width, height
        if marker == 0xDA or length < 2:  # start of scan before any frame header, or garbage
            return None
        pos += 2 + length
    return None


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and CRC-32."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """An 8-bit RGB PNG of one colour, with valid CRCs."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + bytes(rgb) * width  # filter type 0 per scanline
    idat = zlib.compress(row * height, 9)
    return PNG_MAGIC + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
