"""Small real media files for the simulated CDN: solid-colour PNGs (written by `imageinfo.solid_png`), padded."""

from __future__ import annotations

import hashlib
import random

from ..imageinfo import PNG_MAGIC as PNG_SIGNATURE
from ..imageinfo import png_chunk as _chunk
from ..imageinfo import solid_png as png

__all__ = ["PNG_SIGNATURE", "item_png", "png"]


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
