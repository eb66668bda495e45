"""Small real media files for the simulated CDN: solid-colour PNGs built with zlib and struct."""

from __future__ import annotations

import hashlib
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """An 8-bit RGB PNG of one colour, with valid CRCs."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + bytes(rgb) * width  # filter type 0 per scanline
    idat = zlib.compress(row * height, 9)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def item_png(history_id: str, index: int, size: int = 64) -> bytes:
    """The image of item `index` of a record: colour derived from the history id and index."""
    digest = hashlib.sha256(f"{history_id}:{index}".encode()).digest()
    return png(size, size, (digest[0], digest[1], digest[2]))
