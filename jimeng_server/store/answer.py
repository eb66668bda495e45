"""The task query body of the async spec, built in one place for the query endpoints and webhook events.

`{"history_id", "task_type", "status", "fail_code", "item_count", "results", "raw_data"}`; events carry
the same body without `raw_data`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

from .models import TaskRecord


class ResultItem(TypedDict):
    """One result of a task query body."""

    url: str


class TaskQueryBody(TypedDict):
    """The spec's task query answer without `raw_data` (the async API adds that itself)."""

    history_id: str
    task_type: str
    status: int
    fail_code: int | str
    item_count: int
    results: list[ResultItem] | None


def wire_fail_code(code: str) -> int | str:
    """The spec's `fail_code` on the wire: 0 when there is none, an int for a numeric code, else the text."""
    text = code.strip()
    if not text:
        return 0
    if text.isascii() and text.isdigit():
        return int(text)
    return text


def task_query_body(
    *,
    history_id: str,
    task_type: str,
    status: int,
    fail_code: str,
    item_count: int,
    results: Sequence[str] | None,
) -> TaskQueryBody:
    """Build the task query body (pure). `results` None stays null; URLs become `[{"url": ...}]`."""
    return {
        "history_id": history_id,
        "task_type": task_type,
        "status": int(status),
        "fail_code": wire_fail_code(fail_code),
        "item_count": item_count,
        "results": [{"url": url} for url in results] if results is not None else None,
    }


def task_query_body_of(record: TaskRecord) -> TaskQueryBody:
    """The task query body of a stored task (what `GET /v1/async/tasks/{id}` shows, minus raw_data)."""
    return task_query_body(
        history_id=record.history_id,
        task_type=record.kind.value,
        status=int(record.status),
        fail_code=record.fail_code,
        item_count=record.item_count,
        results=record.results,
    )


class TaskBody(TaskQueryBody):
    """The full query answer: the query body plus the untouched upstream record."""

    raw_data: dict[str, Any] | None


def with_raw(body: TaskQueryBody, raw: dict[str, Any] | None) -> TaskBody:
    """`body` plus `raw_data`."""
    return {**body, "raw_data": raw}
