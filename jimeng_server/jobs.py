"""Background jobs: the one owner of every task the server starts in the background (aiojobs-style, pure asyncio).

A `Jobs` owner holds two kinds of job, each an `asyncio.Task` it tracks until it ends:

- `spawn(coro, name=)`: a job the owner may cut short: a loop, a poll, a reader. `stop` and `close` cancel it.
- `shield(coro, name=)`: work that should run to its end: a store write, a webhook send, an upstream lookup that
  several callers share. It returns a `Job`; any number of callers may `await job`. A caller that is cancelled
  only stops waiting: the work goes on. `stop` and `close` wait for it (up to their grace), then cancel it.

An exception a job ends with (other than its cancellation) is never lost: the owner logs it once, with the job's
name, unless it reached a caller awaiting the (shielded) job at the time, which then handles it.

`scope(name)` gives a child owner, one per component (the watcher, the webhook sender, ...): the component's own
`stop` stops its scope, and the app's root owner, closed last at shutdown, reaches every scope (anything a
component left behind). `live` counts the jobs not ended yet, the scopes' included.

`stop(grace)` ends the jobs running now and the owner stays usable (a component may start again after its stop);
`close(grace)` also refuses new jobs for good, in this owner and its scopes (`JobsClosed`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class JobsClosed(RuntimeError):
    """A job was started on an owner that is closed (its coroutine is closed, never run)."""


class Job(Generic[T]):
    """A shielded job: `await job` (by any number of callers, also after it ended) returns its result or raises
    its exception; a caller cancelled meanwhile gets its CancelledError and the work goes on. `task` is the
    job's task (for `asyncio.wait` and done callbacks; awaiting it directly would not shield it)."""

    __slots__ = ("_waiters", "task")

    def __init__(self, task: asyncio.Task[T]) -> None:
        self.task = task
        self._waiters = 0

    def __await__(self) -> Generator[Any, None, T]:
        return self._wait().__await__()

    async def _wait(self) -> T:
        self._waiters += 1
        try:
            return await asyncio.shield(self.task)
        finally:
            self._waiters -= 1

    @property
    def awaited(self) -> bool:
        """True while a caller awaits the job."""
        return self._waiters > 0

    def done(self) -> bool:
        """True once the job ended (result, exception or cancelled)."""
        return self.task.done()


class Jobs:
    """An owner of background jobs (see the module doc). `name` appears in the log line of a failed job."""

    def __init__(self, name: str = "jobs") -> None:
        self.name = name
        self._spawned: set[asyncio.Task[Any]] = set()
        self._shielded: dict[asyncio.Task[Any], Job[Any]] = {}
        self._scopes: list[Jobs] = []
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Jobs {self.name} {state} live={self.live}>"

    # ------------------------------------------------------------------ starting jobs

    def spawn(self, coro: Awaitable[T], *, name: str) -> asyncio.Task[T]:
        """Run `coro` as a job named `name` that `stop`/`close` cancel; returns its task. Raises JobsClosed on a
        closed owner."""
        task = self._start(coro, name)
        self._spawned.add(task)
        task.add_done_callback(self._spawn_ended)
        return task

    def shield(self, coro: Awaitable[T], *, name: str) -> Job[T]:
        """Run `coro` as a job named `name` that its callers' cancellation does not reach and that `stop`/`close`
        wait for (up to their grace); returns its `Job` (await it for the result). Raises JobsClosed on a closed
        owner."""
        task = self._start(coro, name)
        job = Job(task)
        self._shielded[task] = job
        task.add_done_callback(self._shield_ended)
        return job

    def scope(self, name: str) -> Jobs:
        """A child owner named `<this name>/<name>`: its jobs count in `live`; `stop`/`close` here reach it too."""
        if self._closed:
            raise JobsClosed(f"background jobs of {self.name} are closed: no new scope {name}")
        child = Jobs(f"{self.name}/{name}")
        self._scopes.append(child)
        return child

    # ------------------------------------------------------------------ looking

    @property
    def live(self) -> int:
        """How many jobs have not ended yet (this owner's and its scopes')."""
        return len(self._spawned) + len(self._shielded) + sum(scope.live for scope in self._scopes)

    @property
    def closed(self) -> bool:
        """True once `close` was called (here or on a parent)."""
        return self._closed

    def census(self) -> dict[str, int]:
        """How many jobs each owner runs now, by name: this one's own and each scope's (the `/metrics` gauge)."""
        counts = {self.name: len(self._spawned) + len(self._shielded)}
        for scope in self._scopes:
            for name, live in scope.census().items():
                counts[name] = counts.get(name, 0) + live
        return counts

    def tasks(self) -> list[asyncio.Task[Any]]:
        """The tasks of the jobs not ended yet (this owner's and its scopes')."""
        return self._tasks(spawned=True, shielded=True)

    # ------------------------------------------------------------------ ending jobs

    async def drain(self) -> None:
        """Return once no shielded job is live here (also those started while waiting); spawned jobs go on."""
        await self._wait_shielded(None)

    async def stop(self, grace: float | None = None) -> None:
        """End every job live now, this owner's and its scopes': cancel the spawned ones, wait for the shielded
        ones (also those started meanwhile) up to `grace` seconds (None: no limit; 0: none), then cancel what is
        left; returns once all of them ended. The owner keeps taking new jobs."""
        spawned = self._tasks(spawned=True, shielded=False)
        await _cancelled(spawned)
        await self._wait_shielded(grace)
        while left := self.tasks():  # a job cut short may start another in its clean-up: cut that short too
            await _cancelled(left)

    async def close(self, grace: float | None = None) -> None:
        """Refuse new jobs for good (here and in every scope), then `stop(grace)`."""
        self._mark_closed()
        await self.stop(grace)

    # ------------------------------------------------------------------ internals

    def _start(self, aw: Awaitable[T], name: str) -> asyncio.Task[T]:
        coro = aw if isinstance(aw, Coroutine) else _awaited(aw)
        if self._closed:
            coro.close()
            raise JobsClosed(f"background jobs of {self.name} are closed: {name} not started")
        return asyncio.get_running_loop().create_task(coro, name=name)

    def _spawn_ended(self, task: asyncio.Task[Any]) -> None:
        self._spawned.discard(task)
        self._report(task)

    def _shield_ended(self, task: asyncio.Task[Any]) -> None:
        job = self._shielded.pop(task, None)
        if job is None or not job.awaited:  # a caller awaiting it gets the exception (and handles it)
            self._report(task)

    def _report(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()  # marks it retrieved: this line is its one report
        if exc is not None:
            log.error("background job %s (%s) failed: %r", task.get_name(), self.name, exc, exc_info=exc)

    def _tasks(self, *, spawned: bool, shielded: bool) -> list[asyncio.Task[Any]]:
        found: list[asyncio.Task[Any]] = []
        if spawned:
            found.extend(self._spawned)
        if shielded:
            found.extend(self._shielded)
        for scope in self._scopes:
            found.extend(scope._tasks(spawned=spawned, shielded=shielded))
        return found

    async def _wait_shielded(self, grace: float | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if grace is None else loop.time() + grace
        while pending := self._tasks(spawned=False, shielded=True):
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return
            done, _ = await asyncio.wait(pending, timeout=left)
            if not done:
                return

    def _mark_closed(self) -> None:
        self._closed = True
        for scope in self._scopes:
            scope._mark_closed()


async def _awaited(aw: Awaitable[T]) -> T:
    return await aw


async def _cancelled(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait until each has ended (their outcomes are reported by their owner)."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
