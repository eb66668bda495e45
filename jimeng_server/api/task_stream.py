"""Task event streams (Server-Sent Events) and the submit answer they start from; shared by
`GET /v1/async/tasks/{history_id}/events` (task_events.py), the sync endpoints sent with `"stream": true`
(`stream_submit`) and chat completions (`timeout_error`, `submitted`).

Events, each `data:` one JSON task body exactly as `GET /v1/async/tasks/{history_id}` answers at that moment:
- `progress`: the task is running and something a caller can see changed (status, queue place or wait, item
  count); the body without `raw_data`. The first look is always sent.
- `final`: the task ended (status 10 or 30); the whole body, `raw_data` included. The stream ends.
- `error`: `{"error": {"message", "type", "code"}}`: the kind's deadline passed without a final status
  (`TASK_TIMEOUT`; the task goes on) or the query failed (the upstream's reason). The stream ends.
Between events, a `: keep-alive` comment at least every `services.chat.POLL_SECONDS`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from ..errors import ApiError, GatewayTimeout, from_upstream
from ..services.callers import Caller
from ..services.chat import POLL_SECONDS
from ..services.generation import Submission
from ..services.idempotency import SpendMark
from ..services.task_follow import follow, is_final
from ..tasks.records import TaskKind
from ..upstream.errors import UpstreamError
from .appkeys import CLOCK, QUERIES, WATCHER
from .fields import STREAM
from .idempotency import idempotent
from .responses import json_answer
from .sse import EventStream

SUBMITTED_MESSAGE = "任务已提交，请使用 history_id 查询任务状态"

Submit = Callable[[SpendMark], Awaitable[Submission]]
"""The spending part of a submit: sends the generate with the request's mark."""


def submitted(submission: Submission) -> web.Response:
    """The spec's submit answer (`input_images` only for tasks made from input images)."""
    body: dict[str, Any] = {"created": int(submission.submitted_at), "history_id": submission.history_id}
    if submission.input_images is not None:
        body["input_images"] = submission.input_images
    body.update(status="submitted", message=SUBMITTED_MESSAGE)
    return json_answer(body)


async def submit_once(request: web.Request, canonical: Any, submit: Submit) -> tuple[web.Response, dict[str, Any]]:
    """Run `submit` under the request's Idempotency-Key (`canonical`: its parsed body) answering the async
    submit body; that answer (a replayed error as it is) and the accepted body (`history_id`, `created`; empty
    for an error). For the doors that answer in their own shape once the task is accepted."""

    async def respond(spend: SpendMark) -> web.Response:
        return submitted(await submit(spend))

    answer = await idempotent(request, canonical, respond)
    accepted = json.loads(answer.body) if answer.status == 200 and isinstance(answer.body, bytes) else {}
    return answer, accepted


def timeout_error(history_id: str) -> GatewayTimeout:
    """504 TASK_TIMEOUT: the task did not end within its kind's deadline (it goes on)."""
    return GatewayTimeout(
        f"task {history_id} did not finish in time; it goes on: query it with GET /v1/async/tasks/{history_id}",
        code="TASK_TIMEOUT",
    )


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


def wants_stream(fields: dict[str, Any]) -> bool:
    """Whether a sync submit asks for the event stream instead of a silent wait (`"stream": true`)."""
    return bool(STREAM.read(fields))


async def stream_submit(
    request: web.Request, caller: Caller, canonical: Any, submit: Submit, kind: TaskKind
) -> web.StreamResponse:
    """A sync submit with `"stream": true`: submit as the async twin does (under the Idempotency-Key: a retry
    streams the same task), then answer the task's event stream (the kind's deadline counted from the submit)
    instead of waiting silently. A refusal before the submit is an ordinary JSON error."""
    answer, accepted = await submit_once(request, canonical, submit)
    if not accepted:
        return answer  # a replayed error
    history_id = str(accepted["history_id"])
    first: dict[str, Any] = json.loads(await request.app[QUERIES].query(caller, history_id))
    return await send_task_events(request, caller, first, kind, since=float(accepted["created"]))
