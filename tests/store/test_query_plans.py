"""How SQLite runs the statements of a settle: by key, not by walking every task in flight.

A settle locks (on PostgreSQL) and reads the open tasks among its batch (`OPEN_TASKS`). Written as `status = 20
AND history_id IN (...)`, SQLite chose the `tasks_status` index and visited every task still processing (1.1 ms
per settle of 100 with 2,000 in flight, 5.3 ms with 10,000, on the write connection); the statement now asks
for the batch's ids by primary key. The plan is read from a real store file (`EXPLAIN QUERY PLAN`) with tasks in
flight and, as the server runs it, no statistics gathered (no ANALYZE): the planner's own guesses decide."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from record_support import make_record

from jimeng_server.clock import ManualClock
from jimeng_server.store.dialect import Dialect, render
from jimeng_server.store.sqlite import SqliteStore
from jimeng_server.store.tables import OPEN_TASKS
from jimeng_server.tasks.records import TaskStatus


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
