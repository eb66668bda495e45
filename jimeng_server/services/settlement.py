"""The one owner of "a task finished": a watcher outcome (or a final record a query saw) becomes the stored
final state and, for a task with a callback URL, its webhook event, in one transaction; then the webhook
sender in this process takes the events the transaction wrote already claimed for it (as many as it has free
slots) and is woken for the rest. Also stores progress of tasks still running.

A task is settled once: the store ignores a second settlement of a final task, so a query and a poll that
both see the end write one state and one event. The event's `data` is built from the same settlement as
the query answer (tasks/answer.py), so the webhook says what the query says.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from ..clock import Clock
from ..concurrency import uncancellable
from ..store.base import Store
from ..store.outbox import NO_CLAIM, EventClaim, OutboxEvent
from ..tasks.answer import settlement_of
from ..tasks.records import Finish, Outcome, Progress, Settled
from ..upstream.history import HistoryRecord
from ..upstream.links import ResultRef
from ..webhooks.events import event_maker

log = logging.getLogger(__name__)

T = TypeVar("T")


class TakesEvents(Protocol):
    """The webhook sender as the settler sees it (`webhooks.sender.WebhookSender`)."""

    def reserve(self, most: int) -> EventClaim:
        """Free slots held for up to `most` events a settle writes already claimed (`take` must follow)."""
        ...

    async def take(self, claim: EventClaim, events: Sequence[OutboxEvent]) -> None:
        """Release `claim` and send `events` (never raises)."""
        ...

    def wake(self) -> None:
        """Look for due events now."""
        ...


class TaskSettler:
    """Writes what the watcher (or a query) learns about tasks. `sender`, when given, takes the events a settle
    writes: those it has room for claimed by the settle's own transaction and started at once, the others (and all
    of them when it sends elsewhere) by a wake-up. `drain()` waits for the writes in flight (before the store
    closes)."""

    def __init__(self, store: Store, clock: Clock, *, sender: TakesEvents | None = None) -> None:
        self.store = store
        self.clock = clock
        self.sender = sender
        # Set by the app (`services/result_links.py`): what a finished outcome's results are re-signed from (None:
        # nothing), stored in the settle's own transaction; and called after a settle with its outcomes and the ids
        # it made final (their keep jobs). Their failures are logged, never raised.
        self.result_refs: Callable[[Outcome], tuple[ResultRef | None, ...] | None] | None = None
        self.after_settle: Callable[[Sequence[Outcome], set[str]], Awaitable[None]] | None = None
        # Set by the app (`services/task_costs.py`): told the ids just made final, to measure their estimated costs
        # from the upstream's spending records in the background (it must not block or raise).
        self.after_costs: Callable[[list[str]], None] | None = None
        self._writes = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def settle(self, outcomes: Sequence[Outcome]) -> None:
        """Make these tasks final (those still processing), with their events, in ONE transaction, then record
        their results (`after_settle`) and hand the events to the sender. The watcher's `on_final` hook. The whole
        runs to its end even if the caller is cancelled (a claimed event is always handed over)."""
        now = self.clock.time()
        finishes = []
        for outcome in outcomes:
            settlement = settlement_of(outcome)
            # A post-edit's event names its source task, as its query does, and carries the stored cost (recorded
            # at submit) as the query does: the settle's transaction reads both and makes the event.
            event = event_maker(outcome.history_id, outcome.kind.value, settlement, now)
            finishes.append(Finish(outcome.history_id, settlement, event, self._refs(outcome)))
        settled = await self._write(self._settle(outcomes, finishes))
        if self.after_costs is not None and settled:
            self.after_costs([item.history_id for item in settled])

    async def _settle(self, outcomes: Sequence[Outcome], finishes: list[Finish]) -> list[Settled]:
        """The settle's transaction, then `after_settle` (keep jobs: before any send, which may have to wait for
        them), then the hand-over of the events it claimed to the sender and a wake-up for the rest."""
        sender = self.sender
        claim = sender.reserve(len(finishes)) if sender is not None else NO_CLAIM
        claimed: list[OutboxEvent] = []
        try:
            settled, claimed = await self.store.settle_claiming(finishes, claim)
            if self.after_settle is not None and settled:
                try:
                    await self.after_settle(outcomes, {item.history_id for item in settled})
                except Exception:
                    log.exception("after settling %d task(s): recording their results failed", len(settled))
        finally:
            if sender is not None:
                await sender.take(claim, claimed)
        written = 0
        for item in settled:
            if item.event_written:
                written += 1
                log.info("task %s settled; webhook event queued", item.history_id)
        if written > len(claimed) and sender is not None:
            sender.wake()
        return settled

    def _refs(self, outcome: Outcome) -> tuple[ResultRef | None, ...] | None:
        """The `result_refs` hook's answer for `outcome`; None (logged) when it fails: the task settles without
        them (a re-sign reads them from the stored record)."""
        if self.result_refs is None:
            return None
        try:
            return self.result_refs(outcome)
        except Exception:
            log.exception("task %s: what its results are re-signed from could not be read", outcome.history_id)
            return None

    async def progress(self, records: Sequence[tuple[str, HistoryRecord]]) -> None:
        """Store changed records of tasks still running, in one transaction. The watcher's `on_progress` hook."""
        updates = [Progress(hid, record.status or 0, record.item_count, record.raw) for hid, record in records]
        await self._write(self.store.update_progress(updates))

    async def drain(self) -> None:
        """Return once no write is in flight."""
        await self._idle.wait()

    async def _write(self, aw: Awaitable[T]) -> T:
        """Run a store write to its end even if the caller is cancelled, counted for `drain()`."""
        self._writes += 1
        self._idle.clear()
        try:
            return await uncancellable(aw)
        finally:
            self._writes -= 1
            if self._writes == 0:
                self._idle.set()
