"""Fair webhook delivery: one receiver cannot hold more than its share of the sender's slots.

`HostGate` is consulted by `WebhookSender` for every claimed event: `admit(host)` either takes one of the
host's `per_host` slots (send now) or names the time the event should wait until (the sender gives it back to
the outbox due then, without counting an attempt). `release(host, answered=)` ends a send. A circuit breaker
per host backs a failing receiver off: after `failures` sends in a row without an answer (network error,
timeout, 5xx, 429) it opens for `open_seconds`, during which nothing is sent to the host; then one probe is let
through (half-open): an answer closes it, another failure opens it again for twice as long (at most
`max_open_seconds`). A healthy receiver keeps its latency while another one is a black hole. A "host" is a
destination `host:port` (`destination_of`).

The cap is for hosts not proven to answer: a host whose last send ended with an answer and that has no send
in flight for `_STUCK` seconds may take up to `fast_cap` slots (the sender's concurrency less `per_host`, kept
for everyone else), so a burst of events for one healthy receiver is not paced to `per_host` sends at a time and
sent back to the outbox again and again. A host not heard from yet is capped; one that stops answering is
capped again after `_STUCK` seconds (at worst `fast_cap` sends then wait for the timeout while the other hosts
share the rest) and its breaker opens after `failures` unanswered sends.

Pure bookkeeping on an injected clock, no I/O; `tests/adversary/test_fair_delivery.py` runs it inside the real
sender against loopback receivers, and `bench/fair_delivery.py` measures it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Final

from yarl import URL

from ..clock import Clock

log = logging.getLogger(__name__)

_MIN_WAIT: Final = 0.05
"""The shortest wait of an event whose host is at its cap (a fast host frees a slot in milliseconds)."""

_REMEMBERED: Final = 1024
"""Hosts whose state is kept while idle (their latency decides their cap on the next send); past this, a
healthy host is forgotten when its last send ends."""

_STUCK: Final = 5.0
"""A host with a send in flight for this long (seconds) is held to `per_host` slots until it answers."""


@dataclass(slots=True)
class _Host:
    in_flight: int = 0
    failures: int = 0  # sends in a row without an answer
    open_until: float | None = None  # the breaker: open until then; past it, half-open (one probe)
    open_for: float = 0.0  # the last open period (doubles on a failed probe)
    latency: float | None = None  # moving average of a send's duration (seconds)
    starts: list[float] = field(default_factory=list)  # when each send in flight started
    cursor: float = 0.0  # when the next waiting event is due back (waiting events return a slot's worth at a time)
    queued: int = 0  # events sent back to wait so far (every `per_host` of them move the cursor on)


@functools.lru_cache(maxsize=4096)
def destination_of(url: str) -> str:
    """What the gate shares out: the `host:port` a callback URL is sent to ("?" for an unparseable URL). Pure, so
    cached: it is asked once per claimed event, and a burst names the same few callback URLs."""
    try:
        parsed = URL(url)
    except ValueError:
        return "?"
    return f"{parsed.host or '?'}:{parsed.port}"


class HostGate:
    """Per-destination-host send slots and circuit breakers (see the module docstring)."""

    def __init__(
        self,
        clock: Clock,
        *,
        per_host: int,
        failures: int,
        open_seconds: float,
        max_open_seconds: float = 600.0,
        timeout: float = 15.0,
        fast_cap: int | None = None,
    ) -> None:
        """`timeout`: the longest a send can hold a slot (the sender's request timeout); `fast_cap`: the slots a
        fast host may hold (None: `per_host`, no exception for fast hosts)."""
        self.clock = clock
        self.per_host = max(1, per_host)
        self.fast_cap = max(self.per_host, fast_cap or 0)
        self.failures = max(1, failures)
        self.open_seconds = open_seconds
        self.max_open_seconds = max(open_seconds, max_open_seconds)
        self.timeout = timeout
        self._hosts: dict[str, _Host] = {}

    def admit(self, host: str) -> float | None:
        """Take a send slot of `host` (None: send now; `release` it when the send ends), or the time until which
        the event should wait: the breaker's end while it is open, else a wait for a slot to free."""
        state = self._hosts.setdefault(host, _Host())
        now = self.clock.time()
        if state.open_until is not None:
            if now < state.open_until:
                return self._wait_turn(state, state.open_until, now)
            if state.in_flight >= 1:  # half-open: one probe at a time
                return self._wait_turn(state, now, now)
        elif state.in_flight >= self._cap(state, now):
            return self._wait_turn(state, now, now)
        state.in_flight += 1
        state.starts.append(now)
        return None

    def release(self, host: str, *, answered: bool, seconds: float) -> None:
        """End a send of `host` that took `seconds`: `answered` (a status below 500 other than 429) closes the
        breaker, anything else counts towards opening it."""
        state = self._hosts.get(host)
        if state is None or state.in_flight <= 0:
            return
        state.in_flight -= 1
        if state.starts:
            state.starts.pop(0)
        state.latency = seconds if state.latency is None else 0.8 * state.latency + 0.2 * seconds
        if answered:
            if state.open_until is not None:
                log.info("webhook receiver %s answers again: deliveries resume", host)
            state.failures, state.open_until, state.open_for = 0, None, 0.0
            if state.in_flight == 0 and len(self._hosts) > _REMEMBERED:
                self._hosts.pop(host, None)  # healthy and idle, and many hosts known: forget its latency
            return
        state.failures += 1
        now = self.clock.time()
        probing = state.open_until is not None and now >= state.open_until
        if probing or (state.open_until is None and state.failures >= self.failures):
            state.open_for = min(self.max_open_seconds, state.open_for * 2 if probing else self.open_seconds)
            state.open_until = now + state.open_for
            log.warning(
                "webhook receiver %s failed %d send(s) in a row: its deliveries wait %.0f s (circuit open)",
                host,
                state.failures,
                state.open_for,
            )

    def heard_from(self, host: str) -> bool:
        """True once a send to `host` has ended (answered or not) and the gate still remembers it."""
        state = self._hosts.get(host)
        return state is not None and state.latency is not None

    def proven(self, host: str) -> bool:
        """True while `host` may take more than `per_host` slots (it answers; see the module docstring)."""
        state = self._hosts.get(host)
        return state is not None and self._cap(state, self.clock.time()) > self.per_host

    def is_open(self, host: str) -> bool:
        """True while the breaker of `host` holds its deliveries back."""
        state = self._hosts.get(host)
        return state is not None and state.open_until is not None and self.clock.time() < state.open_until

    def in_flight(self, host: str) -> int:
        """Sends to `host` running now."""
        state = self._hosts.get(host)
        return state.in_flight if state is not None else 0

    def _cap(self, state: _Host, now: float) -> int:
        """The slots `state`'s host may hold now: `fast_cap` while it is proven (answered, see `_proven`), else
        `per_host` (a host not heard from yet may be a black hole)."""
        return self.fast_cap if state.latency is not None and self._proven(state, now) else self.per_host

    @staticmethod
    def _proven(state: _Host, now: float) -> bool:
        """Not known to be failing: its last send ended with an answer (or none ended yet) and none in flight
        has waited `_STUCK` seconds. A send's duration is not the test: under load it is mostly this server's
        own event loop, and a busy server would cap (and pace) the very receivers it is catching up with."""
        return state.failures == 0 and (not state.starts or now - state.starts[0] < _STUCK)

    def _wait_turn(self, state: _Host, earliest: float, now: float) -> float:
        """When a waiting event of a busy (or open) host is due back: from `earliest` on, `per_host` events per
        slot's wait, so a long queue returns at the pace the host can take it (not all at once, which would
        make the sender claim and send back the whole queue again and again ahead of other hosts' events)."""
        step = self._slot_wait(state, now)
        if state.open_until is None and self._cap(state, now) > self.per_host:
            return now + step  # a proven host at its spare slots: they free in moments, no queue to pace
        state.cursor = max(state.cursor, earliest + step)
        due = state.cursor
        state.queued += 1
        if state.queued % self.per_host == 0:
            state.cursor += step
        return due

    def _slot_wait(self, state: _Host, now: float) -> float:
        """How long an event waits for a slot of a busy host: about one send's duration (the longer of the
        average and the age of the oldest send in flight: a host that stopped answering is waited for longer),
        at least `_MIN_WAIT`, at most the send timeout."""
        oldest = now - state.starts[0] if state.starts else 0.0
        return min(self.timeout, max(_MIN_WAIT, oldest, state.latency or 0.0))
