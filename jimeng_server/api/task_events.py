"""`GET /v1/async/tasks/{history_id}/events`: a task's Server-Sent Events (the events: task_stream.py). An
unknown or foreign id is a plain 404 before the stream opens."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..tasks.records import TaskKind
from .appkeys import CLOCK, QUERIES
from .async_tasks import history_id_value
from .request import caller_of
from .task_stream import send_task_events

routes = web.RouteTableDef()


@routes.get("/v1/async/tasks/{history_id}/events")
async def task_events(request: web.Request) -> web.StreamResponse:
    """The task's events as Server-Sent Events until it is final (see the module doc)."""
    caller = await caller_of(request)
    history_id = history_id_value(request.match_info["history_id"], "history_id")
    first: dict[str, Any] = json.loads(await request.app[QUERIES].query(caller, history_id))
    kind = TaskKind.VIDEO if first.get("task_type") == TaskKind.VIDEO.value else TaskKind.IMAGE
    return await send_task_events(request, caller, first, kind, since=request.app[CLOCK].time())
