"""Test helpers: driving the watcher on a manual clock while real HTTP requests are in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiohttp import web

from jimeng_server.api.appkeys import WATCHER
from jimeng_server.clock import ManualClock

T = TypeVar("T")

# Session ids used across the tests (never real ones).
CN_TOKEN = "sess0cn0aaaabbbbccccddddeeeeffff"
CN_TOKEN_2 = "sess0cn1aaaabbbbccccddddeeeeffff"
US_SESSION = "sess0us0aaaabbbbccccddddeeeeffff"
US_TOKEN = f"us-{US_SESSION}"
POOR_TOKEN = "sess0poor0aaabbbbccccddddeeeefff"


def bearer(*tokens: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + ",".join(tokens)}


async def drive(
    app: web.Application,
    clock: ManualClock,
    *aws: Awaitable[T],
    step: float = 1.0,
    wall_timeout: float = 20.0,
    min_pending: int = 0,
) -> list[T]:
    """Run `aws` to completion, moving virtual time by `step` and ticking the watcher whenever
    something waits on the clock (a watched task, a retry back-off). `min_pending` holds time still
    until that many tasks are being watched (to test batching)."""
    watcher = app[WATCHER]
    tasks = [asyncio.ensure_future(a) for a in aws]
    loop = asyncio.get_running_loop()
    end = loop.time() + wall_timeout
    try:
        while not all(t.done() for t in tasks):
            if loop.time() > end:
                raise AssertionError("drive(): the requests did not finish")
            ready = watcher.pending >= max(1, min_pending) or (clock.sleepers and not min_pending)
            if ready:
                min_pending = 0
                await clock.advance(step)
                # A poll may back off on the clock between retries: keep time moving until the tick ends.
                tick = asyncio.ensure_future(watcher.run_once())
                while not tick.done():
                    if loop.time() > end:
                        tick.cancel()
                        raise AssertionError("drive(): a watcher tick did not finish")
                    if clock.sleepers:
                        # Give the poll's loopback I/O a moment first: the sleeper may be unrelated (a
                        # long-poll's wait), and moving time while a poll is merely in flight skews it.
                        await asyncio.sleep(0.005)
                        if not tick.done() and clock.sleepers:
                            await clock.advance(step)
                    else:
                        await asyncio.sleep(0)
                tick.result()
            else:
                await asyncio.sleep(0)
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
    return [t.result() for t in tasks]


async def json_of(resp: Any) -> Any:
    """The JSON body of a test-client response (any content type)."""
    return await resp.json(content_type=None)
