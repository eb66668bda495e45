"""Trips to the SQLite connection's thread: a transaction of writes is ONE trip, a read-then-write settle two, a
claim with the next due time one, the settler's batch two.

Every statement sent to aiosqlite's thread costs a queue put, a thread switch and a wake-up of the event loop
(more than most statements cost in SQLite). `SqliteDb` holds a transaction's BEGIN and its `executemany`
writes until the next statement that answers, or the commit, and sends them together. These tests count the
trips of the store's write connection and check that what was written (or, when a held statement fails, rolled
back) is what a reader sees."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from record_support import DONE, event, make_record
from support import CN_TOKEN, bearer

from jimeng_server.api.appkeys import STORE
from jimeng_server.clock import ManualClock
from jimeng_server.services.result_links import ResultLinks
from jimeng_server.services.settlement import TaskSettler
from jimeng_server.store.outbox import Attempt, AttemptResult, EventState
from jimeng_server.store.sqlite import SqliteStore
from jimeng_server.tasks.claims import ClaimState
from jimeng_server.tasks.cost import CostSource, TaskCost
from jimeng_server.tasks.records import Finish, Outcome, Reason, TaskKind, TaskStatus
from jimeng_server.upstream.history import parse_record
from jimeng_server.upstream.links import ResultRef

HOOK = "https://example.com/hook"


class Trips:
    """Counts what the store's write connection (and with `readers`, its read connections) sends to its thread."""

    def __init__(self, store: SqliteStore, monkeypatch: pytest.MonkeyPatch, *, readers: bool = False) -> None:
        self.count = 0
        for conn in [store._conn, *(store._readers if readers else [])]:
            self._count(conn, monkeypatch)

    def _count(self, conn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        original = conn._execute

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


async def test_a_claim_and_the_next_due_time_are_one_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock(1000.0)
    store = await SqliteStore.open(tmp_path / "tasks.db", clock=clock)
    try:
        for hid in ("h1", "h2", "h3"):
            await store.insert(make_record(hid, callback_url=HOOK))
        await store.settle([Finish(hid, DONE, event(hid)) for hid in ("h1", "h2")])  # due at 1000
        await clock.advance(30)
        await store.settle([Finish("h3", DONE, event("h3"))])  # due at 1030
        trips = Trips(store, monkeypatch, readers=True)
        claimed, next_due = await store.claim_and_next_due(now=1000.0, limit=10, lease_until=1060.0)
        assert trips.take() == 1
        assert ([e.event_id for e in claimed], next_due) == (["msg_h1", "msg_h2"], 1030.0)
        assert await store.claim_and_next_due(now=1000.0, limit=10, lease_until=1060.0) == ([], 1030.0)
        assert await store.claim_and_next_due(now=1030.0, limit=0, lease_until=1090.0) == ([], None)
        assert trips.take() == 2
        assert rows(store, "SELECT history_id, state FROM webhook_events ORDER BY seq") == [
            ("h1", "delivering"),
            ("h2", "delivering"),
            ("h3", "pending"),
        ]
    finally:
        await store.close()


def done(history_id: str, n: int) -> Outcome:
    """A done image task of one result, re-signed from `tos-cn-i-x/<n>`."""
    item = {"image": {"large_images": [{"image_uri": f"tos-cn-i-x/{n}", "image_url": f"https://cdn.example/{n}"}]}}
    record = parse_record({"status": 50, "item_list": [item]})
    return Outcome(history_id, TaskKind.IMAGE, TaskStatus.DONE, Reason.DONE, record)


async def test_a_settlers_batch_is_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of finished tasks costs the settler the settle transaction alone (two trips): it reads the events'
    source tasks and stored costs with the open tasks, and stores what the results are re-signed from."""
    clock = ManualClock(1000.0)
    store = await SqliteStore.open(tmp_path / "tasks.db", clock=clock)
    try:
        for hid in ("h1", "h2", "h3"):
            await store.insert(make_record(hid, callback_url=HOOK))
        await store.record_cost("h2", TaskCost(4, CostSource.ESTIMATED))
        settler = TaskSettler(store, clock)
        settler.result_refs = ResultLinks.refs_of
        trips = Trips(store, monkeypatch, readers=True)
        await settler.settle([done(hid, n) for n, hid in enumerate(("h1", "h2", "h3"))])
        assert trips.take() == 2
        events = [e for hid in ("h1", "h2", "h3") for e in await store.events_of(hid)]
        costs = [json.loads(e.body)["data"].get("cost") for e in events]
        assert costs == [None, {"credits": 4, "source": "estimated"}, None]
        assert await store.result_refs_of(["h1", "h2", "h3"]) == {
            hid: (ResultRef("image", f"tos-cn-i-x/{n}"),) for n, hid in enumerate(("h1", "h2", "h3"))
        }
    finally:
        await store.close()
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
