"""`b64_json` answers of the sync image and video endpoints, written from spooled result files.

`spooled_results(request, account, urls)` downloads every result to a temporary file first (byte cap
`[security] max_download_mb`, `fetch_timeout`), so a result that is too large (413) or cannot be fetched (502)
is an ordinary JSON error, answered before any byte of a 200 body. The block then builds the answer as a plain
dict in which each `b64_json` value is a placeholder (`B64Files.slots`), and either

- `stream(request, body)`: sends it as a streamed 200; memory stays independent of the files' sizes, or
- `render(body)`: returns it whole as a `web.Response`, for an answer that must be stored to be replayed
  (an `Idempotency-Key`); the whole body is then held in memory.

Both write exactly the text `dumps(body)` would give with each placeholder replaced by the base64 of its file
(the dict's key order, the caller's separators): the JSON around the files is `dumps` of the body, split at the
placeholders (a random token per answer, so no prompt text can imitate one), and each file is encoded in chunks
whose sizes are multiples of 3, so the pieces of base64 join without padding. The temporary files are deleted
when the block ends, however it ends: a client that goes away mid-stream included.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from ..net.spool import Download
from ..services.results import spool_results
from ..upstream.tokens import Account
from .appkeys import CONFIG, POOL
from .responses import JSON_CONTENT_TYPE, encoded_answer

CHUNK_BYTES = 3 * 64 * 1024
"""Bytes of a file read and encoded at a time: a multiple of 3, so each chunk's base64 has no padding."""

Dumps = Callable[[Any], str]
Write = Callable[[bytes], Awaitable[None]]


class B64Files:
    """Spooled result files of one answer; `slots[n]` stands for the base64 of file n in the answer's body."""

    def __init__(self, files: Sequence[Download]) -> None:
        self.files = tuple(files)
        token = secrets.token_hex(16)
        self.slots = tuple(f"{token}:{n}" for n in range(len(self.files)))
        self._slot = re.compile(f"{token}:([0-9]+)")

    def _pieces(self, body: Any, dumps: Dumps) -> list[bytes | Download]:
        """The answer as JSON text pieces and files, in order; each slot must appear exactly once."""
        parts = self._slot.split(dumps(body))
        pieces: list[bytes | Download] = []
        for n, part in enumerate(parts):
            if n % 2:
                pieces.append(self.files[int(part)])
            elif part:
                pieces.append(part.encode("utf-8"))
        used = sorted(int(part) for part in parts[1::2])
        if used != list(range(len(self.files))):
            raise RuntimeError("every spooled file must appear exactly once in the answer's body")
        return pieces

    async def stream(self, request: web.Request, body: Any, *, dumps: Dumps = json.dumps) -> web.StreamResponse:
        """Send `body` with each slot replaced by its file's base64 as a streamed 200 (chunked)."""
        pieces = self._pieces(body, dumps)  # before the 200 goes out: a broken body is a plain 500
        response = web.StreamResponse(headers={"Content-Type": JSON_CONTENT_TYPE})
        await response.prepare(request)
        await _write(pieces, response.write)
        await response.write_eof()
        return response

    async def render(self, body: Any, *, dumps: Dumps = json.dumps) -> web.Response:
        """`body` with each slot replaced by its file's base64, whole, as a 200 (to be stored and replayed)."""
        chunks: list[bytes] = []

        async def collect(chunk: bytes) -> None:
            chunks.append(chunk)

        await _write(self._pieces(body, dumps), collect)
        return encoded_answer(b"".join(chunks))


@contextlib.asynccontextmanager
async def spooled_results(request: web.Request, account: Account, urls: Sequence[str]) -> AsyncIterator[B64Files]:
    """Every result downloaded (through `account`'s proxy) to a temporary file, deleted when the block ends.

    Raises the result's 413 `PayloadTooLarge` or 502 `RESULT_FETCH_FAILED` (nothing left on disk) before
    the block starts."""
    cfg = request.app[CONFIG].security
    files = await spool_results(
        request.app[POOL], account, urls, max_bytes=cfg.max_download_bytes, seconds=cfg.fetch_timeout
    )
    try:
        yield B64Files(files)
    finally:
        for download in files:
            download.cleanup()


async def _write(pieces: Sequence[bytes | Download], write: Write) -> None:
    for piece in pieces:
        if isinstance(piece, bytes):
            await write(piece)
        else:
            async for chunk in _file_chunks(piece):
                await write(base64.b64encode(chunk))


async def _file_chunks(download: Download) -> AsyncIterator[bytes]:
    """The file's bytes in chunks of `CHUNK_BYTES` (the last one may be shorter)."""
    with download.path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK_BYTES):
            yield chunk
