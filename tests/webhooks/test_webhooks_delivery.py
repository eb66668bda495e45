"""Webhook delivery end to end: outbox rows written by the real finish path, a real aiohttp receiver on
loopback, signatures checked with the `standardwebhooks` library, retries driven by a manual clock. Every test
runs on both store backends (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook
from store_backends import execute_sql
from webhook_support import (
    SECRET,
    Receiver,
    Reply,
    add_done_task,
    failed_outcome,
    make_task,
)

from jimeng_server.clock import ManualClock
from jimeng_server.config import WebhookConfig
from jimeng_server.net.policy import FetchPolicy
from jimeng_server.services.settlement import TaskSettler
from jimeng_server.store.base import Store
from jimeng_server.store.outbox import Attempt, EventState, OutboxEvent
from jimeng_server.tasks.answer import body_of_row
from jimeng_server.tasks.records import Finish, NewEvent, Reason, Settlement, TaskStatus
from jimeng_server.webhooks.sender import WebhookSender
from jimeng_server.webhooks.signatures import parse_secret

pytestmark = pytest.mark.wall_clock  # webhook signatures are checked against the wall clock

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
SenderFactory = Callable[..., WebhookSender]
LOCAL = FetchPolicy(allow_private_networks=True)
SCHEDULE = (0.0, 5.0, 300.0, 1800.0)


@pytest.fixture
async def make_sender(store: Store, clock: ManualClock) -> AsyncIterator[SenderFactory]:
    senders: list[WebhookSender] = []

    def factory(*, secret: str | None = SECRET, **overrides: Any) -> WebhookSender:
        config = WebhookConfig(**{"schedule": SCHEDULE, "jitter": 0.0, "timeout": 5.0, **overrides})
        sender = WebhookSender(store, config, clock, policy=LOCAL, secret=parse_secret(secret) if secret else None)
        senders.append(sender)
        return sender

    yield factory
    for sender in senders:
        await sender.stop()


async def attempts(store: Store, history_id: str) -> list[Attempt]:
    return await store.attempts_of(history_id)


async def event_of(store: Store, history_id: str) -> OutboxEvent:
    events = await store.events_of(history_id)
    assert len(events) == 1
    return events[0]


def verify(received: Any) -> Any:
    """Verify one received request as a receiver would; returns the parsed body."""
    return Webhook(SECRET).verify(received.body, received.headers)


async def test_deliveries_to_one_receiver_share_kept_alive_connections(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    sender = make_sender()
    for n in range(5):  # one after another: each send finds the connection the one before left open
        await add_done_task(store, clock, f"h{n}", str(server.make_url(f"/hook/{n}")))
        assert await sender.drain() == 1
    assert [r.path for r in rec.requests] == [f"/hook/{n}" for n in range(5)]
    assert all(verify(r)["data"]["history_id"] == f"h{n}" for n, r in enumerate(rec.requests))
    assert len(rec.peers) == 1
    for n in range(5, 17):  # at once: the kept connection and new ones side by side
        await add_done_task(store, clock, f"h{n}", str(server.make_url(f"/hook/{n}")))
    assert await sender.drain() == 12
    assert sorted(r.path for r in rec.requests[5:]) == sorted(f"/hook/{n}" for n in range(5, 17))


async def test_success_is_delivered_once_signed_and_verifiable(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    await add_done_task(store, clock, "h1", str(server.make_url("/hook")))
    sender = make_sender()

    assert await sender.drain() == 1
    assert await sender.drain() == 0  # nothing more to send

    (got,) = rec.requests
    body = verify(got)
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["webhook-timestamp"] == str(int(clock.time()))
    assert body["type"] == "task.succeeded"
    assert body["timestamp"].endswith("Z")
    assert body["data"] == {
        "history_id": "h1",
        "task_type": "image",
        "status": 10,
        "fail_code": 0,
        "item_count": 2,
        "results": [
            {"url": "https://cdn.example/h1/1.webp", "expires_at": None, "kept": False},
            {"url": "https://cdn.example/h1/2.webp", "expires_at": None, "kept": False},
        ],
        "queue": None,
        "fail_message": None,
    }
    record = await store.get("h1")
    assert record is not None and record.token is None  # deliveries do not need the session token
    assert {**body["data"], "raw_data": record.raw_data} == body_of_row(record)  # what a query shows
    event = await event_of(store, "h1")
    assert (event.state, event.attempts, event.event_id) == (EventState.DELIVERED, 1, got.headers["webhook-id"])
    (attempt,) = await attempts(store, "h1")
    assert (attempt.attempt, attempt.status, attempt.error, attempt.next_attempt_at) == (1, 200, None, None)
    assert attempt.latency_ms >= 0


async def test_tasks_without_callback_url_get_no_event(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, _ = receiver
    await add_done_task(store, clock, "h1", None)
    assert await store.events_of("h1") == []
    assert await make_sender().drain() == 0
    assert rec.requests == []


async def test_failed_task_event_says_why(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    url = str(server.make_url("/hook"))
    for hid in ("up", "slow"):
        await store.insert(make_task(hid, url, created_at=clock.time()))
    await TaskSettler(store, clock).settle(
        [
            failed_outcome("up", Reason.UPSTREAM_FAILED, fail_code="2036"),
            failed_outcome("slow", Reason.TIMEOUT, detail="no final status within 86400 s"),
        ]
    )
    await make_sender().drain()

    bodies = {b["data"]["history_id"]: b for b in map(verify, rec.requests)}
    assert bodies["up"]["type"] == "task.failed"
    assert bodies["up"]["data"]["status"] == 30
    assert bodies["up"]["data"]["fail_code"] == 2036
    assert bodies["up"]["data"]["results"] is None
    assert bodies["up"]["data"]["error"]["code"] == "GENERATION_FAILED"
    assert "2036" in bodies["up"]["data"]["error"]["message"]
    assert bodies["slow"]["data"]["error"] == {
        "code": "TIMEOUT",
        "message": "the task did not reach a final status in time (no final status within 86400 s)",
    }
    for hid, body in bodies.items():  # each event says what a query of the task says
        row = await store.get(hid)
        assert row is not None and {**body["data"], "raw_data": row.raw_data} == body_of_row(row)


async def test_three_failures_then_success_on_the_fourth_attempt(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    rec.script("/hook", Reply(500), Reply(503), Reply(502))
    await add_done_task(store, clock, "h1", str(server.make_url("/hook")))
    sender = make_sender()
    start = clock.time()

    assert await sender.drain() == 1
    await clock.advance(4.9)
    assert await sender.drain() == 0  # not due yet
    await clock.advance(0.1)
    assert await sender.drain() == 1
    await clock.advance(299)
    assert await sender.drain() == 0
    await clock.advance(1)
    assert await sender.drain() == 1
    await clock.advance(1800)
    assert await sender.drain() == 1
    await clock.advance(86400)
    assert await sender.drain() == 0

    assert len(rec.requests) == 4
    assert len(set(rec.ids())) == 1  # the webhook-id is stable across retries
    assert [r.headers["webhook-timestamp"] for r in rec.requests] == [str(int(start + t)) for t in (0, 5, 305, 2105)]
    for got in rec.requests[:2]:  # a receiver accepts every attempt's signature (later ones are "too old" now)
        verify(got)
    tries = await attempts(store, "h1")
    assert [(a.attempt, a.status) for a in tries] == [(1, 500), (2, 503), (3, 502), (4, 200)]
    assert [a.next_attempt_at for a in tries] == [start + 5, start + 305, start + 2105, None]
    assert "HTTP 500" in (tries[0].error or "")
    event = await event_of(store, "h1")
    assert (event.state, event.attempts) == (EventState.DELIVERED, 4)


async def test_schedule_used_up_means_exhausted(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    rec.script("/hook", *[Reply(500)] * 5)
    await add_done_task(store, clock, "h1", str(server.make_url("/hook")))
    sender = make_sender(schedule=(0.0, 5.0))
    await sender.drain()
    await clock.advance(5)
    await sender.drain()
    await clock.advance(10**6)
    assert await sender.drain() == 0
    assert len(rec.requests) == 2
    event = await event_of(store, "h1")
    assert (event.state, event.next_attempt_at) == (EventState.EXHAUSTED, None)
    assert [a.next_attempt_at for a in await attempts(store, "h1")][-1] is None


async def test_410_stops_further_attempts(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    rec.script("/hook", Reply(410))
    await add_done_task(store, clock, "h1", str(server.make_url("/hook")))
    sender = make_sender()
    await sender.drain()
    await clock.advance(10**6)
    assert await sender.drain() == 0
    assert len(rec.requests) == 1
    assert (await event_of(store, "h1")).state is EventState.STOPPED
    (attempt,) = await attempts(store, "h1")
    assert attempt.status == 410 and attempt.next_attempt_at is None


async def test_redirect_is_a_failure_and_never_followed(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    rec.script("/hook", Reply(302, {"Location": str(server.make_url("/elsewhere"))}))
    await add_done_task(store, clock, "h1", str(server.make_url("/hook")))
    sender = make_sender()
    await sender.drain()
    assert rec.on("/elsewhere") == []
    (attempt,) = await attempts(store, "h1")
    assert attempt.status == 302 and "redirect" in (attempt.error or "")
    event = await event_of(store, "h1")
    assert (event.state, event.next_attempt_at) == (EventState.PENDING, clock.time() + 5)
    await clock.advance(5)
    await sender.drain()  # the retry goes to the callback URL again, and succeeds
    assert [r.path for r in rec.requests] == ["/hook", "/hook"]
    assert (await event_of(store, "h1")).state is EventState.DELIVERED


async def test_a_hanging_receiver_times_out_and_is_retried(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    rec.script("/hook", Reply(hang=True))
    await add_done_task(store, clock, "h1", str(server.make_url("/hook")))
    sender = make_sender(timeout=0.2, lease_seconds=1.0)
    await sender.drain()
    (attempt,) = await attempts(store, "h1")
    assert attempt.status is None and "timed out after 0.2 s" in (attempt.error or "")
    assert (await event_of(store, "h1")).state is EventState.PENDING
    await clock.advance(5)
    await sender.drain()
    assert (await event_of(store, "h1")).state is EventState.DELIVERED


async def test_connection_refused_is_retried(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    _, server = receiver
    dead = await _closed_port_url(server)
    await add_done_task(store, clock, "h1", dead)
    await make_sender().drain()
    (attempt,) = await attempts(store, "h1")
    assert attempt.status is None and "could not connect" in (attempt.error or "")
    assert (await event_of(store, "h1")).state is EventState.PENDING


async def _closed_port_url(server: TestServer) -> str:
    """A loopback URL on which nothing listens (a port the OS just gave us and we released)."""
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    del server
    return f"http://127.0.0.1:{port}/hook"


@pytest.mark.parametrize(
    ("header", "expected_delay"),
    [
        ("120", 120.0),  # longer than the schedule's 5 s: honoured
        ("1", 5.0),  # shorter: the schedule wins
        ("999999", 600.0),  # capped at max_retry_after
        ("http-date", 240.0),
        ("soon", 5.0),  # unparseable: ignored
    ],
)
async def test_retry_after_is_honoured(
    store: Store,
    clock: ManualClock,
    receiver: tuple[Receiver, TestServer],
    make_sender: SenderFactory,
    header: str,
    expected_delay: float,
) -> None:
    rec, server = receiver
    if header == "http-date":
        header = format_datetime(datetime.fromtimestamp(clock.time() + 240, UTC), usegmt=True)
    rec.script("/hook", Reply(429, {"Retry-After": header}))
    await add_done_task(store, clock, "h1", str(server.make_url("/hook")))
    sender = make_sender(max_retry_after=600.0)
    await sender.drain()
    event = await event_of(store, "h1")
    assert event.next_attempt_at == pytest.approx(clock.time() + expected_delay)
    await clock.advance(expected_delay - 0.5)
    assert await sender.drain() == 0
    await clock.advance(0.5)
    assert await sender.drain() == 1
    assert (await event_of(store, "h1")).state is EventState.DELIVERED


async def add_events(url: str, history_id: str, callback_url: str, count: int, now: float) -> None:
    """Several events for one task (settling writes one; a task with several is set up in SQL)."""
    for n in range(1, count + 1):
        body = json.dumps({"type": "test", "n": n})
        if url.startswith("sqlite:"):
            sql = (
                "INSERT INTO webhook_events (event_id, seq, history_id, account_fp, type, body, callback_url, "
                "next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, 'fp', 'test', ?, ?, ?, ?, ?)"
            )
            await execute_sql(url, sql, f"e{n}", n, history_id, body, callback_url, now, now, now)
        else:
            sql = (
                "INSERT INTO webhook_events (event_id, history_id, account_fp, type, body, callback_url, "
                "next_attempt_at, created_at, updated_at) VALUES ($1, $2, 'fp', 'test', $3, $4, $5, $5, $5)"
            )
            await execute_sql(url, sql, f"e{n}", history_id, body, callback_url, now)


async def test_events_of_one_task_are_delivered_in_order(
    store: Store,
    store_url: str,
    clock: ManualClock,
    receiver: tuple[Receiver, TestServer],
    make_sender: SenderFactory,
) -> None:
    rec, server = receiver
    url = str(server.make_url("/hook"))
    await store.insert(make_task("h1", url, created_at=clock.time()))
    await add_events(store_url, "h1", url, 3, clock.time())
    rec.script("/hook", Reply(500))  # the first event fails once
    sender = make_sender()
    await sender.drain()
    assert rec.ids() == ["e1"]  # e2 and e3 wait although they are due
    await clock.advance(5)
    await sender.drain()
    assert rec.ids() == ["e1", "e1", "e2", "e3"]


async def test_a_slow_receiver_does_not_block_others_and_concurrency_is_bounded(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    rec.script("/slow", *[Reply(hang=True)] * 3)
    await add_done_task(store, clock, "slow", str(server.make_url("/slow")))
    for i in range(8):
        await add_done_task(store, clock, f"fast{i}", str(server.make_url("/fast")))
    sender = make_sender(max_concurrency=2, timeout=30.0)
    await sender.start()
    sender.wake()
    # The slow receiver holds one slot; the 8 fast deliveries go through the other one.
    await rec.wait_for(lambda: len(rec.on("/fast")) == 8 and rec.active == 1)
    await _until(lambda: sender.in_flight == 1)
    assert len(rec.on("/slow")) == 1
    assert rec.peak <= 2
    assert await store.event_state_counts() == {EventState.DELIVERED: 8, EventState.DELIVERING: 1}
    rec.released.set()
    await rec.wait_for(lambda: rec.active == 0)
    await _until(lambda: sender.in_flight == 0)  # its answer read and recorded (not cut off by stop())
    await sender.stop()
    assert await store.event_state_counts() == {EventState.DELIVERED: 9}


async def test_concurrency_never_exceeds_the_limit(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    rec.script("/gate", *[Reply(hang=True)] * 10)
    for i in range(10):
        await add_done_task(store, clock, f"h{i}", str(server.make_url("/gate")))
    sender = make_sender(max_concurrency=3, timeout=30.0)
    await sender.start()
    sender.wake()
    await rec.wait_for(lambda: rec.active == 3)
    assert sender.in_flight == 3
    rec.released.set()
    await rec.wait_for(lambda: len(rec.requests) == 10 and rec.active == 0)
    assert rec.peak == 3
    await sender.stop()
    assert sorted(rec.ids()) == sorted(set(rec.ids()))


async def test_the_loop_wakes_for_new_events_and_follows_the_clock(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    rec.script("/hook", Reply(500))
    sender = make_sender(poll_interval=60.0)
    await sender.start()
    await add_done_task(store, clock, "h1", str(server.make_url("/hook")))
    sender.wake()
    await rec.wait_for(lambda: len(rec.requests) == 1)
    due = clock.time() + 5
    await _until(lambda: sender.in_flight == 0 and clock.next_wakeup() == due)  # sleeps until the retry
    await clock.advance(5)
    await rec.wait_for(lambda: len(rec.requests) == 2)
    await _until(lambda: sender.in_flight == 0)
    assert (await event_of(store, "h1")).state is EventState.DELIVERED


async def _until(predicate: Callable[[], bool]) -> None:
    """Yield to the loop (no real sleep) until the sender's or clock's state satisfies `predicate`."""
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110 - state of objects without events; sleep(0) only yields
            await asyncio.sleep(0)


async def test_unsigned_when_no_secret_and_start_up_warns(
    store: Store,
    clock: ManualClock,
    receiver: tuple[Receiver, TestServer],
    make_sender: SenderFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec, server = receiver
    await add_done_task(store, clock, "h1", str(server.make_url("/hook")))
    sender = make_sender(secret=None)
    assert not sender.signed
    with caplog.at_level(logging.WARNING):
        await sender.start()
        sender.wake()
        await rec.wait_for(lambda: len(rec.requests) == 1)
    assert "NOT signed" in caplog.text
    (got,) = rec.requests
    assert "webhook-signature" not in got.headers
    assert got.headers["webhook-id"].startswith("msg_")


async def test_stop_gives_an_interrupted_send_back_and_the_next_sender_resends_it(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    rec.script("/hook", Reply(hang=True))
    await add_done_task(store, clock, "h1", str(server.make_url("/hook")))
    first = make_sender(timeout=30.0)
    await first.start()
    first.wake()
    await rec.wait_for(lambda: rec.active == 1)
    await first.stop()
    event = await event_of(store, "h1")
    assert (event.state, event.attempts) == (EventState.PENDING, 0)  # no attempt recorded for the cut-off send
    second = make_sender()
    await second.drain()
    assert rec.ids() == [event.event_id, event.event_id]
    assert (await event_of(store, "h1")).state is EventState.DELIVERED


async def test_a_crashed_senders_claim_is_released_on_start(
    store: Store,
    store_url: str,
    clock: ManualClock,
    receiver: tuple[Receiver, TestServer],
    make_sender: SenderFactory,
) -> None:
    """SQLite (one process per file) frees every claim at start-up; PostgreSQL (replicas) waits for the lease:
    another replica may still be sending."""
    rec, server = receiver
    await add_done_task(store, clock, "h1", str(server.make_url("/hook")))
    now = clock.time()
    # A sender claimed it, then the process died.
    (claimed,) = await store.claim_due_events(now=now, limit=10, lease_until=now + 60)
    assert await store.claim_due_events(now=now, limit=10, lease_until=now + 60) == []  # the lease holds
    sender = make_sender()
    assert await sender.drain() == 0  # without start(): the lease still holds
    if store_url.startswith("postgresql"):
        assert await store.release_event_leases(now=now + 59) == 0
        await clock.advance(60)
    await sender.start()
    sender.wake()
    await rec.wait_for(lambda: len(rec.requests) == 1)
    assert rec.ids() == [claimed.event_id]


async def test_an_expired_lease_is_claimed_again(store: Store, clock: ManualClock) -> None:
    await store.insert(make_task("h1", "http://127.0.0.1:9/hook", created_at=clock.time()))
    now = clock.time()
    done = Settlement(TaskStatus.DONE, 50, "", None, ("https://cdn.example/1.webp",), 1, None)
    settled = await store.settle([Finish("h1", done, NewEvent("e1", "task.succeeded", "{}"))])
    assert [s.event_written for s in settled] == [True]
    assert len(await store.claim_due_events(now=now, limit=5, lease_until=now + 60)) == 1
    assert await store.claim_due_events(now=now + 59, limit=5, lease_until=now + 120) == []
    assert await store.claim_due_events(now=now + 61, limit=5, lease_until=now + 121, exclude=["e1"]) == []
    again = await store.claim_due_events(now=now + 61, limit=5, lease_until=now + 121)
    assert [(e.event_id, e.state, e.lease_until) for e in again] == [("e1", EventState.DELIVERING, now + 121)]


async def test_redelivery_sends_the_same_event_again_with_a_fresh_schedule(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    rec.script("/hook", Reply(500), Reply(500))
    await add_done_task(store, clock, "h1", str(server.make_url("/hook")))
    sender = make_sender(schedule=(0.0, 5.0))
    await sender.drain()
    await clock.advance(5)
    await sender.drain()
    event = await event_of(store, "h1")
    assert event.state is EventState.EXHAUSTED
    redelivery = await store.redeliver_latest("h1", now=clock.time())
    assert redelivery.queued and redelivery.event is not None and redelivery.event.event_id == event.event_id
    await sender.drain()
    assert rec.ids() == [event.event_id] * 3
    event = await event_of(store, "h1")
    assert (event.state, event.attempts, event.round_start) == (EventState.DELIVERED, 3, 2)
    assert [a.attempt for a in await attempts(store, "h1")] == [1, 2, 3]


async def test_purge_keeps_tasks_with_pending_deliveries(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    rec.script("/hook", Reply(500))
    await add_done_task(store, clock, "pending", str(server.make_url("/hook")))
    await add_done_task(store, clock, "plain", None)
    await make_sender().drain()
    await clock.advance(10)
    assert await store.purge_finished(older_than=1) == 1
    assert await store.get("plain") is None
    assert await store.get("pending") is not None
    await make_sender().drain()  # delivered now
    assert await store.purge_finished(older_than=1) == 1
    assert await store.events_of("pending") == []  # its events and attempts went with it
    assert await store.attempts_of("pending") == []
    assert len(rec.requests) == 2


async def test_stop_lets_in_flight_attempts_finish_within_the_grace_period(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    rec.script("/slow", Reply(hang=True))
    await add_done_task(store, clock, "h1", str(server.make_url("/slow")))
    sender = make_sender(timeout=30.0)
    await sender.start()
    sender.wake()
    await rec.wait_for(lambda: rec.active == 1)
    stopping = asyncio.create_task(sender.stop(grace=20.0))
    # The sleep IS the check: a window of real time in which a stop that cancelled the attempt would finish.
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waiting for the attempt, not cancelling it
    rec.released.set()
    async with asyncio.timeout(10):
        await stopping
    assert await store.event_state_counts() == {EventState.DELIVERED: 1}
    assert len(rec.requests) == 1
