"""Small structured-concurrency helpers: run awaitables together and own every task started."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")
Item = TypeVar("Item")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory for `asyncio.Runner(loop_factory=...)` that `[server] event_loop` names
    (`config.EVENT_LOOPS`): uvloop's for "uvloop", and for "auto" when uvloop is installed (the `fast` extra);
    None (asyncio's own loop) for "asyncio", or "auto" without it. ImportError for "uvloop" when it is missing."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


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


class GroupCommit(Generic[Item]):
    """Batches concurrent writes into one call: `await batch.submit(item)` returns once `flush` has stored it.

    Items submitted while a flush runs wait for the next one, which takes them all (at most `max_items` per
    call): under load one transaction carries many items, alone an item is flushed at once (no timer, no added
    latency). `flush` either stores every item of its call or raises; the exception reaches every submitter of
    that call. The flushing runs inside the submitters' own awaits (the first waiter of a batch runs it), so no
    task outlives them; a cancelled submitter's item is still flushed (it may already be in flight).
    """

    def __init__(self, flush: Callable[[list[Item]], Awaitable[None]], *, max_items: int = 500) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._flush = flush
        self._max = max_items
        self._queue: list[tuple[Item, asyncio.Future[None]]] = []
        self._lock = asyncio.Lock()

    async def submit(self, item: Item) -> None:
        """Store `item` with the next flush; raises what that flush raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        await uncancellable(self._flush_until(done))

    async def _flush_until(self, done: asyncio.Future[None]) -> None:
        async with self._lock:
            while not done.done():
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                try:
                    await self._flush([item for item, _ in batch])
                except BaseException as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_result(None)
        await done
