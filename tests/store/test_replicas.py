"""Replicas on one PostgreSQL store: watch leases (fair share, hand-over, take-over after expiry), and two
server apps on one database where only the lease holder polls a task and the other answers from what the
holder settled (LISTEN/NOTIFY)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, bearer, json_of, run_tick, until
from webhook_support import Receiver

from jimeng_server.api.appkeys import CLOCK, INTAKE, STORE, WATCHER, WEBHOOKS
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config
from jimeng_server.services.replicas import Replicas
from jimeng_server.simulator import Simulator
from jimeng_server.store.base import WATCH_SHARDS, ReplicaStore, shard_of
from jimeng_server.store.postgres import PostgresStore
from jimeng_server.tasks.answer import outcome_of_row, settlement_of
from jimeng_server.tasks.records import Outcome, Reason, TaskKind, TaskRecord, TaskStatus
from jimeng_server.upstream.history import parse_record
from jimeng_server.upstream.tokens import parse_token

LEASE = 30.0
ALL = frozenset(range(WATCH_SHARDS))


@pytest.fixture
async def two_stores(pg_url: str, clock: ManualClock) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    a = await PostgresStore.open(pg_url, clock=clock, pool_size=2)
    b = await PostgresStore.open(pg_url, clock=clock, pool_size=2)
    yield a, b
    await a.close()
    await b.close()


async def renew(store: ReplicaStore, owner: str, clock: ManualClock) -> frozenset[int]:
    return await store.renew_watch_leases(owner, now=clock.time(), lease_seconds=LEASE)


async def test_leases_are_shared_fairly_handed_over_and_taken_over_after_expiry(
    two_stores: tuple[PostgresStore, PostgresStore], clock: ManualClock
) -> None:
    a, b = two_stores
    assert await renew(a, "A", clock) == ALL  # alone: every shard
    assert await renew(b, "B", clock) == frozenset()  # all held and unexpired
    kept = await renew(a, "A", clock)  # two live replicas: A keeps half and gives the rest up...
    assert len(kept) == WATCH_SHARDS // 2
    assert await renew(b, "B", clock) == frozenset()  # ...which nobody may take before A's lease would end
    for _ in range(2):
        await clock.advance(LEASE / 3)
        assert await renew(a, "A", clock) == kept
        assert await renew(b, "B", clock) == frozenset()
    await clock.advance(LEASE / 3)
    assert await renew(a, "A", clock) == kept  # A's last renewal
    taken = await renew(b, "B", clock)
    assert taken == ALL - kept  # disjoint, together every shard

    # A dies: B, renewing every third of a lease, gets A's shards one lease time after A's last renewal.
    for _ in range(2):
        await clock.advance(LEASE / 3)
        assert await renew(b, "B", clock) == taken
    await clock.advance(LEASE / 3)
    assert await renew(b, "B", clock) == ALL


async def test_a_clean_stop_hands_every_lease_over_at_once(
    two_stores: tuple[PostgresStore, PostgresStore], clock: ManualClock
) -> None:
    a, b = two_stores
    assert await renew(a, "A", clock) == ALL
    await a.release_watch_leases("A")
    assert await renew(b, "B", clock) == ALL


ReplicaFactory = Callable[[TestClient[Any, Any], str], Replicas]


@pytest.fixture
async def replica_apps(
    make_client: Callable[..., Any], config: Config, pg_url: str
) -> AsyncIterator[tuple[TestClient[Any, Any], Replicas, TestClient[Any, Any], Replicas]]:
    """Two apps (background loops off) on one database and one simulator, each with its `Replicas`."""
    store = dataclasses.replace(config.store, url=pg_url, watch_lease_seconds=300.0)
    clients = [await make_client(store=store) for _ in range(2)]
    replicas = [
        Replicas(
            c.app[STORE],  # type: ignore[arg-type]
            c.app[STORE],
            c.app[WATCHER],
            c.app[INTAKE].resume,
            c.app[WEBHOOKS],
            c.app[CLOCK],
            lease_seconds=300.0,
            owner=name,
        )
        for c, name in zip(clients, "AB", strict=True)
    ]
    yield clients[0], replicas[0], clients[1], replicas[1]
    for r in replicas:
        await r.stop()


async def test_only_the_lease_holder_polls_and_the_other_replica_answers_from_the_store(
    replica_apps: tuple[TestClient[Any, Any], Replicas, TestClient[Any, Any], Replicas],
    clock: ManualClock,
    sim: Simulator,
    receiver: tuple[Receiver, Any],
) -> None:
    client_a, rep_a, client_b, rep_b = replica_apps
    await rep_b.start()  # B first: it holds every shard
    await rep_a.start()
    assert rep_b.shards == ALL and rep_a.shards == frozenset()
    assert rep_b.may_poll(parse_token(CN_TOKEN).fingerprint)
    assert not rep_a.may_poll(parse_token(CN_TOKEN).fingerprint)

    _, server = receiver
    body = {"prompt": "a cat", "callback_url": str(server.make_url("/hook"))}
    resp = await client_a.post("/v1/async/images/generations", json=body, headers=bearer(CN_TOKEN))
    assert resp.status == 200
    hid = (await json_of(resp))["history_id"]
    watcher_a, watcher_b = client_a.app[WATCHER], client_b.app[WATCHER]
    assert watcher_a.is_watching(hid)  # A stored and watches it, but may not poll it
    await until(lambda: watcher_b.is_watching(hid), what="B adopting the task on the NEW_TASK notice")
    assert shard_of(parse_token(CN_TOKEN).fingerprint) in rep_b.shards

    for _ in range(20):
        await clock.advance(1)
        before = len(sim.calls("/get_history_by_ids"))
        await run_tick(watcher_a, clock)
        assert len(sim.calls("/get_history_by_ids")) == before  # A never polls B's task
        await run_tick(watcher_b, clock)
        if not watcher_b.is_watching(hid):
            break
    row = await client_a.app[STORE].get(hid)
    assert row is not None and row.final  # B settled it
    await until(lambda: not watcher_a.is_watching(hid), what="the SETTLED notice ending A's watch")

    polls = len(sim.calls("/get_history_by_ids"))
    resp = await client_a.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN))
    answer = await json_of(resp)
    assert resp.status == 200 and answer["status"] == 10 and len(answer["results"]) == 4
    assert len(sim.calls("/get_history_by_ids")) == polls  # answered from the store


async def test_readyz_checks_the_shared_database(make_client: Callable[..., Any], config: Config, pg_url: str) -> None:
    client = await make_client(store=dataclasses.replace(config.store, url=pg_url))
    body = await json_of(await client.get("/readyz"))
    assert body["checks"]["store"] == "ok"
    await client.app[STORE].close()  # the database is gone for this replica
    resp = await client.get("/readyz")
    body = await json_of(resp)
    assert resp.status == 503 and body["checks"]["store"].startswith("the task store cannot be reached")


@pytest.mark.parametrize(
    ("kind", "raw", "reason", "hq"),
    [
        (
            "image",
            {"status": 50, "item_list": [{"image": {"large_images": [{"image_url": "https://c/1"}]}}]},
            "done",
            0,
        ),
        ("image", {"status": 30, "fail_code": "2038", "item_list": []}, "upstream_failed", 0),
        ("image", {"status": 50, "item_list": []}, "done", 0),  # EMPTY_RESULT
        ("image", None, "timeout", 0),
        ("image", {"status": 42, "item_list": []}, "not_found", 0),
        (
            "video",
            {"status": 10, "item_list": [{"video": {"transcoded_video": {"origin": {"video_url": "p"}}}}]},
            "done",
            1,
        ),
    ],
)
def test_a_waiter_on_another_replica_gets_the_stored_settlement(
    kind: str, raw: dict[str, Any] | None, reason: str, hq: int
) -> None:
    """`outcome_of_row` rebuilds, from a stored final task, an outcome that settles to the same answer."""
    record = parse_record(raw) if raw is not None else None
    if record is not None and hq:
        record = dataclasses.replace(record, video_urls=("https://hq/1.mp4",))
    outcome = Outcome(
        "h1", TaskKind(kind), TaskStatus.DONE if reason == "done" else TaskStatus.FAILED, Reason(reason), record
    )
    settled = settlement_of(outcome)
    row = TaskRecord(
        "h1",
        "fp",
        None,
        TaskKind(kind),
        "m",
        "s",
        settled.status,
        settled.upstream_status,
        settled.fail_code,
        settled.error,
        settled.item_count,
        settled.results,
        settled.raw_data,
        None,
        None,
        1.0,
        2.0,
        2.0,
    )
    again = settlement_of(outcome_of_row(row))
    assert (again.status, again.results, (again.error or {}).get("code")) == (
        settled.status,
        settled.results,
        (settled.error or {}).get("code"),
    )
