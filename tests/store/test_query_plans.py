"""How SQLite runs the statements of a settle and of a claim: by key, not by walking every task in flight or every
due event.

A settle locks (on PostgreSQL) and reads the open tasks among its batch (`OPEN_TASKS`). Written as `status = 20
AND history_id IN (...)`, SQLite chose the `tasks_status` index and visited every task still processing (1.1 ms
per settle of 100 with 2,000 in flight, 5.3 ms with 10,000, on the write connection); the statement now asks
for the batch's ids by primary key. The plan is read from a real store file (`EXPLAIN QUERY PLAN`) with tasks in
flight and, as the server runs it, no statistics gathered (no ANALYZE): the planner's own guesses decide."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from record_support import DONE, event, make_record

from jimeng_server.clock import ManualClock
from jimeng_server.store.dialect import Dialect, render
from jimeng_server.store.sqlite import SqliteStore
from jimeng_server.store.tables import CLAIM_DUE, OPEN_TASKS
from jimeng_server.tasks.records import Finish, TaskStatus


def plan_of(db: Path, query: str, *args: object) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + render(query, Dialect.SQLITE), args)]


@pytest.mark.asyncio
async def test_open_tasks_are_looked_up_by_key(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    store = await SqliteStore.open(db, clock=ManualClock(1000.0))
    try:
        for i in range(300):
            await store.insert(make_record(f"h{i}", status=TaskStatus.PROCESSING if i % 3 else TaskStatus.DONE))
    finally:
        await store.close()
    plan = plan_of(db, OPEN_TASKS, '["h1", "h2", "h3"]')
    assert not any("tasks_status" in step for step in plan), plan
    assert any(step.startswith("SEARCH tasks USING") and "(history_id=?)" in step for step in plan), plan


@pytest.mark.asyncio
async def test_a_claim_takes_the_first_due_events_in_index_order(tmp_path: Path) -> None:
    """A burst's events share one due time. With the due index on `next_attempt_at` alone, SQLite read every due
    event and sorted them by `seq` to take the first few (each claim of a 5,000 burst read all that were left); the
    index is in the claim's order (`next_attempt_at, seq`), so the claim stops after the events it takes."""
    db = tmp_path / "tasks.db"
    store = await SqliteStore.open(db, clock=ManualClock(1000.0))
    try:
        for i in range(300):
            await store.insert(make_record(f"h{i}", callback_url="https://hooks.example/cb"))
        await store.settle([Finish(f"h{i}", DONE, event(f"h{i}")) for i in range(300)])
    finally:
        await store.close()
    plan = plan_of(db, CLAIM_DUE, 1000.0, "[]", 10, 1060.0)
    assert any("USING INDEX webhook_events_due" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
