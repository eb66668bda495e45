"""Spooling a byte stream to a temporary file with its size, CRC-32 and first bytes, under a byte cap."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from ..checksums import Crc32
from .errors import MIB, TooLargeError

HEAD_BYTES = 64
# Chunks are collected up to this size and written from a worker thread, so memory stays bounded.
_FLUSH_BYTES = 1 * MIB


@dataclass
class Download:
    """A body spooled to a temporary file. The caller owns the file: call `cleanup()` or use `with`."""

    path: Path
    size: int
    crc32: str
    content_type: str | None
    head: bytes
    final_url: str

    def cleanup(self) -> None:
        """Delete the temporary file; safe to call more than once."""
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Download:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def _open_temp(directory: str | None) -> tuple[Path, IO[bytes]]:
    fd, name = tempfile.mkstemp(prefix="jimeng-", suffix=".part", dir=directory)
    return Path(name), os.fdopen(fd, "wb")


async def spool_chunks(
    chunks: AsyncIterator[bytes],
    *,
    max_bytes: int,
    directory: str | None = None,
    content_type: str | None = None,
    final_url: str = "",
) -> Download:
    """Write `chunks` to a new temporary file (in `directory`), computing size, CRC-32 and the first 64 bytes.

    Raises TooLargeError as soon as more than `max_bytes` arrive, without reading further. On any error
    the temporary file is deleted. Memory use is bounded by about 1 MiB regardless of the body size.
    """
    # Opened inline, not in a worker thread: a cancellation during `to_thread` would leak the open file.
    path, file = _open_temp(directory)
    done = False
    try:
        crc = Crc32()
        size = 0
        head = b""
        pending = bytearray()
        async for chunk in chunks:
            if not chunk:
                continue
            size += len(chunk)
            if size > max_bytes:
                raise TooLargeError(max_bytes)
            crc.update(chunk)
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            pending += chunk
            if len(pending) >= _FLUSH_BYTES:
                await asyncio.to_thread(file.write, pending)
                pending.clear()
        if pending:
            await asyncio.to_thread(file.write, pending)
        await asyncio.to_thread(file.close)
        done = True
        return Download(
            path=path,
            size=size,
            crc32=crc.hexdigest(),
            content_type=content_type,
            head=head,
            final_url=final_url,
        )
    finally:
        if not done:
            file.close()
            path.unlink(missing_ok=True)
