"""The watcher: the one in-process scheduler that polls every watched in-flight task.

Per account and tick, ONE `get_history_by_ids` call carries up to `batch_size` due history ids.
Completion rules (fixing the reference poller, upstream-protocol.md §9.6, §15 and §18):
- 10 and 50 are done; 30 is failed (items that exist are kept on the outcome);
- 20/42/45 and unknown statuses keep waiting (42 and 45 at 1.2x / 1.5x the interval);
- past the kind's deadline (when a sync caller gets its 504) the interval doubles per poll up to
  `slow_interval`; `settle_after` seconds after submit the task is settled as failed (TIMEOUT);
- an id missing from the answer is "not visible yet" for the first `not_visible_polls` polls, then settles
  as failed (NOT_FOUND); a refused session (ret 1015) settles the account's tasks (SESSION_EXPIRED); other
  poll errors retry;
- a finished video takes the watermark-free `video_model` URL of its items (§17.8, §18.4); without one it gets
  its download-quality URL from one `get_local_item_list` call (preview URL on failure).
The outcomes of one poll reach the `on_final` hook together (one store transaction). A watch is `keep`
(background: until final) or held only by its waiters (`wait()`), and dropped when the last one leaves.
With replicas, a `leased` watch (a stored background task) is polled and settled only while `may_poll` says
this process holds its account's watch lease; elsewhere it just waits for `complete()`.
Tests drive it with an injected clock and `run_once()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .clock import Clock
from .config import KindSchedule, WatcherConfig
from .metrics import timed_poll
from .store.models import Outcome, Reason, TaskKind, TaskStatus
from .upstream.client import JimengClient
from .upstream.errors import UpstreamError, UpstreamRetError
from .upstream.history import (
    STATUS_SLOWDOWN,
    WAITING_STATUSES,
    HistoryRecord,
    local_item_urls,
    parse_record,
    with_high_quality,
)
from .upstream.payloads import history_image_info
from .upstream.tokens import Account

log = logging.getLogger(__name__)

_Ending = tuple["_Watch", TaskStatus, Reason, str]
"""A watch to end: its final status, why, and a detail for messages."""


ProgressHook = Callable[[str, HistoryRecord], Awaitable[None]]
FinalHook = Callable[[Sequence[Outcome]], Awaitable[None]]
"""Called with the outcomes of one poll (or one tick's settlements) together."""


@dataclass(eq=False)
class _Watch:
    history_id: str
    account: Account
    kind: TaskKind
    schedule: KindSchedule
    started_at: float
    deadline_at: float
    settle_at: float
    next_due: float
    future: asyncio.Future[Outcome]
    keep: bool
    leased: bool
    waiters: int = 0
    late_polls: int = 0
    polls: int = 0
    missing: int = 0
    record: HistoryRecord | None = None
    last_error: str = ""


class Watcher:
    """Owns every in-flight watch. Start with `start()`, stop with `stop()` (a cleanup context does both)."""

    def __init__(
        self,
        client: JimengClient,
        config: WatcherConfig,
        clock: Clock,
        *,
        on_progress: ProgressHook | None = None,
        on_final: FinalHook | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.clock = clock
        self.on_progress = on_progress
        self.on_final = on_final
        self.may_poll: Callable[[str], bool] | None = None
        """With replicas: whether this process polls the leased tasks of an account (by fingerprint)."""
        self._watches: dict[str, _Watch] = {}
        self._lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}  # account fingerprint -> its poll in flight

    # ------------------------------------------------------------------ public API

    @property
    def pending(self) -> int:
        """How many tasks are being watched."""
        return len(self._watches)

    @property
    def polls_in_flight(self) -> tuple[asyncio.Task[None], ...]:
        """The poll tasks running now (at most one per account)."""
        return tuple(self._inflight.values())

    @property
    def running(self) -> bool:
        """True while the background loop runs (started and not stopped or crashed)."""
        return self._loop_task is not None and not self._loop_task.done()

    def is_watching(self, history_id: str) -> bool:
        return history_id in self._watches

    def polled_elsewhere(self, history_id: str) -> bool:
        """True for a leased watch this process does not poll now (another replica holds its lease)."""
        watch = self._watches.get(history_id)
        return watch is not None and not self._polled_here(watch)

    def waiting_elsewhere(self) -> list[str]:
        """Ids of the leased watches this process does not poll now (another replica settles them)."""
        return [w.history_id for w in self._watches.values() if not self._polled_here(w)]

    def schedule_for(self, kind: TaskKind) -> KindSchedule:
        return self.config.video if kind is TaskKind.VIDEO else self.config.image

    def watch(
        self,
        account: Account,
        history_id: str,
        kind: TaskKind,
        *,
        submitted_at: float | None = None,
        keep: bool = True,
        leased: bool | None = None,
    ) -> asyncio.Future[Outcome]:
        """Watch a task; returns a future of its Outcome (set once it is final or settled). Watching an id
        twice returns the same future (and makes it `keep` if either call asked for that). `submitted_at`
        (default now) anchors the first poll, the deadline and the settle horizon, so tasks resumed after a
        restart keep them. A watch that is not `keep` lives only while `wait()` callers hold it. `leased`
        (default: `keep`) marks a stored background task, polled only under its account's lease (`may_poll`)."""
        leased = keep if leased is None else leased
        existing = self._watches.get(history_id)
        if existing is not None:
            existing.keep = existing.keep or keep
            existing.leased = existing.leased or leased
            return existing.future
        start = self.clock.time() if submitted_at is None else submitted_at
        schedule = self.schedule_for(kind)
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._watches[history_id] = _Watch(
            history_id=history_id,
            account=account,
            kind=kind,
            schedule=schedule,
            started_at=start,
            deadline_at=start + schedule.deadline,
            settle_at=start + max(self.config.settle_after, schedule.deadline),
            next_due=start + schedule.first_poll,
            future=fut,
            keep=keep,
            leased=leased,
        )
        return fut

    async def wait(self, history_id: str, seconds: float) -> Outcome | None:
        """Await a watched task's outcome for at most `seconds` on the clock. When time runs out first: an
        Outcome with status PROCESSING, reason TIMEOUT and the last record seen. None if the id is not
        watched. The last waiter to leave a watch that is not `keep` drops it (the task is not settled)."""
        watch = self._watches.get(history_id)
        if watch is None:
            return None
        watch.waiters += 1
        sleeper = asyncio.ensure_future(self.clock.sleep(max(0.0, seconds)))
        try:
            waiters: set[asyncio.Future[Any]] = {watch.future, sleeper}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if watch.future.done() and not watch.future.cancelled():
                return watch.future.result()
            detail = f"no final status within {seconds:g} s"
            return Outcome(history_id, watch.kind, TaskStatus.PROCESSING, Reason.TIMEOUT, watch.record, detail)
        finally:
            sleeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sleeper
            watch.waiters -= 1
            if not watch.keep and watch.waiters == 0 and self._watches.get(history_id) is watch:
                del self._watches[history_id]
                watch.future.cancel()

    def complete(self, outcome: Outcome) -> None:
        """End a watch with an outcome found elsewhere (a query saw the task final and settled it): its
        waiters get the outcome; the `on_final` hook is not called. Unknown ids: no-op."""
        watch = self._watches.pop(outcome.history_id, None)
        if watch is not None and not watch.future.done():
            watch.future.set_result(outcome)

    def snapshot(self, history_id: str) -> HistoryRecord | None:
        """The last record seen for a watched task (None if unknown or not yet seen)."""
        watch = self._watches.get(history_id)
        return watch.record if watch else None

    def due_at(self, history_id: str) -> float | None:
        """When the watched task's next poll is due (None if not watched); far in the past = a stalled loop."""
        watch = self._watches.get(history_id)
        return watch.next_due if watch else None

    async def run_once(self) -> int:
        """One tick, awaited to its end: expire overdue tasks, poll due ones (one call per account), and
        wait for the polls this tick started. Returns how many polls it started. Tests drive time with it."""
        polls = await self._tick()
        if polls:
            await asyncio.gather(*polls, return_exceptions=True)
        return len(polls)

    async def start(self) -> None:
        """Start the background loop (idempotent)."""
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._run(), name="jimeng-watcher")

    async def stop(self) -> None:
        """Stop the loop and any poll in flight, and wait for them; watches stay registered (their
        futures stay pending), so a restarted watcher or a new process can take them up again."""
        task, self._loop_task = self._loop_task, None
        pending = [t for t in (task, *self._inflight.values()) if t is not None]
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._inflight.clear()

    # ------------------------------------------------------------------ internals

    async def _run(self) -> None:
        # The loop never waits for polls: one account's slow upstream (retries and back-off can take
        # minutes) must not hold up the other accounts' polls. An account has at most one poll in flight.
        while True:
            try:
                await self._tick()
            except Exception:
                log.exception("watcher tick failed")
            await self.clock.sleep(self.config.tick)

    async def _tick(self) -> list[asyncio.Task[None]]:
        """Settle tasks past their horizon, then start one poll per account that has a due task and no poll in
        flight. Returns the started polls (owned by the watcher until they end)."""
        async with self._lock:
            now = self.clock.time()
            here = [w for w in self._watches.values() if self._polled_here(w)]
            expired = [w for w in here if now >= w.settle_at]
            if expired:
                await self._finish_all(
                    [(w, TaskStatus.FAILED, Reason.TIMEOUT, self._timeout_detail(w)) for w in expired]
                )
            by_account: dict[str, list[_Watch]] = defaultdict(list)
            for watch in here:
                if self._watches.get(watch.history_id) is watch:  # not ended by the expiry above
                    by_account[watch.account.fingerprint].append(watch)
            polls: list[asyncio.Task[None]] = []
            for fingerprint, group in by_account.items():
                if fingerprint in self._inflight or not any(w.next_due <= now for w in group):
                    continue
                # Already-seen tasks due within half an interval ride along, so tasks submitted moments
                # apart fall into one batch (about one call per account and interval).
                riders = [
                    w for w in group if w.next_due <= now or (w.polls and w.next_due <= now + w.schedule.interval / 2)
                ]
                batch = sorted(riders, key=lambda w: w.next_due)[: self.config.batch_size]
                poll = asyncio.create_task(self._poll(batch), name=f"jimeng-poll-{fingerprint[:8]}")
                self._inflight[fingerprint] = poll
                poll.add_done_callback(functools.partial(self._poll_ended, fingerprint))
                polls.append(poll)
            return polls

    def _polled_here(self, watch: _Watch) -> bool:
        return not watch.leased or self.may_poll is None or self.may_poll(watch.account.fingerprint)

    def _poll_ended(self, fingerprint: str, task: asyncio.Task[None]) -> None:
        if self._inflight.get(fingerprint) is task:
            del self._inflight[fingerprint]
        if not task.cancelled() and task.exception() is not None:
            log.error("poll task failed", exc_info=task.exception())

    async def _poll(self, batch: list[_Watch]) -> None:
        account = batch[0].account
        ids = [w.history_id for w in batch]
        image_info = history_image_info() if any(w.kind is TaskKind.IMAGE for w in batch) else None
        try:
            with timed_poll():
                data = await self.client.get_history(account, ids, image_info=image_info)
        except UpstreamRetError as exc:
            if exc.ret == "1015":
                detail = "the upstream refused the session (ret 1015)"
                await self._finish_all([(w, TaskStatus.FAILED, Reason.SESSION_EXPIRED, detail) for w in batch])
                return
            self._retry_later(batch, f"ret {exc.ret} {exc.errmsg}".strip())
            return
        except UpstreamError as exc:
            self._retry_later(batch, exc.reason)
            return
        now = self.clock.time()
        ended: list[_Ending] = []
        for watch in batch:
            if self._watches.get(watch.history_id) is not watch:
                continue  # ended while the poll was in flight (settled, completed by a query, dropped)
            watch.polls += 1
            raw = data.get(watch.history_id)
            if not isinstance(raw, dict):
                watch.missing += 1
                if watch.record is None and watch.missing > self.config.not_visible_polls:
                    detail = f"the upstream did not show the task after {watch.missing} polls"
                    ended.append((watch, TaskStatus.FAILED, Reason.NOT_FOUND, detail))
                else:
                    watch.next_due = now + self._interval(watch, now)
                continue
            record = parse_record(raw)
            if record.final and watch.kind is TaskKind.VIDEO and record.item_ids and not record.clean_videos:
                record = await self._high_quality(account, record)
            changed = watch.record is None or (watch.record.status, watch.record.item_count) != (
                record.status,
                record.item_count,
            )
            watch.record = record
            watch.last_error = ""
            if record.done:
                ended.append((watch, TaskStatus.DONE, Reason.DONE, ""))
            elif record.failed:
                ended.append((watch, TaskStatus.FAILED, Reason.UPSTREAM_FAILED, f"fail_code {record.fail_code}"))
            else:
                if record.status not in WAITING_STATUSES:
                    log.warning("task %s has unknown upstream status %s", watch.history_id, record.status)
                watch.next_due = now + self._interval(watch, now)
                if changed and self.on_progress is not None:
                    try:
                        await self.on_progress(watch.history_id, record)
                    except Exception:
                        log.exception("progress hook failed for %s", watch.history_id)
        if ended:
            await self._finish_all(ended)

    async def _high_quality(self, account: Account, record: HistoryRecord) -> HistoryRecord:
        """A finished video's download-quality URLs: one `get_local_item_list` call (§9.5). Any failure
        keeps the preview URLs of the history record."""
        try:
            data = await self.client.get_local_items(account, list(record.item_ids))
        except UpstreamError as exc:
            log.info("high-quality video URL lookup failed, keeping the preview URL: %s", exc.reason)
            return record
        return with_high_quality(record, local_item_urls(data))

    def _interval(self, watch: _Watch, now: float) -> float:
        """The wait before the next poll: the kind's interval (slower at statuses 42/45), doubling with each
        poll once past the kind's deadline, up to `slow_interval`."""
        status = watch.record.status if watch.record is not None else None
        base = watch.schedule.interval * STATUS_SLOWDOWN.get(status or 0, 1.0)
        if now < watch.deadline_at:
            return base
        watch.late_polls += 1
        return max(base, min(self.config.slow_interval, base * 2.0**watch.late_polls))

    @staticmethod
    def _timeout_detail(watch: _Watch) -> str:
        detail = f"no final status within {watch.settle_at - watch.started_at:g} s"
        return f"{detail} (last poll error: {watch.last_error})" if watch.last_error else detail

    def _retry_later(self, batch: list[_Watch], error: str) -> None:
        now = self.clock.time()
        log.warning("poll of %d task(s) for %s failed: %s", len(batch), batch[0].account.masked, error)
        for watch in batch:
            watch.last_error = error
            watch.next_due = now + self._interval(watch, now)

    async def _finish_all(self, endings: Sequence[_Ending]) -> None:
        """End these watches: ONE `on_final` call for all their outcomes, then their futures."""
        outcomes: list[tuple[_Watch, Outcome]] = []
        for watch, status, reason, detail in endings:
            if self._watches.get(watch.history_id) is not watch:
                continue  # already ended (a settle and a poll answer can race)
            del self._watches[watch.history_id]
            outcomes.append((watch, Outcome(watch.history_id, watch.kind, status, reason, watch.record, detail)))
        if not outcomes:
            return
        if self.on_final is not None:
            try:
                await asyncio.shield(self.on_final([o for _, o in outcomes]))
            except Exception:
                log.exception("final hook failed for %d task(s)", len(outcomes))
        for watch, outcome in outcomes:
            if not watch.future.done():
                watch.future.set_result(outcome)
