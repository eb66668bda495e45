"""Turning a task's estimated cost into a measured one (issue 20 item 8, upstream-protocol §19.10).

A pooled task gets an `estimated` cost when its submit is accepted (the balance drop the pool measured, else
the known price: `TaskIntake.record_spent`). Spending records settle late, so once a task is final this service
reads `user_credit_history` of the account that paid and, when the record of the task's `submit_id` is there,
stores its amount as the `measured` cost (final: tasks/cost.py). It is told the ids to look at by the settler
(every task made final) and by queries (a final task still estimated).

Bounds: ONE owned background task does the reading, so at most one read per account is in flight (in fact one
at all); a task is looked at again no sooner than `retry_seconds` after the previous look, so repeated queries
never make a hot loop; at most `pages` pages are read per account and pass. A failed read leaves the estimate
(it is logged). Raw-token tasks keep their estimate: their session is not kept once they are final.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

from ..clock import Clock
from ..concurrency import uncancellable
from ..jobs import Jobs
from ..store.base import Store
from ..tasks.cost import CostSource, TaskCost
from ..upstream.errors import UpstreamError
from ..upstream.spending import SpendPage
from ..upstream.tokens import Account
from .answers import AnswerCache
from .callers import ResolveAccount

log = logging.getLogger(__name__)

ReadSpending = Callable[[Account, str], Awaitable[SpendPage]]
"""One page of an account's spending records from a cursor (`JimengClient.get_credit_history`)."""

_MAX_REMEMBERED = 4096  # tasks whose last look is remembered (older looks are forgotten beyond this)


class CostReconciler:
    """Measures estimated task costs from the upstream's spending records, in one owned background task.

    `notice(ids)` asks for a look (cheap, never blocks); `drain()` waits until nothing is pending or being
    read; `close()` stops the work (at app shutdown). `answers`: cached query answers to drop when a task's
    cost changes, so the next query carries the measurement."""

    def __init__(
        self,
        store: Store,
        read: ReadSpending,
        resolve_account: ResolveAccount,
        clock: Clock,
        *,
        answers: AnswerCache | None = None,
        retry_seconds: float = 60.0,
        pages: int = 3,
        jobs: Jobs | None = None,
    ) -> None:
        self.store = store
        self.read = read
        self.resolve_account = resolve_account
        self.clock = clock
        self.answers = answers
        self.retry_seconds = retry_seconds
        self.pages = pages
        self._pending: set[str] = set()
        self._looked: dict[str, float] = {}  # history id -> when it was last looked at (insertion ordered)
        self._jobs = jobs or Jobs("task-costs")
        self._runner: asyncio.Task[None] | None = None
        self._closed = False

    def notice(self, history_ids: Sequence[str]) -> None:
        """Look at these tasks soon (those final, pooled and still estimated; each no sooner than
        `retry_seconds` after its previous look)."""
        if self._closed:
            return
        now = self.clock.time()
        fresh = [hid for hid in history_ids if now - self._looked.get(hid, -self.retry_seconds) >= self.retry_seconds]
        if not fresh:
            return
        self._pending.update(fresh)
        if self._runner is None or self._runner.done():
            self._runner = self._jobs.spawn(self._run(), name="task-costs")

    async def drain(self) -> None:
        """Return once nothing is pending and no read is in flight."""
        while self._runner is not None and not self._runner.done():
            await asyncio.shield(self._runner)

    async def close(self) -> None:
        """Stop: pending looks are dropped (the estimates stay; a later query asks again)."""
        self._closed = True
        self._runner = None
        await self._jobs.stop()

    async def _run(self) -> None:
        """Take the pending ids batch by batch until none is left (new notices during a pass join the next)."""
        while self._pending:
            batch, self._pending = sorted(self._pending), set()
            try:
                await self.run_once(batch)
            except Exception:
                log.exception("measuring the cost of %d task(s) failed; their estimates stay", len(batch))

    async def run_once(self, history_ids: Sequence[str]) -> int:
        """Look at these tasks now: one pass, the pages of each paying account read in turn. Returns how many
        costs became measured."""
        now = self.clock.time()
        for hid in history_ids:
            self._looked.pop(hid, None)
            self._looked[hid] = now
        while len(self._looked) > _MAX_REMEMBERED:
            del self._looked[next(iter(self._looked))]
        by_account: dict[int, dict[str, str]] = defaultdict(dict)  # account -> submit_id -> history_id
        for hid, account_id, submit_id in await self.store.estimated_pool_costs(list(history_ids)):
            by_account[account_id][submit_id] = hid
        measured = 0
        for account_id, group in by_account.items():
            measured += await self._measure(account_id, group)
        return measured

    async def _measure(self, account_id: int, wanted: dict[str, str]) -> int:
        """Read the account's newest spending pages until every wanted submit_id (-> its history id) is found
        (or `pages` pages, or no more); store what was found as measured. A failed read ends this account's
        pass."""
        account = await self.resolve_account(account_id)
        if account is None:
            return 0
        found: dict[str, int] = {}
        cursor = "0"
        try:
            for _ in range(self.pages):
                page = await self.read(account, cursor)
                for submit_id in wanted.keys() - found.keys():
                    record = page.by_submit_id(submit_id)
                    if record is not None:
                        found[submit_id] = record.amount
                if found.keys() >= wanted.keys() or not page.has_more:
                    break
                cursor = page.next_cursor
        except UpstreamError as exc:
            log.warning("spending records of pool account %d not read (%s); the estimates stay", account_id, exc)
        measured = 0
        for submit_id, amount in found.items():
            hid = wanted[submit_id]
            if await uncancellable(self.store.record_cost(hid, TaskCost(max(0, amount), CostSource.MEASURED))):
                measured += 1
                self._looked.pop(hid, None)
                if self.answers is not None:
                    self.answers.forget(hid)
        return measured
