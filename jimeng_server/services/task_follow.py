"""Following one task to its end through the query service (`TaskQueries.query`), for the answers that wait:
chat completions, the task event stream and the gateway shapes. Every body yielded is exactly what
`GET /v1/async/tasks/{id}` answers at that moment (one truth: no second reading of the upstream record)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from ..clock import Clock
from ..tasks.records import TaskStatus
from .callers import Caller
from .task_queries import TaskQueries


def is_final(body: dict[str, Any]) -> bool:
    """Whether a task query body is final (status 10 or 30)."""
    return bool(body.get("status") != TaskStatus.PROCESSING)


async def follow(
    queries: TaskQueries, caller: Caller, history_id: str, clock: Clock, *, until: float, poll: float
) -> AsyncIterator[dict[str, Any]]:
    """Yield the task's query body after each look, until it is final or the clock passes `until`. Each look
    waits up to `poll` seconds for the task to end (the query's long poll, watching it meanwhile), so a body
    comes at least every `poll` seconds while the task runs. Raises what the query raises (404, upstream
    errors)."""
    while True:
        start = clock.time()
        wait = max(0.0, min(poll, until - start))
        body: dict[str, Any] = json.loads(await queries.query(caller, history_id, wait=wait))
        yield body
        if is_final(body) or clock.time() >= until:
            return
        rest = start + wait - clock.time()
        if rest > 0:  # the query did not wait (nothing to watch): keep the pace on the clock
            await clock.sleep(rest)


async def last_of(bodies: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """The last body `follow` yields (the final one, or the last look before its deadline)."""
    last: dict[str, Any] = {}
    async for body in bodies:
        last = body
    return last
