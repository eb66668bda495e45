"""Webhook delivery: the retry schedule and the sender.

`WebhookSender` claims due outbox events under a lease (or takes those a settle in its process wrote already
claimed: `reserve` / `take`), POSTs them through the SSRF-safe keep-alive client
(net/poster.py; redirects never followed), signs them (`signatures.py`) and records every attempt (design.md
§3). Delivery is at-least-once: the `webhook-id` is stable so receivers can de-duplicate. Events are written by
`events.py` in the same transaction as the task's final state.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC
from typing import Final, Protocol

from yarl import URL

from ..clock import Clock, sleep_unless
from ..concurrency import GroupCommit, uncancellable
from ..config import WebhookConfig
from ..jobs import Jobs
from ..metrics import webhook_delivery
from ..net.errors import FetchError, UnsafeURLError
from ..net.fetcher import SafeFetcher
from ..net.policy import FetchPolicy
from ..net.poster import PostResult, WebhookPoster
from ..store.base import OutboxStore
from ..store.outbox import NO_CLAIM, Attempt, AttemptResult, EventClaim, EventState, OutboxEvent
from .fairness import HostGate, destination_of
from .signatures import SECRET_ENV, delivery_headers

log = logging.getLogger(__name__)

_ERROR_EXCERPT: Final = 200
_PARKED: Final = 20_000
"""Event ids remembered (all hosts together) to hasten when their host first answers."""


# ---------------------------------------------------------------------------------------------------------
# Retry schedule


def retry_delay(schedule: Sequence[float], attempts_made: int, *, jitter: float, rng: random.Random) -> float | None:
    """Seconds to wait after the `attempts_made`-th failed attempt of a round (1-based), jittered by
    +/- `jitter`; None when the schedule is used up (the event is exhausted)."""
    if attempts_made >= len(schedule):
        return None
    base = float(schedule[attempts_made])
    if base <= 0 or jitter <= 0:
        return max(base, 0.0)
    return base * (1.0 + rng.uniform(-jitter, jitter))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date, relative to `now`);
    None when absent or unparseable. Never negative."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _describe_status(status: int, excerpt: str) -> str | None:
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"the receiver answered HTTP {status} (a redirect, which is never followed; use the final URL)"
    if status == 410:
        return "the receiver answered HTTP 410 Gone; no further attempts"
    shown = " ".join(excerpt.split())[:_ERROR_EXCERPT]
    return f"the receiver answered HTTP {status}" + (f": {shown}" if shown else "")


def _host_of(url: str) -> str:
    """The host of a callback URL, for log lines (paths and queries may carry the receiver's secrets)."""
    try:
        return URL(url).host or "?"
    except ValueError:
        return "?"


# ---------------------------------------------------------------------------------------------------------
# The sender


class HoldEvent(Exception):
    """Raised by a `body_hook` when an event must wait (e.g. its task's results are still being kept): the event
    goes back to pending until `until`, no attempt is recorded.

    Whatever ends the wait wakes pending events early (`KeepStore.wake_held_events`), but a wake that comes while
    this event is still claimed finds nothing to wake. `still`, when given, says whether the reason to wait still
    holds: the sender asks it once the event is pending again, and makes the event due at once when it does not."""

    def __init__(self, until: float, still: Callable[[], Awaitable[bool]] | None = None) -> None:
        super().__init__(f"held until {until}")
        self.until = until
        self.still = still


class Posts(Protocol):
    """What sends a delivery: `WebhookPoster` (the sender's own) or an injected `SafeFetcher`."""

    async def post(
        self,
        url: str,
        *,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,  # noqa: ASYNC109 - the per-delivery budget is part of the API contract
    ) -> PostResult: ...


class SendsElsewhere(Protocol):
    """The senders that deliver for this process when it sends none itself (`[webhooks] processes`:
    `processes.SenderProcesses`)."""

    @property
    def running(self) -> bool: ...

    @property
    def in_flight(self) -> int: ...

    def wake(self) -> None: ...


class WebhookSender:
    """Delivers outbox events: one loop claims due events under a lease, one task per event sends it.

    At most `config.max_concurrency` sends are in flight; a slow receiver holds one slot only. A task's
    events go out in order (the claim query holds back later ones). Results: 2xx delivered; 410 stopped;
    any other answer (3xx included, never followed), a network error or a timeout is retried per
    `config.schedule` (a longer `Retry-After`, capped at `max_retry_after`, wins), then exhausted.

    `start()` returns leftover `delivering` events to `pending` (a crash left them: at-least-once; see
    `OutboxStore.release_event_leases`) and starts the loop; `stop()` ends every job of its `jobs` owner (the
    loop is spawned, each send shielded: it gets the grace) and gives unfinished sends back. Tests can skip the
    loop and drive `run_once()` / `drain()` with a manual clock. Sends go through `fetcher` when one is given
    (not closed here), else through the sender's own keep-alive `WebhookPoster` under `policy` (net/poster.py:
    connections kept per receiver), closed by `stop()`.
    """

    def __init__(
        self,
        store: OutboxStore,
        config: WebhookConfig,
        clock: Clock,
        *,
        policy: FetchPolicy,
        secret: bytes | None,
        fetcher: SafeFetcher | None = None,
        rng: random.Random | None = None,
        jobs: Jobs | None = None,
    ) -> None:
        self._store = store
        self.config = config
        self.clock = clock
        self._key = secret
        self._policy = policy
        self._fetcher: Posts | None = fetcher
        self._poster: WebhookPoster | None = None
        self._rng = rng or random.Random()
        self._jobs = jobs or Jobs("webhook-sender")
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._reserved = 0  # slots held for the events settles are writing claimed (`reserve`, until `take`)
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._next_due: float | None = None
        self._recorder: GroupCommit[AttemptResult] = GroupCommit(store.record_attempts)
        self._fresh = False  # wake() was called since the last claim: new events may be due
        self._drained = False  # the last claim got fewer events than it asked for: none was left due then
        self._claim_batch = max(1, config.max_concurrency // 4)  # free slots worth a claim when nothing is new
        # Set by the app: the body to send for an event, e.g. with its expiring result links re-signed
        # (services/result_links.py). None, or a hook that fails: the stored body as it is.
        self.body_hook: Callable[[OutboxEvent], Awaitable[str]] | None = None
        self.gate = HostGate(
            clock,
            per_host=config.max_per_host,
            failures=config.breaker_failures,
            open_seconds=config.breaker_seconds,
            timeout=config.timeout,
            fast_cap=config.max_concurrency - config.max_per_host,
        )
        self._sends: dict[str, tuple[str, float]] = {}  # event id -> its host and when its send started
        # Events given back while their host was not heard from yet, by host: due again at once when it answers
        # (a burst for a new receiver is not paced as if it were a black hole); at most _PARKED ids in all.
        self._parked: dict[str, list[str]] = {}
        self._hasten: list[str] = []
        # Claimed events of a proven host at its cap, by host: its slots free in moments, so they wait here, still
        # claimed, and the next send of that host that ends starts one (no give-back and claim again per event).
        # They hold send slots (`_free`), so at most the slots the host may not take wait here.
        self._held: dict[str, deque[OutboxEvent]] = {}
        self._held_count = 0
        self._give_back: dict[str, float] = {}  # held events the gate no longer admits: pending again, due then
        # Set by the app with `[webhooks] processes`: this process is not started and sends nothing; wake(),
        # running and in_flight are the sender processes'.
        self.elsewhere: SendsElsewhere | None = None
        self._answered: set[str] = set()  # events whose send got an answer (for the gate's breaker)

    # ------------------------------------------------------------------ public API

    @property
    def store(self) -> OutboxStore:
        """The task store the outbox lives in."""
        return self._store

    @property
    def signed(self) -> bool:
        """True when deliveries carry a `webhook-signature`."""
        return self._key is not None

    @property
    def in_flight(self) -> int:
        """How many sends are running now (in the sender processes, when they send for this one)."""
        if self.elsewhere is not None:
            return self.elsewhere.in_flight
        return len(self._inflight)

    @property
    def running(self) -> bool:
        """True while the delivery loop runs (started and not stopped or crashed), or the sender processes that
        send for this one all run."""
        if self.elsewhere is not None:
            return self.elsewhere.running
        return self._loop_task is not None and not self._loop_task.done()

    def wake(self) -> None:
        """Look for due events now (call after writing events); with `elsewhere`, tell the sender processes."""
        if self.elsewhere is not None:
            self.elsewhere.wake()
            return
        self._fresh = True
        self._wakeup.set()

    async def start(self) -> None:
        """Release stale leases, then start the loop (idempotent). Logs a warning when unsigned."""
        if self._loop_task is not None:
            return
        if self._key is None:
            log.warning(
                "no webhook secret configured ([webhooks] secret or %s): webhook deliveries are NOT signed",
                SECRET_ENV,
            )
        released = await self.store.release_event_leases(now=self.clock.time())
        if released:
            log.info("webhook sender: %d interrupted delivery(ies) queued again", released)
        self._loop_task = self._jobs.spawn(self._run(), name="jimeng-webhook-sender")

    async def stop(self, *, grace: float = 0.0) -> None:
        """Stop the loop (no new sends), let in-flight sends finish for up to `grace` seconds, then cancel
        and await the rest and queue them again; close the sender's own connections."""
        self._loop_task = None
        sends = dict(self._inflight)
        await self._jobs.stop(grace)  # cancels the loop first: no new sends
        cut = [key for key, send in sends.items() if send.cancelled()]
        cut += [event.event_id for held in self._held.values() for event in held] + list(self._give_back)
        self._held, self._held_count, self._give_back = {}, 0, {}
        if cut:
            try:
                await uncancellable(self._unclaim(cut))
            except Exception:
                log.exception("webhook sender: could not queue %d interrupted delivery(ies) again", len(cut))
        if self._poster is not None:
            poster, self._poster = self._poster, None
            await poster.close()

    def reserve(self, most: int) -> EventClaim:
        """Hold up to `most` free send slots for the events a settle in this process is about to write: it writes
        that many of them already claimed (`TaskTable.settle_claiming`) and MUST then call `take` with this claim,
        whatever happened. Claims nothing (`NO_CLAIM`) unless this sender's loop runs here."""
        if self.elsewhere is not None or not self.running or most <= 0:
            return NO_CLAIM
        limit = min(most, self._free())
        if limit <= 0:
            return NO_CLAIM
        self._reserved += limit
        return EventClaim(limit, self.clock.time() + self.config.lease_seconds)

    async def take(self, claim: EventClaim, events: Sequence[OutboxEvent]) -> None:
        """Give back the slots `claim` held and start sending `events`, the events a settle wrote claimed with it
        (the host gate may still put some back, due when their host has room). Never raises: events it could not
        start are given back to the outbox (if that fails too, they wait for their lease to end, see
        `OutboxStore.release_event_leases`)."""
        self._reserved -= claim.limit
        if not events:
            return
        try:
            if self._loop_task is None:  # stopped since `reserve`: no new sends
                await self._unclaim([event.event_id for event in events])
                return
            admitted, _ = await self._admitted(list(events), self.clock.time())
            self._start(admitted)
        except Exception:
            log.exception("webhook sender: could not start %d event(s) a settle claimed for it", len(events))

    async def run_once(self) -> int:
        """Claim the due events that fit in the free slots and start sending them; returns how many."""
        free = self._free()
        now = self.clock.time()
        if self._give_back:
            back, self._give_back = self._give_back, {}
            await self.store.unclaim_events_due(back)
        if self._hasten:
            hasten, self._hasten = self._hasten, []
            await self.store.hasten_events(hasten, now=now)
        events, next_due = await self.store.claim_and_next_due(
            now=now, limit=free, lease_until=now + self.config.lease_seconds, exclude=list(self._inflight)
        )
        self._drained = len(events) < free
        events, held_until = await self._admitted(events, now)
        # When to look again at the latest: the next due event, or the first one the host gate just put back.
        later = [t for t in (next_due, held_until) if t is not None and t > now]
        self._next_due = min(later) if later else None
        self._start(events)
        return len(events)

    async def drain(self) -> int:
        """Send everything due now and wait for the results, until nothing due is left (tests and tools).

        Returns how many attempts were made. Does not advance any clock: retries scheduled later stay queued.
        """
        made = 0
        while True:
            made += await self.run_once()
            if not self._inflight:
                return made
            await asyncio.wait(set(self._inflight.values()), return_when=asyncio.FIRST_COMPLETED)

    async def settle(self, host: str) -> None:
        """Wait until the sends to `host` (a `destination_of` value) running now have ended: answered, recorded
        and their gate slots released (tests and tools that drive `run_once()` themselves)."""
        sends = [self._inflight[key] for key, (to, _) in self._sends.items() if to == host and key in self._inflight]
        if sends:
            await asyncio.wait(sends)

    # ------------------------------------------------------------------ internals

    def _free(self) -> int:
        """Send slots neither in use nor held: for a settle's events, or by claimed events waiting for their host."""
        return self.config.max_concurrency - len(self._inflight) - self._reserved - self._held_count

    def _start(self, events: Sequence[OutboxEvent]) -> None:
        """Start one shielded send per admitted, claimed event."""
        for event in events:
            send = self._jobs.shield(self._deliver(event), name=f"webhook-{event.event_id}").task
            self._inflight[event.event_id] = send
            send.add_done_callback(functools.partial(self._done, event.event_id))

    async def _admitted(self, events: list[OutboxEvent], now: float) -> tuple[list[OutboxEvent], float | None]:
        """The claimed events the host gate lets through now, and when the first of the others is due: those of a
        proven host at its cap wait here for its next slot (`_held`); the others go back to the outbox due when
        their host has a free slot or its circuit closes (no attempt counted), and the loop claims again at once
        (more due events, for other hosts, may be waiting behind them)."""
        admitted: list[OutboxEvent] = []
        waiting: dict[str, float] = {}  # event id -> when it is due again
        for event in events:
            host = destination_of(event.callback_url)
            until = self.gate.admit(host)
            if until is None:
                self._sends[event.event_id] = (host, time.monotonic())
                admitted.append(event)
            elif self.gate.proven(host):
                self._held.setdefault(host, deque()).append(event)
                self._held_count += 1
            else:
                waiting[event.event_id] = until
                if not self.gate.heard_from(host) and sum(map(len, self._parked.values())) < _PARKED:
                    self._parked.setdefault(host, []).append(event.event_id)
        if waiting:
            await self.store.unclaim_events_due(waiting)  # pending again, each due when its host has room
            self._fresh = True
            self._wakeup.set()
        return admitted, min(waiting.values(), default=None)

    def _done(self, event_id: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(event_id, None)
        host, started = self._sends.pop(event_id, ("?", 0.0))
        answered = event_id in self._answered
        self._answered.discard(event_id)
        self.gate.release(host, answered=answered, seconds=time.monotonic() - started)
        self._next_held(host)
        parked = self._parked.pop(host, None)  # its first send has ended: it answered, or its events keep their turn
        if parked and self.gate.proven(host):
            self._hasten.extend(parked)
            self._fresh = True
        self._wakeup.set()

    def _next_held(self, host: str) -> None:
        """A send of `host` ended: start its next held event; if the gate no longer admits the host (it stopped
        answering), its held events go back to the outbox at the next tick, each due when the gate says."""
        held = self._held.get(host)
        if not held:
            return
        until = self.gate.admit(host) if self._loop_task is not None else self.clock.time()
        if until is None:
            event = held.popleft()
            self._sends[event.event_id] = (host, time.monotonic())
            self._start([event])
            taken = [event]
        else:
            taken = list(held)
            self._give_back.update((event.event_id, until) for event in taken)
            self._fresh = True  # the loop's next tick gives them back
            held.clear()
        self._held_count -= len(taken)
        if not held:
            del self._held[host]

    def _client(self) -> Posts:
        """The injected fetcher, else the sender's own poster (created on first use, in the running loop)."""
        if self._fetcher is not None:
            return self._fetcher
        if self._poster is None:
            self._poster = WebhookPoster(self._policy)
        return self._poster

    async def _run(self) -> None:
        last_claim = float("-inf")
        while True:
            # A send that ends frees a slot; under load, claiming for each one alone would cost one store
            # statement per delivery, so the loop claims once a quarter of the slots is free and the last claim
            # left events due (or at once for new events, when idle, when the next due one is due, and at least
            # every poll_interval). New events come with a wake-up (`_fresh`) or already claimed (`take`).
            free = self._free()
            now = self.clock.time()
            if (
                self._fresh
                or not self._inflight
                or (free >= self._claim_batch and not self._drained)
                or (self._next_due is not None and now >= self._next_due)
                or now - last_claim >= self.config.poll_interval
            ):
                self._fresh = False
                last_claim = now
                try:
                    await self.run_once()
                except Exception:
                    log.exception("webhook sender tick failed")
            # Due events left unclaimed wait for a running send to finish, which wakes the loop.
            pause = self.config.poll_interval
            if self._next_due is not None:
                pause = max(0.0, min(pause, self._next_due - self.clock.time()))
            await self._wait(pause)

    async def _wait(self, seconds: float) -> None:
        """Sleep `seconds` on the clock, or less if `wake()` is called."""
        await sleep_unless(self.clock, seconds, self._wakeup)
        self._wakeup.clear()

    async def _deliver(self, event: OutboxEvent) -> None:
        attempt = event.attempts + 1
        try:
            body = (await self._body_of(event)).encode("utf-8")
        except HoldEvent as hold:
            await self._store.unclaim_events([event.event_id], now=hold.until)
            if hold.still is not None and not await hold.still():  # it ended while the event was claimed
                await self._store.hasten_events([event.event_id], now=self.clock.time())
                self.wake()
            return
        at = self.clock.time()
        headers = delivery_headers(event.event_id, int(at), body, self._key)
        status: int | None = None
        retry_after: float | None = None
        started = time.monotonic()
        try:
            result = await self._client().post(
                event.callback_url, body=body, headers=headers, timeout=self.config.timeout
            )
        except (FetchError, UnsafeURLError) as exc:
            error: str | None = str(exc)
        except Exception as exc:  # a bug must not leave the event claimed until the lease runs out
            log.exception("webhook %s: unexpected error while sending", event.event_id)
            error = f"internal error ({type(exc).__name__})"
        else:
            status = result.status
            error = _describe_status(status, result.body_excerpt)
            if status < 500 and status != 429:
                self._answered.add(event.event_id)
            if error is not None:
                retry_after = parse_retry_after(result.headers.get("Retry-After"), self.clock.time())
        latency_ms = round((time.monotonic() - started) * 1000)
        now = self.clock.time()
        state, next_at = self._plan(event, status, retry_after, now)
        webhook_delivery("retrying" if state is EventState.PENDING else state.value, latency_ms / 1000)
        await self._record(event, attempt, at, status, error, latency_ms, state, next_at)  # runs to its end
        self._log(event, attempt, error, state, next_at, now)

    async def _body_of(self, event: OutboxEvent) -> str:
        """The JSON text to send: `body_hook`'s, else (no hook, or it failed) the stored body."""
        if self.body_hook is None:
            return event.body
        try:
            return await self.body_hook(event)
        except HoldEvent:
            raise
        except Exception:
            log.exception("webhook %s: preparing the body failed; sending the stored one", event.event_id)
            return event.body

    def _plan(
        self, event: OutboxEvent, status: int | None, retry_after: float | None, now: float
    ) -> tuple[EventState, float | None]:
        if status is not None and 200 <= status < 300:
            return EventState.DELIVERED, None
        if status == 410:
            return EventState.STOPPED, None
        delay = retry_delay(self.config.schedule, event.round_attempts + 1, jitter=self.config.jitter, rng=self._rng)
        if delay is None:
            return EventState.EXHAUSTED, None
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.max_retry_after))
        return EventState.PENDING, now + delay

    async def _record(
        self,
        event: OutboxEvent,
        attempt: int,
        at: float,
        status: int | None,
        error: str | None,
        latency_ms: int,
        state: EventState,
        next_at: float | None,
    ) -> None:
        """Record the attempt; attempts finishing while another batch is written share the next transaction."""
        row = Attempt(event.event_id, attempt, at, status, error, latency_ms, next_at)
        await self._recorder.submit(AttemptResult(row, state))

    async def _unclaim(self, event_ids: list[str]) -> None:
        await self.store.unclaim_events(event_ids, now=self.clock.time())

    def _log(
        self, event: OutboxEvent, attempt: int, error: str | None, state: EventState, next_at: float | None, now: float
    ) -> None:
        failed = state is not EventState.DELIVERED and (state is not EventState.PENDING or next_at is None)
        if not log.isEnabledFor(logging.WARNING if failed else logging.INFO):
            return  # the line would be dropped: do not build it (one per send)
        where = f"webhook {event.event_id} (task {event.history_id}) to {_host_of(event.callback_url)}"
        if state is EventState.DELIVERED:
            log.info("%s delivered on attempt %d", where, attempt)
        elif state is EventState.PENDING and next_at is not None:
            log.info("%s: attempt %d failed (%s); next in %.0f s", where, attempt, error, next_at - now)
        else:
            log.warning("%s: attempt %d failed (%s); %s", where, attempt, error, state.value)
