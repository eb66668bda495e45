"""Issue 26, finding 7d: a body that does not decode as its Content-Encoding says is a 400 in the error shape,
with no traceback in the log, and the keep-alive connection is closed cleanly (`Connection: close`, then EOF)
instead of being reset under the client's next request."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN


async def exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Send one request on a fresh connection; the answer, and what the connection gives after it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(
            next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[1]
        )
        body = await asyncio.wait_for(reader.readexactly(length), 10)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(), 10)  # EOF (b""), not ConnectionResetError
        return head + body, rest
    finally:
        writer.close()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_bad_body_encoding_is_a_clean_400(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture, encoding: str
) -> None:
    body = b"this is not compressed at all"
    request = (
        b"POST /v1/async/images/generations HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {CN_TOKEN}\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Encoding: {encoding}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    port = client.server.port
    assert port is not None
    with caplog.at_level(logging.DEBUG):
        answer, rest = await exchange(port, request)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"connection: close" in head.lower(), head
    assert json.loads(payload)["error"]["code"] == "INVALID_BODY"
    assert rest == b""
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
    ]
    # The server still serves new connections.
    resp = await client.get("/healthz")
    assert resp.status == 200
