"""The one schema history (jimeng_server/store/schema.py) rendered per dialect: a fresh store of either backend
has exactly the schema the backends had before their histories were merged (tests/fixtures/store/schema.json,
recorded from the two separate histories, plus the model cool-downs, task costs and events' links expiry steps
appended since), each keeps its version numbers, and an older SQLite file migrates to the same schema with its
rows intact."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from store_backends import pg_schema, sqlite_schema

from jimeng_server.clock import ManualClock
from jimeng_server.store import postgres_sql, schema
from jimeng_server.store.dialect import Dialect
from jimeng_server.store.outbox import Attempt, AttemptResult, EventState
from jimeng_server.store.postgres import PostgresStore
from jimeng_server.store.sqlite import SqliteStore
from jimeng_server.tasks.records import TaskKind, TaskStatus

GOLDEN = json.loads((Path(__file__).parents[1] / "fixtures" / "store" / "schema.json").read_text())


def test_each_dialect_keeps_its_version_numbers() -> None:
    assert len(schema.migrations(Dialect.SQLITE)) == GOLDEN["sqlite"]["user_version"] == 10
    assert len(schema.migrations(Dialect.POSTGRES)) == GOLDEN["postgres"]["version"] == 8
    # the steps written once are the same script in both, but for the type names and WITHOUT ROWID
    assert schema.migrations(Dialect.SQLITE)[-3:] == [s.sqlite for s in schema.HISTORY[-3:]]
    assert "DOUBLE PRECISION" not in schema.migrations(Dialect.SQLITE)[-1]
    assert "WITHOUT ROWID" not in schema.migrations(Dialect.POSTGRES)[-1]


async def test_fresh_sqlite_schema_is_unchanged(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "fresh.db", clock=ManualClock())
    await store.close()
    assert sqlite_schema(tmp_path / "fresh.db") == GOLDEN["sqlite"]


async def test_fresh_postgres_schema_is_unchanged(pg_url: str) -> None:
    store = await PostgresStore.open(pg_url, clock=ManualClock(), pool_size=2)
    await store.close()
    assert await pg_schema(pg_url) == GOLDEN["postgres"]


@pytest.mark.parametrize("version", [1, 3])
async def test_an_older_postgres_database_migrates_to_the_same_schema(pg_url: str, version: int) -> None:
    """A database an older server left at version 1 or 3, holding a task, is migrated and keeps it."""
    import asyncpg

    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(postgres_sql.VERSION_TABLE)
        for script in schema.migrations(Dialect.POSTGRES)[:version]:
            await conn.execute(script)
        await conn.execute(postgres_sql.WRITE_VERSION, version)
        await conn.execute(
            "INSERT INTO tasks (history_id, account_fp, token, kind, model, submit_id, status, created_at, "
            "updated_at) VALUES ('h-old', 'fp', 'tok', 'video', 'jimeng-video-3.0', 's1', 20, 1.0, 1.0)"
        )
    finally:
        await conn.close()
    store = await PostgresStore.open(pg_url, clock=ManualClock(), pool_size=2)
    try:
        record = await store.get("h-old")
        assert record is not None and (record.kind, record.status) == (TaskKind.VIDEO, TaskStatus.PROCESSING)
    finally:
        await store.close()
    assert await pg_schema(pg_url) == GOLDEN["postgres"]


@pytest.mark.parametrize("version", [1, 4, 5])
async def test_an_older_sqlite_file_migrates_to_the_same_schema(tmp_path: Path, version: int) -> None:
    """A file an older server left at `user_version` 1, 4 or 5 (its scripts as they ran then), holding a task
    and an idempotency key, opens: it is migrated to the current schema and keeps its rows."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for script in schema.migrations(Dialect.SQLITE)[:version]:
        conn.executescript(script)
    conn.execute(
        "INSERT INTO tasks (history_id, account_fp, token, kind, model, submit_id, status, created_at, updated_at) "
        "VALUES ('h-old', 'fp', 'tok', 'image', 'jimeng-4.0', 's1', 20, 1.0, 1.0)"
    )
    conn.execute(
        "INSERT INTO idempotency_keys (account_fp, key, request_hash, status, body, created_at, expires_at) "
        "VALUES ('fp', 'k1', 'hash', 200, X'7B7D', 1.0, 1e12)"
    )
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()

    store = await SqliteStore.open(path, clock=ManualClock())
    try:
        record = await store.get("h-old")
        assert record is not None
        assert (record.status, record.kind, record.model, record.parent_history_id) == (
            TaskStatus.PROCESSING,
            TaskKind.IMAGE,
            "jimeng-4.0",
            None,
        )
        claim = await store.claim_idempotency_key("fp", "k1", "hash")
        assert (claim.status, claim.body) == (200, b"{}")
    finally:
        await store.close()
    assert sqlite_schema(path) == GOLDEN["sqlite"]


_OLD_EVENT = (
    "INSERT INTO webhook_events (event_id, seq, history_id, account_fp, type, body, callback_url, state, "
    "next_attempt_at, created_at, updated_at) VALUES ('msg_old', 1, 'h-old', 'fp', 'task.succeeded', "
    "'{\"data\":{}}', 'https://hooks.example/cb', 'pending', 1.0, 1.0, 1.0)"
)
_OLD_TASK = (
    "INSERT INTO tasks (history_id, account_fp, token, kind, model, submit_id, status, created_at, updated_at, "
    "finished_at) VALUES ('h-old', 'fp', NULL, 'image', 'jimeng-4.0', 's1', 10, 1.0, 1.0, 1.0)"
)


async def _old_event_is_delivered(store: SqliteStore | PostgresStore) -> None:
    """The pending event an older server wrote (no links expiry stored) is claimed with its body unchanged
    and its expiry unknown (None: the sender reads the body), and its delivery is recorded."""
    (event,) = await store.claim_due_events(now=2.0, limit=10, lease_until=60.0)
    assert (event.event_id, event.body, event.links_expire_at) == ("msg_old", '{"data":{}}', None)
    await store.record_attempts([AttemptResult(Attempt("msg_old", 1, 2.0, 200, None, 5, None), EventState.DELIVERED)])
    assert [(e.state, e.attempts) for e in await store.events_of("h-old")] == [(EventState.DELIVERED, 1)]


async def test_events_of_the_sqlite_schema_before_links_expiry_stay_deliverable(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    before = schema.migrations(Dialect.SQLITE)[:-1]
    for script in before:
        conn.executescript(script)
    conn.execute(_OLD_TASK)
    conn.execute(_OLD_EVENT)
    conn.execute(f"PRAGMA user_version = {len(before)}")
    conn.commit()
    conn.close()
    store = await SqliteStore.open(path, clock=ManualClock())
    try:
        await _old_event_is_delivered(store)
    finally:
        await store.close()
    assert sqlite_schema(path) == GOLDEN["sqlite"]


async def test_events_of_the_postgres_schema_before_links_expiry_stay_deliverable(pg_url: str) -> None:
    import asyncpg

    before = schema.migrations(Dialect.POSTGRES)[:-1]
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(postgres_sql.VERSION_TABLE)
        for script in before:
            await conn.execute(script)
        await conn.execute(postgres_sql.WRITE_VERSION, len(before))
        await conn.execute(_OLD_TASK)
        await conn.execute(_OLD_EVENT.replace("event_id, seq,", "event_id,").replace("'msg_old', 1,", "'msg_old',"))
    finally:
        await conn.close()
    store = await PostgresStore.open(pg_url, clock=ManualClock(), pool_size=2)
    try:
        await _old_event_is_delivered(store)
    finally:
        await store.close()
    assert await pg_schema(pg_url) == GOLDEN["postgres"]


async def _record() -> None:
    """Write GOLDEN from fresh stores of both backends (after a deliberate schema change)."""
    import tempfile

    import asyncpg
    from store_backends import local_server

    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteStore.open(Path(tmp) / "fresh.db", clock=ManualClock())
        await store.close()
        out["sqlite"] = sqlite_schema(Path(tmp) / "fresh.db")
    with local_server() as server:
        admin = await asyncpg.connect(server.url("postgres"))
        await admin.execute("CREATE DATABASE fresh")
        await admin.close()
        pg = await PostgresStore.open(server.url("fresh"), clock=ManualClock(), pool_size=2)
        await pg.close()
        out["postgres"] = await pg_schema(server.url("fresh"))
    target = Path(__file__).parents[1] / "fixtures" / "store" / "schema.json"
    target.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":  # PYTHONPATH=.:tests/helpers python tests/store/test_store_schema.py: re-record the fixture
    import asyncio

    asyncio.run(_record())
