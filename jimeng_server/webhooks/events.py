"""Webhook events: their type, their exact JSON body and id. The body's `data` is the task query body of
tasks/answer.py, so an event says what a query says.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .. import jsonfast
from ..tasks.answer import settled_body
from ..tasks.cost import TaskCost
from ..tasks.records import NewEvent, Settlement, event_type_of


def rfc3339(ts: float) -> str:
    """`2026-01-01T00:00:00.000Z` for unix seconds `ts`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_body(event_type: str, data: Mapping[str, Any], now: float) -> str:
    """The JSON text of an event: `{"type", "timestamp" (RFC 3339), "data"}`, compact, UTF-8."""
    return jsonfast.dumps({"type": event_type, "timestamp": rfc3339(now), "data": dict(data)}).decode()


def new_event_id() -> str:
    """A fresh, unique event id (the `webhook-id`): `msg_` + 32 hex digits."""
    return f"msg_{uuid.uuid4().hex}"


def new_event(
    history_id: str,
    task_type: str,
    settlement: Settlement,
    now: float,
    *,
    parent_history_id: str | None = None,
    cost: TaskCost | None = None,
) -> NewEvent:
    """The webhook event of a task settling now: `task.succeeded` or `task.failed`, whose `data` is the
    task's query body (without `raw_data`) exactly as a query answers it once settled (`parent_history_id`:
    the source task of a post-edit; `cost`: the task's stored cost, as its query carries it)."""
    event_type = event_type_of(settlement.status)
    data = settled_body(history_id, task_type, settlement, parent_history_id=parent_history_id, cost=cost)
    return NewEvent(new_event_id(), event_type, event_body(event_type, data, now))
