"""Small real media files for the simulated CDN: solid-colour PNGs built with zlib and struct."""

from __future__ import annotations

import hashlib
import random
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


PAD_CHUNK = b"paDd"
"""A private ancillary chunk type (decoders skip it) that pads an item image to a requested size."""
_CHUNK_OVERHEAD = 12  # length, type and CRC around a chunk's data


def item_png(history_id: str, index: int, size: int = 64, *, total_bytes: int = 0) -> bytes:
    """The image of item `index` of a record: colour derived from the history id and index.

    With `total_bytes` at least 12 over the plain image's size, a `paDd` chunk of bytes derived from the same
    seed is put before `IEND` so the file is exactly that long (still a valid PNG): big results for memory
    benches and streaming tests (`SimSettings.item_image_bytes`); otherwise the plain image."""
    digest = hashlib.sha256(f"{history_id}:{index}".encode()).digest()
    image = png(size, size, (digest[0], digest[1], digest[2]))
    padding = total_bytes - len(image) - _CHUNK_OVERHEAD
    if padding < 0:
        return image
    end = len(image) - _CHUNK_OVERHEAD  # IEND is the last chunk, with no data
    return image[:end] + _chunk(PAD_CHUNK, random.Random(digest).randbytes(padding)) + image[end:]
