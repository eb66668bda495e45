"""Server-Sent Events answers: `EventStream` opens a `text/event-stream` response and writes events, JSON data
lines and keep-alive comments. The stream is opened only once the request was accepted, so refusals stay
ordinary JSON errors with their status.

A plain writer rather than aiohttp-sse: the answers here need only `event:`/`data:` lines and comments written
when the task service has something to say (their pace comes from the task's long polls on the app clock), and
aiohttp-sse's own ping timer runs on the event loop's clock."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..services.answers import json_text


class EventStream:
    """One SSE answer. `await open()` sends the headers; then `send()`, `comment()`, `close()`."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx: pass each event on at once
            }
        )

    async def open(self) -> web.StreamResponse:
        await self.response.prepare(self.request)
        return self.response

    async def send(self, data: Any, *, event: str | None = None, raw: bool = False) -> None:
        """One event: `data` as JSON (or as it is with `raw`), with an `event:` name when given."""
        text = data if raw else json_text(data)
        head = f"event: {event}\n" if event else ""
        await self.response.write(f"{head}data: {text}\n\n".encode())

    async def comment(self, text: str = "keep-alive") -> None:
        """A comment line: clients ignore it, proxies see bytes flowing."""
        await self.response.write(f": {text}\n\n".encode())

    async def close(self) -> web.StreamResponse:
        await self.response.write_eof()
        return self.response
