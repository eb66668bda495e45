"""Small structured-concurrency helpers: run awaitables together and own every task started."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def all_or_nothing(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Await all of `aws` concurrently and return their results in order.

    On the first failure (or when the caller is cancelled) the others are cancelled and awaited before the
    exception propagates, so no task outlives the call.
    """
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


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
