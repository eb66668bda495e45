"""Issue 26, finding 5: a black-hole webhook receiver cannot delay everyone else's webhooks.

The real sender, store and loopback receivers: events queued for a receiver that never answers take at most
`[webhooks] max_per_host` send slots, so a healthy receiver's events (queued after them) go out at once; a
receiver that keeps failing opens its circuit, and its events wait (no attempt counted) until a probe answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer
from webhook_support import Receiver, Reply, add_done_task

from jimeng_server.clock import ManualClock
from jimeng_server.config import WebhookConfig
from jimeng_server.net.policy import FetchPolicy
from jimeng_server.store.base import Store
from jimeng_server.store.outbox import EventState
from jimeng_server.webhooks.fairness import HostGate, destination_of
from jimeng_server.webhooks.sender import WebhookSender

pytestmark = pytest.mark.wall_clock  # webhook signatures are checked against the wall clock

ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def receivers(aiohttp_server: ServerFactory) -> AsyncIterator[tuple[Receiver, str, Receiver, str]]:
    hole, healthy = Receiver(), Receiver()
    hole_server, healthy_server = await aiohttp_server(hole.app()), await aiohttp_server(healthy.app())
    yield hole, str(hole_server.make_url("/hook")), healthy, str(healthy_server.make_url("/hook"))
    hole.released.set()


async def test_a_black_hole_holds_only_its_share(
    store: Store, clock: ManualClock, receivers: tuple[Receiver, str, Receiver, str]
) -> None:
    hole, hole_url, healthy, healthy_url = receivers
    hole.script("/hook", *[Reply(hang=True)] * 60)
    for i in range(40):
        await add_done_task(store, clock, f"hole-{i:03d}", hole_url)
    await clock.advance(1)
    for i in range(5):
        await add_done_task(store, clock, f"good-{i}", healthy_url)
    config = WebhookConfig(jitter=0.0, timeout=30.0, max_concurrency=8, max_per_host=2)
    sender = WebhookSender(store, config, clock, policy=FetchPolicy(allow_private_networks=True), secret=None)
    try:
        for _ in range(40):  # claim rounds (the loop's ticks): black-hole events beyond its share wait
            await sender.run_once()
            # A round ends when the healthy sends it started have ended in the sender (recorded, slot released),
            # not when the receiver has answered: the store write after the answer takes longer on PostgreSQL.
            await sender.settle(destination_of(healthy_url))
            if len(healthy.acked) == 5:
                break
            await clock.advance(0.1)
        assert len(healthy.acked) == 5, healthy.acked
        await hole.wait_for(lambda: hole.active == 2)
        assert sender.gate.in_flight(destination_of(hole_url)) == 2 and hole.peak == 2
        for i in range(40):  # nothing was counted against the waiting events
            [event] = await store.events_of(f"hole-{i:03d}")
            assert event.attempts == 0
    finally:
        hole.released.set()
        await sender.stop()


async def test_a_failing_receiver_opens_its_circuit_and_a_probe_closes_it(
    store: Store, clock: ManualClock, receivers: tuple[Receiver, str, Receiver, str]
) -> None:
    hole, hole_url, _, _ = receivers
    hole.script("/hook", *[Reply(status=503)] * 3)
    for i in range(10):
        await add_done_task(store, clock, f"hole-{i:03d}", hole_url)
    config = WebhookConfig(
        jitter=0.0, schedule=(0.0, 0.0, 0.0, 0.0), max_per_host=1, breaker_failures=3, breaker_seconds=30.0
    )
    sender = WebhookSender(store, config, clock, policy=FetchPolicy(allow_private_networks=True), secret=None)
    try:
        await sender.drain()
        host = destination_of(hole_url)
        assert len(hole.requests) == 3 and sender.gate.is_open(host)
        await sender.drain()  # the circuit holds every event back; none is spent
        assert len(hole.requests) == 3
        await clock.advance(31)  # half-open: one probe, answered 200, closes it
        await sender.drain()
        assert len(hole.requests) == 4 and not sender.gate.is_open(host)
        for _ in range(20):  # then the rest, one at a time (max_per_host = 1)
            await clock.advance(0.1)
            await sender.drain()
        assert not sender.gate.is_open(host) and len(hole.requests) == 3 + 10
        states = [(await store.events_of(f"hole-{i:03d}"))[0].state for i in range(10)]
        assert states == [EventState.DELIVERED] * 10
    finally:
        await sender.stop()


async def test_a_burst_for_a_new_receiver_goes_out_once_it_answers(
    store: Store, clock: ManualClock, receivers: tuple[Receiver, str, Receiver, str]
) -> None:
    """Issue 27: events given back while a new receiver had not answered yet (its share is `max_per_host`, as
    for a possible black hole) are due again as soon as it answers, not paced as if it were one."""
    _, _, healthy, url = receivers
    for i in range(40):
        await add_done_task(store, clock, f"burst-{i:03d}", url)
    config = WebhookConfig(jitter=0.0, max_concurrency=8, max_per_host=2)
    sender = WebhookSender(store, config, clock, policy=FetchPolicy(allow_private_networks=True), secret=None)
    try:
        for _ in range(6):  # 0.3 s of the clock; paced like a black hole (2 per 50 ms) 40 events need 1 s
            await sender.drain()
            if len(healthy.acked) == 40:
                break
            await clock.advance(0.05)
        assert len(healthy.acked) == 40
        assert sender.gate.proven(destination_of(url))  # once it answered, it may use the spare slots
    finally:
        await sender.stop()


def test_destinations_are_host_and_port() -> None:
    assert destination_of("https://a.example/x") == "a.example:443"
    assert destination_of("http://a.example:8080/x?q=1") == "a.example:8080"
    assert destination_of("http://[::1]:9/") == "::1:9"


async def test_a_receiver_that_answers_may_use_the_spare_slots_and_one_that_does_not_its_share() -> None:
    """A burst for one answering receiver is not paced to `per_host` sends (issue 27: 5,000 webhooks to one
    receiver were sent back to the outbox again and again); an unheard-of, failing or stuck host is capped."""
    clock = ManualClock()
    gate = HostGate(clock, per_host=2, failures=5, open_seconds=30.0, fast_cap=6)
    answering, new, stuck = "answering:80", "new:80", "stuck:80"
    assert [gate.admit(new) for _ in range(3)][2] is not None  # not heard from yet: its share only
    for host in (answering, stuck):
        assert gate.admit(host) is None
        gate.release(host, answered=True, seconds=2.0)  # a slow answer is an answer
    assert [gate.admit(answering) for _ in range(6)] == [None] * 6 and gate.admit(answering) is not None
    assert gate.admit(stuck) is None
    await clock.advance(5.0)  # its one send in flight has waited five seconds: its share only
    assert gate.admit(stuck) is None and gate.admit(stuck) is not None
    gate.release(answering, answered=False, seconds=15.0)  # an unanswered send: capped until an answer
    assert gate.in_flight(answering) == 5 and gate.admit(answering) is not None
