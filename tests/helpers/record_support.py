"""Task records for store tests: a processing image task of one account, changed by keyword."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from jimeng_server.tasks.records import NewEvent, Settlement, TaskKind, TaskRecord, TaskStatus

ACCOUNT = "fp-account-a"
OTHER = "fp-account-b"
TOKEN = "secret-session-token"

DONE = Settlement(
    status=TaskStatus.DONE,
    upstream_status=50,
    fail_code="",
    error=None,
    results=("https://example.com/1.webp", "https://example.com/2.webp"),
    item_count=2,
    raw_data={"status": 50, "名": "值"},
)
"""A done settlement with two result URLs (and a non-ASCII raw record)."""


def make_record(history_id: str = "h1", *, account_fp: str = ACCOUNT, **changes: Any) -> TaskRecord:
    """A processing `jimeng-4.5` image task of `account_fp` created at 1000.0, with `changes` applied."""
    record = TaskRecord.submitted(
        history_id, account_fp, TOKEN, TaskKind.IMAGE, "jimeng-4.5", f"submit-{history_id}", at=1000.0
    )
    return replace(record, **changes)


def event(history_id: str) -> NewEvent:
    """The `task.succeeded` outbox event a settle of `history_id` writes (a fixed body)."""
    return NewEvent(f"msg_{history_id}", "task.succeeded", '{"type":"task.succeeded"}')
