"""Webhook events: their type, their exact JSON body and id. The body's `data` is the task query body of
tasks/answer.py, so an event says what a query says.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .. import jsonfast
from ..randomid import random_hex
from ..tasks.answer import ResultItem, settled_body
from ..tasks.cost import TaskCost
from ..tasks.records import MakeEvent, NewEvent, Settlement, event_type_of


@functools.lru_cache(maxsize=64)
def rfc3339(ts: float) -> str:
    """`2026-01-01T00:00:00.000Z` for unix seconds `ts` (remembered for the last few: the events of one settle
    share its time, and formatting costs more than building the rest of an event's envelope)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_body(event_type: str, data: Mapping[str, Any], now: float) -> str:
    """The JSON text of an event: `{"type", "timestamp" (RFC 3339), "data"}`, compact, UTF-8."""
    return jsonfast.dumps({"type": event_type, "timestamp": rfc3339(now), "data": dict(data)}).decode()


def new_event_id() -> str:
    """A fresh, unique, unpredictable event id (the `webhook-id`): `msg_` + 32 hex digits (128 random bits)."""
    return f"msg_{random_hex()}"


def links_expire_at(task_type: str, results: Sequence[ResultItem] | None) -> float:
    """When the result links of an event's `data.results` stop working, as far as the body tells (stored with the
    event, so the sender need not read the body again: `services.result_links.ResultLinks.event_body`): the
    earliest `expires_at`; `math.inf` when nothing in it expires (no results, or no link says); `-math.inf` when
    the body cannot tell (a video's links: how long they live is in the task's stored record)."""
    if not results:
        return math.inf
    if task_type == "video":
        return -math.inf
    return float(min((r["expires_at"] for r in results if r["expires_at"] is not None), default=math.inf))


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
    body = event_body(event_type, data, now)
    return NewEvent(new_event_id(), event_type, body, links_expire_at(task_type, data["results"]))


def event_maker(history_id: str, task_type: str, settlement: Settlement, now: float) -> MakeEvent:
    """`new_event` of a task settling now, made by the store's settle from the source task and stored cost its
    transaction reads (`tasks.records.Finish.event`)."""

    def make(parent_history_id: str | None, cost: TaskCost | None) -> NewEvent:
        return new_event(history_id, task_type, settlement, now, parent_history_id=parent_history_id, cost=cost)

    return make
