"""Webhook visibility: list a task's delivery attempts, and queue its final event again (issue 6).

Only the task's owner sees it: one of the Authorization header's tokens must be the submitting account (or the
API key must be the one that submitted it);
anyone else gets 404 TASK_NOT_FOUND, exactly like an unknown id.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import Conflict
from ..services.task_queries import not_found
from ..services.task_records import DeliveryLog
from ..tasks.records import TaskRecord
from .appkeys import RESULT_LINKS, TASK_RECORDS, WEBHOOKS
from .request import caller_of
from .responses import json_answer

routes = web.RouteTableDef()


async def _owned_task(request: web.Request) -> TaskRecord:
    """The stored task named in the path, if an account of the header owns it; else 404."""
    caller = await caller_of(request)
    history_id = request.match_info["history_id"]
    record = await request.app[TASK_RECORDS].owned(caller, history_id)
    if record is None:
        raise not_found(history_id)
    return record


@routes.get("/v1/async/tasks/{history_id}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    """`{"history_id", "callback_url", "events": [...], "deliveries": [...]}`: each event (`webhook_id`,
    `type`, `state`, `attempts`, `next_attempt_at`, `created_at`) and each attempt (`webhook_id`, `attempt`,
    `at`, `status` (HTTP status or null), `error` (null on success), `latency_ms`, `next_attempt_at`).
    Times are unix seconds. A task without callback_url has empty lists."""
    record = await _owned_task(request)
    return json_answer(delivery_view(record, await request.app[TASK_RECORDS].deliveries(record.history_id)))


def delivery_view(record: TaskRecord, log: DeliveryLog) -> dict[str, Any]:
    """The delivery log of a stored task, as `GET .../deliveries` answers it (the admin task detail shows it
    too)."""
    return {
        "history_id": record.history_id,
        "callback_url": record.callback_url,
        "events": [
            {
                "webhook_id": e.event_id,
                "type": e.type,
                "state": e.state.value,
                "attempts": e.attempts,
                "next_attempt_at": e.next_attempt_at if e.state.active else None,
                "created_at": e.created_at,
            }
            for e in log.events
        ],
        "deliveries": [
            {
                "webhook_id": a.event_id,
                "attempt": a.attempt,
                "at": a.at,
                "status": a.status,
                "error": a.error,
                "latency_ms": a.latency_ms,
                "next_attempt_at": a.next_attempt_at,
            }
            for a in log.attempts
        ],
    }


@routes.post("/v1/async/tasks/{history_id}/deliveries/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    """Queue the task's latest event again: same `webhook-id`, state pending, due now, retry schedule
    restarted. 202 `{"history_id", "webhook_id", "state": "pending", "next_attempt_at"}`.

    409 when there is nothing to send yet (TASK_NOT_FINISHED), the task has no callback_url
    (NO_CALLBACK_URL), or that event is being sent right now (DELIVERY_IN_PROGRESS).
    """
    record = await _owned_task(request)
    links = request.app.get(RESULT_LINKS)
    owner = (await caller_of(request)).account_with(record.account_fp)
    if links is not None and owner is not None:
        links.remember(record.history_id, owner)  # the resend's expiring links are re-signed on this account
    now = request.app[WEBHOOKS].clock.time()
    redelivery = await request.app[TASK_RECORDS].redeliver(record.history_id, now=now)
    latest = redelivery.event
    if latest is None:
        if record.callback_url is None:
            raise Conflict(
                f"task {record.history_id} was submitted without callback_url; there is no webhook to send",
                code="NO_CALLBACK_URL",
            )
        raise Conflict(
            f"task {record.history_id} has no webhook event yet; it is sent when the task finishes",
            code="TASK_NOT_FINISHED",
        )
    if not redelivery.queued:
        raise Conflict(
            f"webhook {latest.event_id} of task {record.history_id} is being sent right now; "
            "check GET .../deliveries and try again",
            code="DELIVERY_IN_PROGRESS",
        )
    request.app[WEBHOOKS].wake()
    body = {"history_id": record.history_id, "webhook_id": latest.event_id, "state": "pending", "next_attempt_at": now}
    return json_answer(body, status=202)
