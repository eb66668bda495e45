"""CRC-32 as the upload protocols and the spooler use it: incremental, 8 lowercase hex digits."""

from __future__ import annotations

import zlib


class Crc32:
    """Incremental CRC-32; `hexdigest()` after any sequence of `update()`s equals the CRC-32 of the concatenation."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, chunk: bytes) -> None:
        """Feed more bytes."""
        self._value = zlib.crc32(chunk, self._value)

    def hexdigest(self) -> str:
        """The checksum so far, 8 lowercase hex digits."""
        return f"{self._value & 0xFFFFFFFF:08x}"
