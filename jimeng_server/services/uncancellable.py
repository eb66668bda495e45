"""`uncancellable(aw)`: finish a short, important await (a store write) even if the caller is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def uncancellable(aw: Awaitable[T]) -> T:
    """Await `aw` to its end even when the caller is cancelled meanwhile; then re-raise the cancellation.

    The work runs inside the caller's own await (no task outlives it), so nothing is left behind.
    """
    fut = asyncio.ensure_future(aw)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(fut)
            break
        except asyncio.CancelledError:
            if fut.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result
