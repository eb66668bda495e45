"""A settle hands its webhook events to the sender of its own process (issue 27): the settle's transaction writes
as many of them as the running sender has free slots for already claimed (`delivering`, leased), and the sender
starts them at once; the rest are written pending and claimed as before. Events of a receiver that answers and
is at its cap wait in the sender, still claimed, instead of going back to the outbox. Real stores (both
backends), the real sender loop, a loopback receiver; nothing here waits on a timer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from webhook_support import SECRET, Receiver, Reply, done_outcome, make_task

from jimeng_server.clock import ManualClock
from jimeng_server.config import WebhookConfig
from jimeng_server.net.policy import FetchPolicy
from jimeng_server.services.settlement import TaskSettler
from jimeng_server.store.base import Store
from jimeng_server.store.outbox import EventClaim, EventState
from jimeng_server.tasks.answer import settlement_of
from jimeng_server.tasks.records import Finish, NewEvent
from jimeng_server.webhooks.sender import WebhookSender
from jimeng_server.webhooks.signatures import parse_secret

pytestmark = pytest.mark.wall_clock  # signed with the wall clock's timestamp

SenderFactory = Callable[..., WebhookSender]
LEASE = 60.0


@pytest.fixture
async def make_sender(store: Store, clock: ManualClock) -> AsyncIterator[SenderFactory]:
    senders: list[WebhookSender] = []

    def factory(**overrides: Any) -> WebhookSender:
        config = WebhookConfig(**{"jitter": 0.0, "timeout": 5.0, "lease_seconds": LEASE, **overrides})
        sender = WebhookSender(
            store, config, clock, policy=FetchPolicy(allow_private_networks=True), secret=parse_secret(SECRET)
        )
        senders.append(sender)
        return sender

    yield factory
    for sender in senders:
        await sender.stop()


async def add_tasks(store: Store, clock: ManualClock, server: TestServer, count: int) -> list[str]:
    ids = [f"h{n}" for n in range(count)]
    for history_id in ids:
        await store.insert(make_task(history_id, str(server.make_url(f"/hook/{history_id}")), created_at=clock.time()))
    return ids


async def states(store: Store, ids: list[str]) -> dict[str, EventState]:
    return {history_id: (await store.events_of(history_id))[0].state for history_id in ids}


async def test_settle_claiming_writes_the_first_events_claimed_and_returns_them(
    store: Store, clock: ManualClock
) -> None:
    for history_id in ("a", "b", "c"):
        await store.insert(make_task(history_id, "https://hooks.example/cb", created_at=clock.time()))
    now = clock.time()
    finishes = [
        Finish(h, settlement_of(done_outcome(h, [f"https://cdn.example/{h}.png"])), NewEvent(f"evt_{h}", "t", "{}"))
        for h in ("a", "b", "c")
    ]

    settled, claimed = await store.settle_claiming(finishes, EventClaim(2, now + LEASE))

    assert [s.history_id for s in settled] == ["a", "b", "c"] and all(s.event_written for s in settled)
    assert [(e.event_id, e.state, e.lease_until, e.next_attempt_at) for e in claimed] == [
        ("evt_a", EventState.DELIVERING, now + LEASE, now),
        ("evt_b", EventState.DELIVERING, now + LEASE, now),
    ]
    assert [(e.history_id, e.callback_url, e.attempts) for e in claimed] == [
        ("a", "https://hooks.example/cb", 0),
        ("b", "https://hooks.example/cb", 0),
    ]
    # Another sender (a replica, a sender process) finds only the event nobody claimed.
    others = await store.claim_due_events(now=now, limit=10, lease_until=now + LEASE)
    assert [e.event_id for e in others] == ["evt_c"]
    assert (await store.events_of("a"))[0].seq < (await store.events_of("c"))[0].seq  # creation order kept
    # A second settle of the same tasks claims nothing and writes nothing.
    assert await store.settle_claiming(finishes, EventClaim(2, now + LEASE)) == ([], [])


async def test_a_running_sender_sends_what_the_settle_claimed_for_it_without_claiming(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    ids = await add_tasks(store, clock, server, 3)
    for history_id in ids:
        rec.script(f"/hook/{history_id}", Reply(hang=True))
    sender = make_sender()
    claimed_by_the_loop: list[str] = []
    claim = store.claim_and_next_due

    async def counted(**kwargs: Any) -> Any:
        events, due = await claim(**kwargs)
        claimed_by_the_loop.extend(e.event_id for e in events)
        return events, due

    store.claim_and_next_due = counted  # type: ignore[method-assign]
    await sender.start()
    now = clock.time()

    await TaskSettler(store, clock, sender=sender).settle([done_outcome(h, [f"https://cdn.example/{h}"]) for h in ids])

    # Written claimed by the settle (leased from its own clock reading), not pending: the sender claimed nothing.
    events = [(await store.events_of(h))[0] for h in ids]
    assert [(e.state, e.lease_until) for e in events] == [(EventState.DELIVERING, now + LEASE)] * 3
    await rec.wait_for(lambda: len(rec.requests) == 3)
    assert sorted(r.path for r in rec.requests) == [f"/hook/{h}" for h in ids]
    rec.released.set()
    await sender.drain()
    assert await states(store, ids) == dict.fromkeys(ids, EventState.DELIVERED)
    assert [len(await store.attempts_of(h)) for h in ids] == [1, 1, 1]
    assert claimed_by_the_loop == []


async def test_a_settle_claims_no_more_than_the_free_slots_and_the_rest_follow(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    ids = await add_tasks(store, clock, server, 5)
    for history_id in ids:
        rec.script(f"/hook/{history_id}", Reply(hang=True))
    sender = make_sender(max_concurrency=2, max_per_host=2)
    await sender.start()

    await TaskSettler(store, clock, sender=sender).settle([done_outcome(h, [f"https://cdn.example/{h}"]) for h in ids])

    written = await states(store, ids)
    assert list(written.values()).count(EventState.DELIVERING) == 2
    assert list(written.values()).count(EventState.PENDING) == 3
    rec.released.set()  # the two sent answer; the loop claims the other three as slots free
    await rec.wait_for(lambda: len(rec.requests) == 5)
    await sender.drain()
    assert await states(store, ids) == dict.fromkeys(ids, EventState.DELIVERED)
    assert sorted(rec.ids()) == sorted({r.headers["webhook-id"] for r in rec.requests})  # each sent once


async def test_a_settle_without_a_running_sender_writes_its_events_pending(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    ids = await add_tasks(store, clock, server, 2)
    sender = make_sender()  # not started: a tool driving drain(), or the sender stopped

    await TaskSettler(store, clock, sender=sender).settle([done_outcome(h, [f"https://cdn.example/{h}"]) for h in ids])

    assert await states(store, ids) == dict.fromkeys(ids, EventState.PENDING)
    assert rec.requests == []
    assert await sender.drain() == 2
    assert await states(store, ids) == dict.fromkeys(ids, EventState.DELIVERED)


async def prove_then_hang(rec: Receiver, sender: WebhookSender, settler: TaskSettler, ids: list[str]) -> None:
    """Start `sender`, deliver the first task's event (its receiver answers: proven, it may take the spare slots),
    then settle the other tasks, whose receiver hangs until released."""
    await sender.start()
    await settler.settle([done_outcome(ids[0], [f"https://cdn.example/{ids[0]}"])])
    await rec.wait_for(lambda: len(rec.acked) == 1)
    await sender.drain()
    for history_id in ids[1:]:
        rec.script(f"/hook/{history_id}", Reply(hang=True))
    await settler.settle([done_outcome(h, [f"https://cdn.example/{h}"]) for h in ids[1:]])


async def test_events_of_an_answering_receiver_at_its_cap_wait_claimed_in_the_sender(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    ids = await add_tasks(store, clock, server, 5)
    sender = make_sender(max_concurrency=4, max_per_host=1)  # an answering host may take 3 slots

    await prove_then_hang(rec, sender, TaskSettler(store, clock, sender=sender), ids)

    # Four slots were free: four events written claimed; three are sent and one waits for the next free slot of
    # its host, still claimed (not given back to the outbox to be claimed again).
    await rec.wait_for(lambda: len(rec.requests) == 1 + 3)
    assert await states(store, ids[1:]) == dict.fromkeys(ids[1:], EventState.DELIVERING)
    rec.released.set()
    await rec.wait_for(lambda: len(rec.requests) == 5)
    await sender.drain()
    assert await states(store, ids) == dict.fromkeys(ids, EventState.DELIVERED)
    assert sorted(r.path for r in rec.requests) == [f"/hook/{h}" for h in ids]  # each once


async def test_a_stopped_sender_gives_back_the_events_it_held(
    store: Store, clock: ManualClock, receiver: tuple[Receiver, TestServer], make_sender: SenderFactory
) -> None:
    rec, server = receiver
    ids = await add_tasks(store, clock, server, 4)
    sender = make_sender(max_concurrency=3, max_per_host=1)  # an answering host may take 2 slots
    await prove_then_hang(rec, sender, TaskSettler(store, clock, sender=sender), ids)
    await rec.wait_for(lambda: len(rec.requests) == 1 + 2)

    await sender.stop()  # no grace: the two hung sends are cut, the held one was never sent

    assert await states(store, ids[1:]) == dict.fromkeys(ids[1:], EventState.PENDING)
    assert [len(await store.attempts_of(h)) for h in ids[1:]] == [0, 0, 0]  # none counted as an attempt

