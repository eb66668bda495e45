"""Trips to the SQLite connection's thread: a transaction of writes is ONE trip, a read-then-write settle two.

Every statement sent to aiosqlite's thread costs a queue put, a thread switch and a wake-up of the event loop
(more than most statements cost in SQLite). `SqliteDb` holds a transaction's BEGIN and its `executemany`
writes until the next statement that answers, or the commit, and sends them together. These tests count the
trips of the store's write connection and check that what was written (or, when a held statement fails, rolled
back) is what a reader sees."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from record_support import DONE, event, make_record
from support import CN_TOKEN, bearer

from jimeng_server.api.appkeys import STORE
from jimeng_server.clock import ManualClock
from jimeng_server.store.outbox import Attempt, AttemptResult, EventState
from jimeng_server.store.sqlite import SqliteStore
from jimeng_server.tasks.claims import ClaimState
from jimeng_server.tasks.records import Finish

HOOK = "https://example.com/hook"


class Trips:
    """Counts what the store's write connection sends to its thread."""

    def __init__(self, store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
        conn = store._conn
        original = conn._execute
        self.count = 0

        async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(fn, *args, **kwargs)

        monkeypatch.setattr(conn, "_execute", counted)

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(tmp_path / "tasks.db", clock=ManualClock(1000.0))
    yield store
    await store.close()


def rows(store: SqliteStore, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(store.path) as conn:
        return conn.execute(sql).fetchall()


def attempt(event_id: str, state: EventState = EventState.DELIVERED) -> AttemptResult:
    return AttemptResult(Attempt(event_id, 1, 1000.0, 200, None, 5, None), state)


async def test_a_settle_is_two_trips_and_recording_attempts_one(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for hid in ("h1", "h2", "h3"):
        await sqlite_store.insert(make_record(hid, callback_url=HOOK))
    trips = Trips(sqlite_store, monkeypatch)
    settled = await sqlite_store.settle([Finish(hid, DONE, event(hid)) for hid in ("h1", "h2", "h3")])
    assert [s.history_id for s in settled] == ["h1", "h2", "h3"]
    assert trips.take() == 2  # BEGIN + the open tasks; the updates, the events and COMMIT
    assert rows(sqlite_store, "SELECT history_id, status FROM tasks ORDER BY history_id") == [
        ("h1", 10),
        ("h2", 10),
        ("h3", 10),
    ]

    claimed = await sqlite_store.claim_due_events(now=1000.0, limit=10, lease_until=1060.0)
    assert len(claimed) == 3
    trips.take()
    await sqlite_store.record_attempts([attempt(e.event_id) for e in claimed])
    assert trips.take() == 1  # BEGIN, both writes and COMMIT together
    assert rows(sqlite_store, "SELECT state, COUNT(*) FROM webhook_events GROUP BY state") == [("delivered", 3)]
    assert rows(sqlite_store, "SELECT COUNT(*) FROM webhook_attempts") == [(3,)]


async def test_a_held_write_that_fails_rolls_its_whole_transaction_back(sqlite_store: SqliteStore) -> None:
    await sqlite_store.insert(make_record("h1", callback_url=HOOK))
    await sqlite_store.settle([Finish("h1", DONE, event("h1"))])
    (claimed,) = await sqlite_store.claim_due_events(now=1000.0, limit=10, lease_until=1060.0)
    # The second attempt names no event: its insert breaks the foreign key when the batch runs at COMMIT.
    with pytest.raises(sqlite3.IntegrityError):
        await sqlite_store.record_attempts([attempt(claimed.event_id), attempt("msg_unknown")])
    assert rows(sqlite_store, "SELECT COUNT(*) FROM webhook_attempts") == [(0,)]
    assert rows(sqlite_store, "SELECT state FROM webhook_events") == [("delivering",)]
    # The connection is out of the failed transaction: the next one works.
    await sqlite_store.record_attempts([attempt(claimed.event_id)])
    assert rows(sqlite_store, "SELECT state FROM webhook_events") == [("delivered",)]


async def test_claiming_a_new_idempotency_key_is_one_trip_and_a_taken_one_is_decided_as_before(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = Trips(sqlite_store, monkeypatch)
    assert (await sqlite_store.claim_idempotency_key("acct", "k1", "hash-a")).state is ClaimState.NEW
    assert trips.take() == 1  # the INSERT on its own: no BEGIN/COMMIT around it
    assert (await sqlite_store.claim_idempotency_key("acct", "k1", "hash-a")).state is ClaimState.IN_PROGRESS
    assert (await sqlite_store.claim_idempotency_key("acct", "k1", "hash-b")).state is ClaimState.MISMATCH
    trips.take()
    await sqlite_store.complete_idempotency_key("acct", "k1", status=200, body=b'{"history_id":"h1"}')
    assert trips.take() == 1
    replay = await sqlite_store.claim_idempotency_key("acct", "k1", "hash-a")
    assert (replay.state, replay.status, replay.body) == (ClaimState.REPLAY, 200, b'{"history_id":"h1"}')
    assert rows(sqlite_store, "SELECT account_fp, key, request_hash, status FROM idempotency_keys") == [
        ("acct", "k1", "hash-a", 200)
    ]


async def test_an_async_submit_is_one_trip_a_keyed_one_three_and_its_replay_three(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client()
    store = client.app[STORE]
    assert isinstance(store, SqliteStore)
    trips = Trips(store, monkeypatch)

    async def submit(**headers: str) -> Any:
        body = {"prompt": "a counted cat"}
        resp = await client.post("/v1/async/images/generations", json=body, headers={**bearer(CN_TOKEN), **headers})
        assert resp.status == 200, await resp.text()
        return await resp.json()

    first = await submit()
    assert trips.take() == 1  # the task's insert
    keyed = await submit(**{"Idempotency-Key": "counted-1"})
    assert trips.take() == 3  # the key's claim, the task's insert, the key's answer
    assert await submit(**{"Idempotency-Key": "counted-1"}) == keyed  # replayed: no generate, no insert
    assert trips.take() == 3  # the claim's INSERT finds the key; the transaction reads it (BEGIN with it) and ends
    assert first["history_id"] != keyed["history_id"]
    assert rows(store, "SELECT COUNT(*) FROM tasks") == [(2,)]
