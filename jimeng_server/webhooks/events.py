"""Webhook events: why a task failed, the event body, and the outbox writer that runs inside the store
transaction ending a task's watch (so the state change and its event are written together).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import aiosqlite

from ..store import outbox
from ..store.answer import task_query_body
from ..store.models import Outcome, Reason, TaskStatus
from ..store.outbox import Extra

EVENT_SUCCEEDED: Final = "task.succeeded"
EVENT_FAILED: Final = "task.failed"


_FAILURES: Final[dict[Reason, tuple[str, str]]] = {
    Reason.UPSTREAM_FAILED: ("UPSTREAM_FAILED", "the upstream reported the generation as failed"),
    Reason.TIMEOUT: ("TIMEOUT", "the task did not finish before its deadline"),
    Reason.NOT_FOUND: ("TASK_NOT_FOUND", "the upstream never showed the task"),
    Reason.SESSION_EXPIRED: ("TOKEN_EXPIRED", "the upstream refused the session; sign in again"),
}


def failure_info(reason: Reason | None, *, fail_code: str = "", detail: str = "") -> dict[str, str]:
    """Why a task failed, as `{"code", "message"}`. `code` is UPPER_SNAKE: UPSTREAM_FAILED (the default;
    the message names `fail_code`), TIMEOUT, TASK_NOT_FOUND, TOKEN_EXPIRED."""
    chosen = reason if reason is not None and reason is not Reason.DONE else Reason.UPSTREAM_FAILED
    code, message = _FAILURES.get(chosen, ("FAILED", "the task failed"))
    if chosen is Reason.UPSTREAM_FAILED and fail_code:
        message += f" (fail_code {fail_code})"
    elif detail:
        message += f" ({detail})"
    return {"code": code, "message": message}


def failure_of(outcome: Outcome) -> dict[str, str] | None:
    """`failure_info` of a watcher outcome; None for a success."""
    if outcome.status is not TaskStatus.FAILED:
        return None
    return failure_info(outcome.reason, fail_code=outcome.fail_code, detail=outcome.detail)


def event_type_of(status: TaskStatus) -> str:
    """`task.succeeded` for DONE, `task.failed` for FAILED; ValueError for a status that is not final."""
    if status is TaskStatus.DONE:
        return EVENT_SUCCEEDED
    if status is TaskStatus.FAILED:
        return EVENT_FAILED
    raise ValueError(f"no webhook event for a task that is not final ({status!r})")


def rfc3339(ts: float) -> str:
    """`2026-01-01T00:00:00.000Z` for unix seconds `ts`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_body(event_type: str, data: Mapping[str, Any], now: float) -> str:
    """The JSON text of an event: `{"type", "timestamp" (RFC 3339), "data"}`, compact, UTF-8."""
    return json.dumps(
        {"type": event_type, "timestamp": rfc3339(now), "data": dict(data)},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def new_event_id() -> str:
    """A fresh, unique event id (the `webhook-id`): `msg_` + 32 hex digits."""
    return f"msg_{uuid.uuid4().hex}"


def task_event_writer(
    history_id: str,
    *,
    now: float,
    reason: Reason | None = None,
    detail: str = "",
    event_id: str | None = None,
) -> Extra:
    """An `extra=` for the store write that ends a task's watch (`TaskStore.finish`, `drop_token`).

    Inside that transaction it reads the task row and, if the task has a callback URL, writes one event
    whose data is the task query body (`task_query_body`), plus `error` (`failure_info`) for failures:
    - row DONE: `task.succeeded`;
    - row FAILED: `task.failed` (reason default UPSTREAM_FAILED, with the row's fail_code);
    - row still processing and `reason` given (a watch given up: TIMEOUT, NOT_FOUND, SESSION_EXPIRED):
      `task.failed` with `status` 30 in the data;
    - otherwise (unknown task, no callback URL, processing without a reason): nothing.
    Deliveries do not need the owner's session token. Call `WebhookSender.wake()` after the write.
    """
    chosen_id = event_id or new_event_id()

    async def write(conn: aiosqlite.Connection) -> None:
        task = await outbox.task_fields(conn, history_id)
        if task is None or not task.callback_url:
            return
        status = TaskStatus(task.status)
        if status is TaskStatus.PROCESSING:
            if reason is None or reason is Reason.DONE:
                return
            status = TaskStatus.FAILED
        data: dict[str, Any] = dict(
            task_query_body(
                history_id=task.history_id,
                task_type=task.kind,
                status=int(status),
                fail_code=task.fail_code,
                item_count=task.item_count,
                results=task.results,
            )
        )
        if status is TaskStatus.FAILED:
            data["error"] = failure_info(reason, fail_code=task.fail_code, detail=detail)
        event_type = event_type_of(status)
        await outbox.insert_event(
            conn,
            event_id=chosen_id,
            history_id=task.history_id,
            type=event_type,
            body=event_body(event_type, data, now),
            now=now,
        )

    return write


def final_event_writer(outcome: Outcome, *, now: float, event_id: str | None = None) -> Extra:
    """`task_event_writer` for a watcher outcome (its reason and detail explain a failure). Safe to pass
    for every task: tasks without a callback URL get no event."""
    failed = outcome.status is TaskStatus.FAILED
    return task_event_writer(
        outcome.history_id,
        now=now,
        reason=outcome.reason if failed else None,
        detail=outcome.detail,
        event_id=event_id,
    )
