"""Injectable time: the real clock for production, a manual clock for deterministic tests.

Everything that waits or stamps time (watcher, simulator timeline, webhooks, store) takes a `Clock`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Collection
from typing import Any, Protocol


class Clock(Protocol):
    """Wall-clock seconds and an awaitable sleep on the same time line."""

    def time(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` on this clock's time line."""
        ...


async def sleep_unless(clock: Clock, seconds: float, event: asyncio.Event) -> None:
    """Sleep `seconds` on `clock`, or less: return as soon as `event` is set (at once if it is set already).
    The event is left as it is (the caller clears it when it has acted on it)."""
    if event.is_set():
        return
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in (sleeper, waiter):
            fut.cancel()
        await asyncio.gather(sleeper, waiter, return_exceptions=True)


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when `advance()` is called; sleepers wake when their time is reached.

    `sleep(0)` and negative sleeps return after one loop iteration without waiting for `advance()`.
    """

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._owners: dict[asyncio.Future[None], asyncio.Task[Any] | None] = {}
        self._seq = itertools.count()

    def time(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        self._owners[fut] = asyncio.current_task()
        try:
            await fut
        finally:
            self._owners.pop(fut, None)

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting (cancelled ones excluded)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_wakeup(self, owners: Collection[asyncio.Task[Any]] | None = None) -> float | None:
        """The earliest time a pending sleeper wants (only sleepers inside the `owners` tasks, if given), or None."""
        live = [
            t for t, _, f in self._sleepers if not f.done() and (owners is None or self._owners.get(f) in owners)
        ]
        return min(live) if live else None

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose time has come, in order."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, fut = heapq.heappop(self._sleepers)
            if fut.done():
                continue
            self._now = max(self._now, when)
            fut.set_result(None)
            # Let the woken task run up to its next await before waking the next one.
            for _ in range(5):
                await asyncio.sleep(0)
        self._now = target
        for _ in range(5):
            await asyncio.sleep(0)
