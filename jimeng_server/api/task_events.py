"""Task event streams: `GET /v1/async/tasks/{history_id}/events` (Server-Sent Events), and the same events for
a sync submit sent with `"stream": true` (`stream_submitted`).

Events, each `data:` one JSON task body exactly as `GET /v1/async/tasks/{history_id}` answers at that moment:
- `progress`: the task is running and something a caller can see changed (status, queue place or wait, item
  count); the body without `raw_data`. The first look is always sent.
- `final`: the task ended (status 10 or 30); the whole body, `raw_data` included. The stream ends.
- `error`: `{"error": {"message", "type", "code"}}`: the kind's deadline passed without a final status
  (`TASK_TIMEOUT`; the task goes on) or the query failed (the upstream's reason). The stream ends.
Between events, a `: keep-alive` comment at least every `services.chat.POLL_SECONDS`. An unknown or foreign
id is a plain 404 before the stream opens.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..errors import ApiError, from_upstream
from ..services.callers import Caller
from ..services.chat import POLL_SECONDS
from ..services.task_follow import follow, is_final
from ..store.models import TaskKind
from ..upstream.errors import UpstreamError
from .appkeys import CLOCK, QUERIES, WATCHER
from .async_tasks import history_id_value
from .chat import timeout_error
from .request import caller_of
from .sse import EventStream

routes = web.RouteTableDef()


def _visible(body: dict[str, Any]) -> tuple[Any, ...]:
    return body.get("status"), json.dumps(body.get("queue"), sort_keys=True), body.get("item_count")


async def _bodies(
    request: web.Request, caller: Caller, first: dict[str, Any], kind: TaskKind, since: float
) -> AsyncIterator[dict[str, Any]]:
    yield first
    if not is_final(first):
        until = since + request.app[WATCHER].schedule_for(kind).deadline
        clock = request.app[CLOCK]
        async for body in follow(
            request.app[QUERIES], caller, str(first["history_id"]), clock, until=until, poll=POLL_SECONDS
        ):
            yield body


async def send_task_events(
    request: web.Request, caller: Caller, first: dict[str, Any], kind: TaskKind, *, since: float
) -> web.StreamResponse:
    """Open the event stream and send the task's events from its body `first` until it is final, or until
    the kind's deadline counted from `since` (the submit, or the moment the stream was asked for)."""
    stream = EventStream(request)
    await stream.open()
    seen: tuple[Any, ...] | None = None
    body: dict[str, Any] = {}
    try:
        async for body in _bodies(request, caller, first, kind, since):
            if is_final(body):
                await stream.send(body, event="final")
                break
            if _visible(body) != seen:
                seen = _visible(body)
                await stream.send({k: v for k, v in body.items() if k != "raw_data"}, event="progress")
            else:
                await stream.comment()
        else:
            if not is_final(body):
                await stream.send(timeout_error(str(first["history_id"])).body(), event="error")
    except (ApiError, UpstreamError) as exc:
        err = exc if isinstance(exc, ApiError) else from_upstream(exc)
        await stream.send(err.body(), event="error")
    return await stream.close()


@routes.get("/v1/async/tasks/{history_id}/events")
async def task_events(request: web.Request) -> web.StreamResponse:
    """The task's events as Server-Sent Events until it is final (see the module doc)."""
    caller = await caller_of(request)
    history_id = history_id_value(request.match_info["history_id"], "history_id")
    first: dict[str, Any] = json.loads(await request.app[QUERIES].query(caller, history_id))
    kind = TaskKind.VIDEO if first.get("task_type") == TaskKind.VIDEO.value else TaskKind.IMAGE
    return await send_task_events(request, caller, first, kind, since=request.app[CLOCK].time())
