"""Tests of the durable task store: schema and file mode (SQLite), migrations (both), and the task life cycle,
atomic finish and idempotency keys on BOTH backends (`store` is parametrized: SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from record_support import ACCOUNT, DONE, OTHER, TOKEN, event, make_record
from store_backends import execute_sql, open_store

from jimeng_server import jsonfast
from jimeng_server.clock import ManualClock
from jimeng_server.store import sqlite as store_module
from jimeng_server.store.base import SchemaVersionError, Store, TaskOwnershipError
from jimeng_server.store.pool import AccountHealth, DuplicateError, NewAccount, NewKey
from jimeng_server.store.sqlite import MIGRATIONS, SqliteStore
from jimeng_server.tasks.claims import ClaimState, IdempotencyClaim
from jimeng_server.tasks.cost import CostSource, TaskCost
from jimeng_server.tasks.records import (
    Finish,
    NewEvent,
    Progress,
    Settled,
    Settlement,
    TaskKind,
    TaskRecord,
    TaskStatus,
)


async def finish_done(store: Store, history_id: str = "h1") -> TaskRecord | None:
    """Settle one task as done; the stored record if it was settled now, else None."""
    settled = await store.settle([Finish(history_id, DONE, event(history_id))])
    return await store.get(history_id) if settled else None


def inspect(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read the file through a separate plain sqlite3 connection (what another process would see)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def file_mode(path: Path) -> int | None:
    """Permission bits of `path`, or None if it does not exist."""
    return stat.S_IMODE(path.stat().st_mode) if path.exists() else None


def make_world_readable_file(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.touch(mode=0o644)
    path.chmod(0o644)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "nested" / "tasks.sqlite3"


@pytest.fixture
async def sqlite_store(db_path: Path, clock: ManualClock) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(db_path, clock=clock)
    yield s
    await s.close()


# ---------------------------------------------------------------------- schema and file (SQLite)


async def test_schema_created_with_user_version_and_wal(sqlite_store: SqliteStore, db_path: Path) -> None:
    store = sqlite_store
    assert db_path.parent.is_dir()
    assert inspect(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert inspect(db_path, "PRAGMA journal_mode") == [("wal",)]
    tables = {row[0] for row in inspect(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"tasks", "idempotency_keys"} <= tables
    indexes = {row[0] for row in inspect(db_path, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"tasks_status", "tasks_finished_at", "tasks_account_fp"} <= indexes
    assert store.schema_version == len(MIGRATIONS)


@pytest.mark.parametrize(("mode", "pragma"), [("normal", 1), ("full", 2)])
async def test_commits_are_synced_per_the_synchronous_setting(
    db_path: Path, clock: ManualClock, mode: str, pragma: int
) -> None:
    store = await SqliteStore.open(db_path, clock=clock, synchronous=mode)
    async with store, store._tx() as db:  # the connection every commit goes through
        rows = await db.fetch("PRAGMA synchronous")
    assert rows[0][0] == pragma


@pytest.mark.parametrize("readers", [1, 2])
async def test_reads_do_not_wait_behind_a_write_in_flight(db_path: Path, clock: ManualClock, readers: int) -> None:
    async with await SqliteStore.open(db_path, clock=clock, read_connections=readers, busy_timeout=60) as store:
        await store.insert(make_record("h1"))
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds SQLite's write lock ...
        write = asyncio.ensure_future(store.insert(make_record("h2")))  # ... so this write waits (busy) meanwhile
        try:
            got = await asyncio.wait_for(store.get_many(["h1", "h2"]), timeout=10)
            assert list(got) == ["h1"]  # the last committed state
            assert not write.done()
        finally:
            other.execute("ROLLBACK")
            other.close()
        await write
        assert set(await store.get_many(["h1", "h2"])) == {"h1", "h2"}


async def test_file_mode_is_0600(sqlite_store: SqliteStore, db_path: Path) -> None:
    store = sqlite_store
    await store.insert(make_record())
    assert file_mode(db_path) == 0o600
    # The store is open in WAL mode, so both companions exist now.
    assert file_mode(db_path.with_name(db_path.name + "-wal")) == 0o600
    assert file_mode(db_path.with_name(db_path.name + "-shm")) == 0o600


async def test_existing_world_readable_file_is_tightened(db_path: Path, clock: ManualClock) -> None:
    make_world_readable_file(db_path)
    async with await SqliteStore.open(db_path, clock=clock):
        pass
    assert file_mode(db_path) == 0o600


async def test_reopen_keeps_data_and_does_not_rerun_migrations(
    db_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[int] = []

    async def migration_2(conn: aiosqlite.Connection) -> None:
        runs.append(1)
        await conn.execute("CREATE TABLE outbox_probe (id INTEGER PRIMARY KEY)")

    monkeypatch.setattr(store_module, "MIGRATIONS", [*MIGRATIONS, migration_2])
    async with await SqliteStore.open(db_path, clock=clock) as first:
        await first.insert(make_record())
    async with await SqliteStore.open(db_path, clock=clock) as second:
        assert await second.get("h1") == make_record()
    assert runs == [1]
    assert inspect(db_path, "PRAGMA user_version") == [(len(MIGRATIONS) + 1,)]


async def test_migration_3_turns_old_failures_into_errors(
    db_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database written before migration 3 (fail_reason text) opens with each failed task's `error`."""
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS[:2])
    async with await SqliteStore.open(db_path, clock=clock):
        pass
    conn = sqlite3.connect(db_path)
    columns = "history_id, account_fp, kind, model, submit_id, status, fail_code, fail_reason, created_at, updated_at"
    conn.execute(
        f"INSERT INTO tasks ({columns}) VALUES ('old', 'fp', 'image', 'm', 's', 30, '2038', 'fail_code 2038', 1, 1)"
    )
    conn.execute(f"INSERT INTO tasks ({columns}) VALUES ('done', 'fp', 'image', 'm', 's2', 10, '', NULL, 1, 1)")
    conn.commit()
    conn.close()
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS)
    async with await SqliteStore.open(db_path, clock=clock) as store:
        old, done = await store.get("old"), await store.get("done")
    assert old is not None and old.error is not None and old.error["code"] == "CONTENT_REJECTED"
    assert "2038" in old.error["message"]
    assert done is not None and done.error is None
    assert "fail_reason" not in {row[1] for row in inspect(db_path, "PRAGMA table_info(tasks)")}


async def test_failed_migration_leaves_previous_version(
    db_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await SqliteStore.open(db_path, clock=clock):
        pass
    monkeypatch.setattr(store_module, "MIGRATIONS", [*MIGRATIONS, "CREATE TABLE half (x); CREATE TABLE broken (;"])
    with pytest.raises(sqlite3.OperationalError):
        await SqliteStore.open(db_path, clock=clock)
    assert inspect(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert inspect(db_path, "SELECT name FROM sqlite_master WHERE name = 'half'") == []


async def test_newer_schema_is_refused(db_path: Path, clock: ManualClock) -> None:
    async with await SqliteStore.open(db_path, clock=clock):
        pass
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError):
        await SqliteStore.open(db_path, clock=clock)


def test_split_sql_respects_strings_and_comments() -> None:
    script = "-- a comment; with a semicolon\nCREATE TABLE t (x TEXT DEFAULT 'a;b');\n\nINSERT INTO t VALUES ('c;d');\n"
    assert store_module._split_sql(script) == [
        "-- a comment; with a semicolon\nCREATE TABLE t (x TEXT DEFAULT 'a;b');",
        "INSERT INTO t VALUES ('c;d');",
    ]


# ---------------------------------------------------------------------- tasks


async def test_insert_get_and_get_many(store: Store) -> None:
    first = make_record("h1", raw_data={"a": [1, 2]}, callback_url="https://hook.example/x", input_images=2)
    second = make_record("h2", kind=TaskKind.VIDEO, model="jimeng-video-3.0")
    await store.insert(first)
    await store.insert(second)
    assert await store.get("h1") == first
    assert await store.get("missing") is None
    assert await store.get_many(["h2", "h1", "missing"]) == {"h1": first, "h2": second}
    assert await store.get_many([]) == {}


async def test_record_repr_hides_token() -> None:
    assert TOKEN not in repr(make_record())


async def test_insert_same_account_refreshes_submission_fields_only(store: Store, clock: ManualClock) -> None:
    await store.insert(make_record())
    await store.update_progress([Progress("h1", 42, 0, {"status": 42})])
    await clock.advance(5)
    await store.insert(make_record(token=None, model="jimeng-4.1", callback_url="https://hook.example/y"))
    got = await store.get("h1")
    assert got is not None
    assert got.token == TOKEN  # a None token keeps the stored one
    assert got.model == "jimeng-4.1"
    assert got.callback_url == "https://hook.example/y"
    assert got.upstream_status == 42  # progress untouched
    assert got.raw_data == {"status": 42}
    assert got.updated_at == clock.time()


async def test_insert_does_not_reopen_a_final_task(store: Store) -> None:
    await store.insert(make_record())
    finished = await finish_done(store)
    await store.insert(make_record(model="other"))
    assert await store.get("h1") == finished


async def test_insert_for_another_account_is_refused(store: Store) -> None:
    await store.insert(make_record())
    with pytest.raises(TaskOwnershipError, match="h1") as excinfo:
        await store.insert(make_record(account_fp=OTHER, token="other-token"))
    assert "other-token" not in str(excinfo.value)
    got = await store.get("h1")
    assert got is not None and got.account_fp == ACCOUNT and got.token == TOKEN


async def test_unfinished_lists_only_processing_tasks(store: Store) -> None:
    for i, hid in enumerate(["a", "b", "c"]):
        await store.insert(make_record(hid, created_at=1000.0 + i))
    await finish_done(store, "b")
    unfinished = await store.unfinished()
    assert [r.history_id for r in unfinished] == ["a", "c"]
    assert all(r.token == TOKEN for r in unfinished)


async def test_update_progress(store: Store, clock: ManualClock) -> None:
    await store.insert(make_record())
    await clock.advance(3)
    await store.update_progress([Progress("h1", 45, 1, {"status": 45})])
    got = await store.get("h1")
    assert got is not None
    assert (got.upstream_status, got.item_count, got.raw_data) == (45, 1, {"status": 45})
    assert got.status is TaskStatus.PROCESSING
    assert got.updated_at == clock.time()
    await store.update_progress([Progress("missing", 45, 1, None)])  # no-op
    await finish_done(store)
    await store.update_progress([Progress("h1", 42, 0, None)])
    after = await store.get("h1")
    assert after is not None and after.upstream_status == 50 and after.status is TaskStatus.DONE


async def test_finish_stores_outcome_and_drops_token(store: Store, clock: ManualClock) -> None:
    await store.insert(make_record())
    await clock.advance(7)
    finished = await finish_done(store)
    assert finished is not None
    assert finished == await store.get("h1")
    assert finished.final and finished.status is TaskStatus.DONE
    assert finished.token is None
    assert finished.results == ("https://example.com/1.webp", "https://example.com/2.webp")
    assert finished.raw_data == {"status": 50, "名": "值"}
    assert finished.item_count == 2 and finished.upstream_status == 50
    assert finished.finished_at == finished.updated_at == clock.time()


async def test_settle_failed_stores_the_failure(store: Store) -> None:
    await store.insert(make_record())
    failure = {"code": "CONTENT_REJECTED", "message": "blocked"}
    failed = Settlement(TaskStatus.FAILED, 30, "2038", failure, None, 0, {"status": 30})
    assert await store.settle([Finish("h1", failed, None)]) == [Settled("h1", event_written=False)]
    row = await store.get("h1")
    assert row is not None and row.status is TaskStatus.FAILED and row.fail_code == "2038"
    assert row.error == failure and row.results is None and row.token is None


async def test_settle_twice_is_a_noop(store: Store, clock: ManualClock) -> None:
    await store.insert(make_record(callback_url="https://hooks.example/cb"))
    first = await finish_done(store)
    await clock.advance(10)
    assert await finish_done(store) is None
    assert await store.get("h1") == first
    assert await finish_done(store, "missing") is None
    assert [e.event_id for e in await store.events_of("h1")] == ["msg_h1"]


async def test_settle_rejects_processing_status(store: Store) -> None:
    await store.insert(make_record())
    running = dataclasses.replace(DONE, status=TaskStatus.PROCESSING)
    with pytest.raises(ValueError, match="final"):
        await store.settle([Finish("h1", running, None)])
    row = await store.get("h1")
    assert row is not None and row.status is TaskStatus.PROCESSING


async def test_settle_many_in_one_transaction_with_their_events(store: Store) -> None:
    await store.insert(make_record("hooked", callback_url="https://hooks.example/cb"))
    await store.insert(make_record("plain"))
    settled = await store.settle([Finish("hooked", DONE, event("hooked")), Finish("plain", DONE, event("plain"))])
    assert settled == [Settled("hooked", event_written=True), Settled("plain", event_written=False)]
    assert [(e.event_id, e.history_id, e.callback_url) for e in await store.events_of("hooked")] == [
        ("msg_hooked", "hooked", "https://hooks.example/cb")
    ]
    assert await store.events_of("plain") == []


async def test_settle_is_all_or_nothing(store: Store) -> None:
    """A failing write in the batch (here: an event id used twice) rolls back every settlement of it."""
    for hid in ("a", "b"):
        await store.insert(make_record(hid, callback_url="https://hooks.example/cb"))
    same = NewEvent("msg_same", "task.succeeded", "{}")
    with pytest.raises(Exception, match=r"(?i)unique") as excinfo:
        await store.settle([Finish("a", DONE, same), Finish("b", DONE, same)])
    assert type(excinfo.value).__name__ == "UniqueViolation"  # dialect.UniqueViolation, from either driver
    assert {r.status for r in (await store.get_many(["a", "b"])).values()} == {TaskStatus.PROCESSING}
    assert await store.event_state_counts() == {}
    assert await finish_done(store, "a") is not None  # the store stays usable after the rollback


async def test_purge_finished_removes_only_old_final_rows(store: Store, clock: ManualClock) -> None:
    for hid in ("old", "recent", "running"):
        await store.insert(make_record(hid))
    await finish_done(store, "old")
    await clock.advance(3600)
    await finish_done(store, "recent")
    await clock.advance(10)
    assert await store.purge_finished(older_than=1800) == 1
    assert set(await store.get_many(["old", "recent", "running"])) == {"recent", "running"}
    assert await store.purge_finished(older_than=1800) == 0


async def test_concurrent_writers_all_land(store: Store) -> None:
    ids = [f"h{i:02d}" for i in range(50)]
    await asyncio.gather(*(store.insert(make_record(hid)) for hid in ids))
    assert len(await store.unfinished()) == 50
    results = await asyncio.gather(
        *(finish_done(store, hid) for hid in ids[:25]),
        *(store.update_progress([Progress(hid, 42, 0, None)]) for hid in ids[25:]),
        *(store.insert(make_record(f"n{i:02d}")) for i in range(25)),
    )
    assert all(r is not None for r in results[:25])
    stored = await store.get_many([*ids, *(f"n{i:02d}" for i in range(25))])
    assert len(stored) == 75
    assert sum(r.final for r in stored.values()) == 25
    assert sum(r.upstream_status == 42 for r in stored.values()) == 25


# ---------------------------------------------------------------------- idempotency keys


async def test_idempotency_states(store: Store) -> None:
    assert await store.claim_idempotency_key(ACCOUNT, "k1", "hash-a") == IdempotencyClaim(ClaimState.NEW)
    assert await store.claim_idempotency_key(ACCOUNT, "k1", "hash-a") == IdempotencyClaim(ClaimState.IN_PROGRESS)
    assert await store.claim_idempotency_key(ACCOUNT, "k1", "hash-b") == IdempotencyClaim(ClaimState.MISMATCH)
    # The scope is (account, key): another account's identical key is independent.
    assert await store.claim_idempotency_key(OTHER, "k1", "hash-b") == IdempotencyClaim(ClaimState.NEW)

    await store.complete_idempotency_key(ACCOUNT, "k1", status=200, body=b'{"history_id":"h1"}')
    assert await store.claim_idempotency_key(ACCOUNT, "k1", "hash-a") == IdempotencyClaim(
        ClaimState.REPLAY, status=200, body=b'{"history_id":"h1"}'
    )
    assert await store.claim_idempotency_key(ACCOUNT, "k1", "hash-b") == IdempotencyClaim(ClaimState.MISMATCH)


async def test_idempotency_expiry_after_ttl(store: Store, clock: ManualClock) -> None:
    assert (await store.claim_idempotency_key(ACCOUNT, "k", "hash-a", ttl=60)).state is ClaimState.NEW
    await store.complete_idempotency_key(ACCOUNT, "k", status=200, body=b"{}")
    await clock.advance(59)
    assert (await store.claim_idempotency_key(ACCOUNT, "k", "hash-a", ttl=60)).state is ClaimState.REPLAY
    await clock.advance(1)
    assert (await store.claim_idempotency_key(ACCOUNT, "k", "hash-b", ttl=60)).state is ClaimState.NEW
    assert (await store.claim_idempotency_key(ACCOUNT, "k", "hash-b", ttl=60)).state is ClaimState.IN_PROGRESS


async def test_idempotency_abandon(store: Store) -> None:
    assert (await store.claim_idempotency_key(ACCOUNT, "k", "hash-a")).state is ClaimState.NEW
    await store.release_idempotency_key(ACCOUNT, "k")
    assert (await store.claim_idempotency_key(ACCOUNT, "k", "hash-a")).state is ClaimState.NEW
    await store.complete_idempotency_key(ACCOUNT, "k", status=201, body=b"done")
    await store.release_idempotency_key(ACCOUNT, "k")  # a completed key is kept for replay
    replay = IdempotencyClaim(ClaimState.REPLAY, 201, b"done")
    assert await store.claim_idempotency_key(ACCOUNT, "k", "hash-a") == replay


async def test_purge_idempotency(store: Store, clock: ManualClock) -> None:
    await store.claim_idempotency_key(ACCOUNT, "short", "h", ttl=10)
    await store.claim_idempotency_key(ACCOUNT, "long", "h", ttl=100)
    assert await store.purge_idempotency_keys() == 0
    await clock.advance(10)
    assert await store.purge_idempotency_keys() == 1
    assert (await store.claim_idempotency_key(ACCOUNT, "long", "h")).state is ClaimState.IN_PROGRESS


async def test_concurrent_idem_begin_has_one_winner(store: Store) -> None:
    outcomes = await asyncio.gather(*(store.claim_idempotency_key(ACCOUNT, "race", "h") for _ in range(20)))
    assert [o.state for o in outcomes].count(ClaimState.NEW) == 1


async def test_close_is_idempotent(db_path: Path, clock: ManualClock) -> None:
    s = await SqliteStore.open(db_path, clock=clock)
    await s.close()
    await s.close()


# ---------------------------------------------------------------------- PostgreSQL: schema and replicas


async def test_postgres_schema_is_versioned_and_a_newer_one_is_refused(pg_url: str, clock: ManualClock) -> None:
    from jimeng_server.store import postgres_sql
    from jimeng_server.store.postgres import PostgresStore

    async with await PostgresStore.open(pg_url, clock=clock) as first:
        assert first.schema_version == len(postgres_sql.MIGRATIONS)
        await first.insert(make_record())
    async with await PostgresStore.open(pg_url, clock=clock) as again:  # nothing re-run, data kept
        assert await again.get("h1") == make_record()
    await execute_sql(pg_url, "UPDATE jimeng_schema SET version = $1", len(postgres_sql.MIGRATIONS) + 1)
    with pytest.raises(SchemaVersionError, match="newer"):
        await PostgresStore.open(pg_url, clock=clock)


async def test_postgres_replicas_starting_together_migrate_once(pg_url: str, clock: ManualClock) -> None:
    stores = await asyncio.gather(*(open_store(pg_url, clock) for _ in range(3)))
    try:
        await stores[0].insert(make_record())
        assert all([await s.get("h1") == make_record() for s in stores])
    finally:
        for s in stores:
            await s.close()


async def test_postgres_replicas_share_idempotency_keys_and_never_claim_one_event_twice(
    pg_url: str, clock: ManualClock
) -> None:
    """Two stores on one database act as two replicas: one NEW per key, each due event claimed by one."""
    a, b = await open_store(pg_url, clock), await open_store(pg_url, clock)
    try:
        claims = await asyncio.gather(*(s.claim_idempotency_key(ACCOUNT, "race", "h") for s in (a, b) * 10))
        assert [c.state for c in claims].count(ClaimState.NEW) == 1
        await a.complete_idempotency_key(ACCOUNT, "race", status=200, body=b"first")
        assert await b.claim_idempotency_key(ACCOUNT, "race", "h") == IdempotencyClaim(ClaimState.REPLAY, 200, b"first")

        ids = [f"h{i:02d}" for i in range(40)]
        for hid in ids:
            await a.insert(make_record(hid, callback_url="https://hooks.example/cb"))
        await a.settle([Finish(hid, DONE, event(hid)) for hid in ids])
        now = clock.time()
        batches = await asyncio.gather(
            *(s.claim_due_events(now=now, limit=7, lease_until=now + 60) for s in (a, b, a, b, a, b, a, b))
        )
        claimed = [e.history_id for batch in batches for e in batch]
        assert sorted(claimed) == ids  # every event once, none twice
    finally:
        await a.close()
        await b.close()


# ---------------------------------------------------------------------- account pool and API keys


def new_account(name: str, fingerprint: str) -> NewAccount:
    return NewAccount(name, "cn", fingerprint, "sess0***", b"sealed-blob", True, False, "a note")


async def test_pool_accounts_and_keys(store: Store, clock: ManualClock) -> None:
    first = await store.add_account(new_account("a", "fp-a"), now=clock.time())
    assert (first.name, first.secret, first.sealed, first.enabled, first.created_at) == (
        "a",
        b"sealed-blob",
        True,
        True,
        clock.time(),
    )
    with pytest.raises(DuplicateError, match="name"):
        await store.add_account(new_account("a", "fp-other"), now=clock.time())
    with pytest.raises(DuplicateError, match="session"):
        await store.add_account(new_account("b", "fp-a"), now=clock.time())
    second = await store.add_account(new_account("b", "fp-b"), now=clock.time())
    assert [a.name for a in await store.accounts()] == ["a", "b"]
    assert await store.account_by_name("b") == second and await store.account_by_id(999) is None

    await store.record_account_health(first.id, AccountHealth("E", "refused", 50.0, checked=True, credits=7), now=5.0)
    row = await store.account_by_id(first.id)
    assert row is not None and (row.last_error_code, row.cooldown_until, row.last_check_at) == ("E", 50.0, 5.0)
    assert (row.credits, row.credits_at) == (7, 5.0)
    assert await store.set_account_enabled(first.id, True)
    row = await store.account_by_id(first.id)
    assert row is not None and row.cooldown_until is None  # enabling ends the cool-down
    updated = await store.update_account_secret(first.id, b"new-jar", False)
    assert updated is not None and (updated.secret, updated.sealed) == (b"new-jar", False)
    assert await store.delete_account(second.id) and not await store.delete_account(second.id)

    key_id = await store.add_key(NewKey("k", "d" * 64, "jk_abc", (first.id,), 60, 5), now=1.0)
    with pytest.raises(DuplicateError):
        await store.add_key(NewKey("k", "e" * 64, "jk_x", None, 1, 1), now=1.0)
    await store.record_key_use(key_id, credits_spent=4, now=2.0)
    assert await store.revoke_key(key_id, now=3.0)
    key = await store.key_by_hash("d" * 64)
    assert key is not None and (key.accounts, key.submits, key.credits_spent, key.revoked_at) == (
        (first.id,),
        1,
        4,
        3.0,
    )
    assert [k.id for k in await store.keys()] == [key_id]

    await store.insert(make_record("paid", account_fp="key:1", token=None, account_id=first.id, created_at=100.0))
    await store.insert(make_record("own", created_at=101.0, callback_url="https://hooks.example/cb"))
    await finish_done(store, "own")
    assert await store.pool_tasks_in_flight(image_since=50.0, video_since=50.0) == [(first.id, "key:1", 1)]
    assert await store.pool_tasks_in_flight(image_since=100.0, video_since=50.0) == []
    recent = [(r.history_id, r.account_id, state) for r, state in await store.recent(10)]
    assert recent == [("own", None, "pending"), ("paid", first.id, None)]


async def test_claimed_events_go_back_each_due_at_its_own_time(store: Store, clock: ManualClock) -> None:
    """`unclaim_events_due`: the sender's host gate returns several claimed events at once, each due when its
    receiver should have room; no attempt is counted and each is claimed again from its time on."""
    for hid in ("h1", "h2", "h3"):
        await store.insert(make_record(hid, callback_url="https://example.com/hook"))
        await finish_done(store, hid)
    t = clock.time()
    claimed = await store.claim_due_events(now=t, limit=10, lease_until=t + 60)
    assert [e.history_id for e in claimed] == ["h1", "h2", "h3"]
    ids = {e.history_id: e.event_id for e in claimed}
    await store.unclaim_events_due({ids["h2"]: t + 2, ids["h3"]: t + 5})
    assert await store.claim_due_events(now=t + 1, limit=10, lease_until=t + 60) == []  # h1 is still claimed
    assert await store.next_event_due(now=t + 1) == t + 2
    again = await store.claim_due_events(now=t + 2, limit=10, lease_until=t + 60)
    assert [(e.history_id, e.attempts) for e in again] == [("h2", 0)]
    assert [e.history_id for e in await store.claim_due_events(now=t + 5, limit=10, lease_until=t + 60)] == ["h3"]
    await store.unclaim_events_due({})


@pytest.mark.parametrize("codec", ["c-codec", "fallback"])
async def test_a_settled_record_reads_back_exact(store: Store, codec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a settle stores of the upstream's record is what a query reads back (stored by `dump_json`, read by
    `record_from_row`, both jsonfast): integers beyond 64 bits and non-ASCII text unchanged, on both backends,
    with msgspec and with the standard library's fallback."""
    if codec == "fallback":
        monkeypatch.setattr(jsonfast, "_decode", None)
        monkeypatch.setattr(jsonfast, "_encode", None)
    elif not jsonfast.FAST:
        pytest.skip("msgspec is not installed")
    big = 2**64 + 12345
    record = jsonfast.loads(b'{"status":50,"item_id":%d,"neg":%d,"u":"\\u0026\\u5373\\ud83d\\ude00"}' % (big, -big))
    await store.insert(make_record("7001"))
    await store.settle([Finish("7001", dataclasses.replace(DONE, raw_data=record), None)])
    got = await store.get("7001")
    assert got is not None and got.raw_data == {"status": 50, "item_id": big, "neg": -big, "u": "&即😀"}
    assert type(got.raw_data["item_id"]) is int


async def test_an_event_keeps_its_links_expiry_through_claim_and_delivery(store: Store, clock: ManualClock) -> None:
    """The settler's event carries when its links expire (the earliest `x-expires` of its results; infinities
    for "never" and "the body cannot tell"); the store gives it back as written on every read of the event."""
    hook = "https://hooks.example/cb"
    written = {
        "img": NewEvent("msg_img", "task.succeeded", "{}", 1_767_225_600.0),
        "never": NewEvent("msg_never", "task.succeeded", "{}", float("inf")),
        "video": NewEvent("msg_video", "task.succeeded", "{}", float("-inf")),
        "old": NewEvent("msg_old", "task.succeeded", "{}"),  # not known: None
    }
    for hid in written:
        await store.insert(make_record(hid, callback_url=hook))
    await store.settle([Finish(hid, DONE, e) for hid, e in written.items()])
    for hid, e in written.items():
        assert [x.links_expire_at for x in await store.events_of(hid)] == [e.links_expire_at]
    claimed = await store.claim_due_events(now=clock.time(), limit=10, lease_until=clock.time() + 60)
    assert {e.event_id: e.links_expire_at for e in claimed} == {e.event_id: e.links_expire_at for e in written.values()}


async def test_a_claim_answers_when_the_next_event_is_due(store: Store, clock: ManualClock) -> None:
    """`claim_and_next_due`: the claim, and the earliest later due time read after it (what a sender waits for)."""
    for hid in ("h1", "h2", "h3"):
        await store.insert(make_record(hid, callback_url="https://example.com/hook"))
        await finish_done(store, hid)
    t = clock.time()
    claimed, next_due = await store.claim_and_next_due(now=t, limit=1, lease_until=t + 60)
    assert ([e.history_id for e in claimed], next_due) == (["h1"], None)  # h2 and h3 are due now, not later
    await store.unclaim_events_due({claimed[0].event_id: t + 7})
    claimed, next_due = await store.claim_and_next_due(now=t, limit=5, lease_until=t + 60, exclude=["msg_h3"])
    assert ([e.history_id for e in claimed], next_due) == (["h2"], t + 7)
    assert await store.claim_and_next_due(now=t + 7, limit=0, lease_until=t + 60) == ([], None)
    claimed, next_due = await store.claim_and_next_due(now=t + 7, limit=5, lease_until=t + 60)
    assert ([e.history_id for e in claimed], next_due) == (["h3", "h1"], None)  # oldest due first


async def test_a_settle_makes_events_from_the_source_task_and_cost_it_reads(store: Store) -> None:
    """A finish may carry a `MakeEvent` instead of an event: the settle's transaction calls it with the task's
    source task (a post-edit's) and stored cost as it reads them, for each task it settles with a callback URL."""
    hook = "https://hooks.example/cb"
    await store.insert(make_record("src", callback_url=hook))
    await store.insert(make_record("edit", parent_history_id="src", callback_url=hook))
    await store.insert(make_record("paid", callback_url=hook))
    await store.insert(make_record("plain"))  # no callback URL: no event made
    await store.record_cost("paid", TaskCost(12, CostSource.MEASURED))
    await store.record_cost("edit", TaskCost(3, CostSource.ESTIMATED))
    asked: dict[str, tuple[str | None, TaskCost | None]] = {}

    def maker(hid: str) -> Any:
        def make(source: str | None, cost: TaskCost | None) -> NewEvent:
            asked[hid] = (source, cost)
            return NewEvent(f"msg_{hid}", "task.succeeded", f'{{"source":"{source}"}}')

        return make

    ids = ["src", "edit", "paid", "plain", "unknown"]
    settled = await store.settle([Finish(hid, DONE, maker(hid)) for hid in ids])
    assert [(s.history_id, s.event_written) for s in settled] == [
        ("src", True),
        ("edit", True),
        ("paid", True),
        ("plain", False),
    ]
    assert asked == {
        "src": (None, None),
        "edit": ("src", TaskCost(3, CostSource.ESTIMATED)),
        "paid": (None, TaskCost(12, CostSource.MEASURED)),
    }
    assert [e.body for e in await store.events_of("edit")] == ['{"source":"src"}']
    assert await store.settle([Finish("paid", DONE, maker("again"))]) == []  # final already: nothing made
    assert "again" not in asked
