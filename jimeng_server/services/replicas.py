"""This process's part when several replicas share one PostgreSQL store.

- Watch leases: background tasks are divided by account into `WATCH_SHARDS` shards; every `lease/3`
  seconds `Replicas` renews this replica's shard leases and takes its fair share of free or expired ones
  (`ReplicaStore.renew_watch_leases`). The watcher polls and settles a stored background task only while
  `may_poll` holds for its account: the shard is held and the lease still has a third of its time left, so
  a replica that cannot renew stops polling before anyone else may take the shard over. A dead replica's
  shards are taken over once its leases end (within one lease time).
- Adoption: on a NEW_TASK notice and on every renewal, the stored background tasks not watched here yet are
  watched (`adopt`: `TaskIntake.resume`, raw-token and pool tasks alike), so every replica knows every
  background task; the watcher polls only those whose lease it holds.
- Notices: SETTLED completes the local watch of a task another replica settled (sync and `?wait=` waiters
  answer from the stored final state); EVENTS wakes the webhook sender.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

from ..clock import Clock, sleep_unless
from ..jobs import Jobs
from ..store.base import Notice, NoticeKind, ReplicaStore, Store, shard_of
from ..tasks.answer import outcome_of_row
from ..watcher import Watcher
from ..webhooks.sender import WebhookSender

log = logging.getLogger(__name__)


class Replicas:
    """Watch leases and notices of one replica. `start()` listens, takes leases and adopts the stored tasks;
    `stop()` stops the watcher, then gives every lease up so the others take over at once."""

    def __init__(
        self,
        leases: ReplicaStore,
        store: Store,
        watcher: Watcher,
        adopt: Callable[[], Awaitable[int]],
        sender: WebhookSender,
        clock: Clock,
        *,
        lease_seconds: float,
        owner: str | None = None,
        jobs: Jobs | None = None,
    ) -> None:
        self._leases = leases
        self._store = store
        self._watcher = watcher
        self._adopt_stored = adopt
        self._sender = sender
        self._clock = clock
        self.lease_seconds = lease_seconds
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held: frozenset[int] = frozenset()
        self._valid_until = 0.0
        self._adopt = asyncio.Event()
        self._settled: set[str] = set()
        self._settled_ready = asyncio.Event()
        self._jobs = jobs or Jobs("replicas")
        watcher.may_poll = self.may_poll

    @property
    def shards(self) -> frozenset[int]:
        """The shards whose leases this replica holds."""
        return self._held

    def may_poll(self, account_fp: str) -> bool:
        """True while this replica holds the account's shard with at least a third of the lease left."""
        margin = self.lease_seconds / 3
        return shard_of(account_fp) in self._held and self._clock.time() < self._valid_until - margin

    async def start(self) -> None:
        """Listen for notices, take the first leases and adopt their tasks, then keep renewing."""
        await self._leases.listen(self._on_notice)
        await self.renew()
        self._jobs.spawn(self._renew_loop(), name="jimeng-replica-leases")
        self._jobs.spawn(self._settled_loop(), name="jimeng-replica-settled")

    async def stop(self) -> None:
        """Stop polling, stop the loops, give the leases up and stop listening."""
        await self._watcher.stop()
        await self._jobs.stop()
        self._held = frozenset()
        try:
            await self._leases.release_watch_leases(self.owner)
        except Exception:
            log.exception("replica %s: could not release its watch leases (they expire by themselves)", self.owner)
        await self._leases.unlisten()

    async def renew(self) -> None:
        """One renewal: renew and rebalance the leases, then watch the stored tasks not watched yet."""
        if not self._leases.listening:
            log.warning("replica %s: listening for notices again (the connection was lost)", self.owner)
            await self._leases.listen(self._on_notice)
        started = self._clock.time()
        self._adopt.clear()  # this renewal adopts every stored task anyway
        held = await self._leases.renew_watch_leases(self.owner, now=started, lease_seconds=self.lease_seconds)
        gained, lost = held - self._held, self._held - held
        self._held, self._valid_until = held, started + self.lease_seconds
        if gained or lost:
            log.info("replica %s: holds %d watch shard(s) (+%d -%d)", self.owner, len(held), len(gained), len(lost))
        await self._adopt_stored()
        await self._complete_settled(self._watcher.waiting_elsewhere())

    # ------------------------------------------------------------------ internals

    def _on_notice(self, notice: Notice) -> None:
        if notice.kind is NoticeKind.EVENTS:
            self._sender.wake()
        elif notice.kind is NoticeKind.NEW_TASK:
            self._adopt.set()
        elif self._watcher.is_watching(notice.history_id):
            self._settled.add(notice.history_id)
            self._settled_ready.set()

    async def _renew_loop(self) -> None:
        while True:
            due = self._valid_until - self.lease_seconds * 2 / 3  # a third of the lease after the last renewal
            await self._pause(max(0.0, due - self._clock.time()))
            try:
                if self._clock.time() >= due:
                    await self.renew()
                else:  # a task stored elsewhere: adopt it now, renew on schedule
                    self._adopt.clear()
                    await self._adopt_stored()
            except Exception:
                log.exception("replica %s: watch lease renewal failed", self.owner)
                await self._pause(min(1.0, self.lease_seconds / 10))  # no busy loop while the database is away

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds` on the clock, or less when a NEW_TASK notice arrives."""
        await sleep_unless(self._clock, seconds, self._adopt)

    async def _settled_loop(self) -> None:
        while True:
            await self._settled_ready.wait()
            self._settled_ready.clear()
            ids, self._settled = list(self._settled), set()
            try:
                await self._complete_settled(ids)
            except Exception:
                log.exception("replica %s: could not answer waiters of %d settled task(s)", self.owner, len(ids))

    async def _complete_settled(self, history_ids: list[str]) -> None:
        """Complete the local watches of these tasks that are final in the store (settled elsewhere)."""
        if not history_ids:
            return
        for row in (await self._store.get_many(history_ids)).values():
            if row.final:
                self._watcher.complete(outcome_of_row(row))
