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
    that call. One flushing task runs while items wait (started by the submit that finds none running; it
    flushes batch after batch, in submit order, and ends in the step that settles the last waiting items, so it
    never outlives its submitters); a submitter only waits for its item's outcome, so a cancelled submitter's
    item is still flushed (it may already be in flight) and its cancellation is raised once it was. No task is
    made per item.
    """

    def __init__(self, flush: Callable[[list[Item]], Awaitable[None]], *, max_items: int = 500) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._flush = flush
        self._max = max_items
        self._queue: list[tuple[Item, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> None:
        """Store `item` with the next flush; raises what that flush raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_all())
        await uncancellable(done)

    async def _flush_all(self) -> None:
        """Flush the waiting items, batch after batch, until none waits. A failure of `flush` settles its batch's
        items with it and the next batch is flushed; anything else (the task itself cancelled) settles every
        waiting item with a RuntimeError and is raised."""
        batch: list[tuple[Item, asyncio.Future[None]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                try:
                    await self._flush([item for item, _ in batch])
                except Exception as exc:
                    _settle(batch, exc)
                else:
                    _settle(batch, None)
        except BaseException as exc:
            _settle(batch + self._queue, RuntimeError(repr(exc)))
            self._queue = []
            raise
        finally:
            self._flusher = None


def _settle(batch: list[tuple[Item, asyncio.Future[None]]], exc: Exception | None) -> None:
    """Give each waiting future of `batch` its outcome: `exc`, or done."""
    for _, fut in batch:
        if not fut.done():
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)
