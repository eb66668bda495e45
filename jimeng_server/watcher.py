"""The watcher: the one in-process scheduler that polls every in-flight task.

Per account and tick, ONE `get_history_by_ids` call carries up to `batch_size` due history ids.
Completion rules (fixing the reference poller, upstream-protocol.md §9.6 and §15):
- 10 and 50 are done; 30 is failed (items that exist are kept on the outcome);
- 20/42/45 and unknown statuses keep waiting (42 and 45 at 1.2x / 1.5x the interval);
- the kind's deadline applies whether or not items exist;
- an id missing from the answer is "not visible yet" for the first `not_visible_polls` polls, then fails;
- a refused session (ret 1015) fails the account's tasks at once; other poll errors retry until the deadline;
- a finished video gets its download-quality URL from one `get_local_item_list` call (preview URL on failure).
Sync endpoints await `watch()`'s future; nothing else runs its own poll loop. Tests drive it with an
injected clock and `run_once()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .clock import Clock
from .config import KindSchedule, WatcherConfig
from .store.models import Outcome, Reason, TaskKind, TaskStatus
from .upstream.client import JimengClient
from .upstream.errors import UpstreamError, UpstreamRetError
from .upstream.history import HistoryRecord, local_item_urls, parse_record, with_high_quality
from .upstream.payloads import history_image_info
from .upstream.tokens import Account

log = logging.getLogger(__name__)


ProgressHook = Callable[[str, HistoryRecord], Awaitable[None]]
FinalHook = Callable[[Outcome], Awaitable[None]]


@dataclass(eq=False)
class _Watch:
    history_id: str
    account: Account
    kind: TaskKind
    schedule: KindSchedule
    deadline_at: float
    next_due: float
    future: asyncio.Future[Outcome]
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
        self._watches: dict[str, _Watch] = {}
        self._lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}  # account fingerprint -> its poll in flight
        self.calls_made = 0

    # ------------------------------------------------------------------ public API

    @property
    def pending(self) -> int:
        """How many tasks are being watched."""
        return len(self._watches)

    def is_watching(self, history_id: str) -> bool:
        return history_id in self._watches

    def schedule_for(self, kind: TaskKind) -> KindSchedule:
        return self.config.video if kind is TaskKind.VIDEO else self.config.image

    def watch(
        self, account: Account, history_id: str, kind: TaskKind, *, submitted_at: float | None = None
    ) -> asyncio.Future[Outcome]:
        """Watch a task until it is final; returns a future of its Outcome. Watching an id twice
        returns the same future. `submitted_at` (default now) anchors the first poll and the deadline,
        so tasks resumed after a restart keep their original deadline."""
        existing = self._watches.get(history_id)
        if existing is not None:
            return existing.future
        start = self.clock.time() if submitted_at is None else submitted_at
        schedule = self.schedule_for(kind)
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._watches[history_id] = _Watch(
            history_id=history_id,
            account=account,
            kind=kind,
            schedule=schedule,
            deadline_at=start + schedule.deadline,
            next_due=start + schedule.first_poll,
            future=fut,
        )
        return fut

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
        """Expire overdue tasks, then start one poll per account that has a due task and no poll in
        flight. Returns the started polls (owned by the watcher until they end)."""
        async with self._lock:
            now = self.clock.time()
            for watch in [w for w in self._watches.values() if now >= w.deadline_at]:
                detail = f"no final status within {watch.schedule.deadline:g} s"
                if watch.last_error:
                    detail += f" (last poll error: {watch.last_error})"
                await self._finish(watch, TaskStatus.FAILED, Reason.TIMEOUT, detail)
            by_account: dict[str, list[_Watch]] = defaultdict(list)
            for watch in self._watches.values():
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
            self.calls_made += len(polls)
            return polls

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
            data = await self.client.get_history(account, ids, image_info=image_info)
        except UpstreamRetError as exc:
            if exc.ret == "1015":
                for watch in list(batch):
                    await self._finish(
                        watch, TaskStatus.FAILED, Reason.SESSION_EXPIRED, "the upstream refused the session (ret 1015)"
                    )
                return
            self._retry_later(batch, f"ret {exc.ret} {exc.errmsg}".strip())
            return
        except UpstreamError as exc:
            self._retry_later(batch, exc.reason)
            return
        now = self.clock.time()
        for watch in batch:
            if self._watches.get(watch.history_id) is not watch:
                continue  # ended while the poll was in flight (deadline)
            watch.polls += 1
            raw = data.get(watch.history_id)
            if not isinstance(raw, dict):
                watch.missing += 1
                if watch.record is None and watch.missing > self.config.not_visible_polls:
                    await self._finish(
                        watch,
                        TaskStatus.FAILED,
                        Reason.NOT_FOUND,
                        f"the upstream did not show the task after {watch.missing} polls",
                    )
                else:
                    watch.next_due = now + watch.schedule.interval
                continue
            record = parse_record(raw)
            if record.final and watch.kind is TaskKind.VIDEO and record.item_ids:
                record = await self._high_quality(account, record)
            changed = watch.record is None or (watch.record.status, watch.record.item_count) != (
                record.status,
                record.item_count,
            )
            watch.record = record
            watch.last_error = ""
            if record.done:
                await self._finish(watch, TaskStatus.DONE, Reason.DONE)
            elif record.failed:
                await self._finish(watch, TaskStatus.FAILED, Reason.UPSTREAM_FAILED, f"fail_code {record.fail_code}")
            else:
                factor = {42: 1.2, 45: 1.5}.get(record.status or 0, 1.0)
                if record.status not in (20, 42, 45):
                    log.warning("task %s has unknown upstream status %s", watch.history_id, record.status)
                watch.next_due = now + watch.schedule.interval * factor
                if changed and self.on_progress is not None:
                    try:
                        await self.on_progress(watch.history_id, record)
                    except Exception:
                        log.exception("progress hook failed for %s", watch.history_id)

    async def _high_quality(self, account: Account, record: HistoryRecord) -> HistoryRecord:
        """A finished video's download-quality URLs: one `get_local_item_list` call (§9.5). Any failure
        keeps the preview URLs of the history record."""
        try:
            data = await self.client.get_local_items(account, list(record.item_ids))
        except UpstreamError as exc:
            log.info("high-quality video URL lookup failed, keeping the preview URL: %s", exc.reason)
            return record
        return with_high_quality(record, local_item_urls(data))

    def _retry_later(self, batch: list[_Watch], error: str) -> None:
        now = self.clock.time()
        log.warning("poll of %d task(s) for %s failed: %s", len(batch), batch[0].account.masked, error)
        for watch in batch:
            watch.last_error = error
            watch.next_due = now + watch.schedule.interval

    async def _finish(self, watch: _Watch, status: TaskStatus, reason: Reason, detail: str = "") -> None:
        if self._watches.get(watch.history_id) is not watch:
            return  # already ended (a deadline and a poll answer can race)
        del self._watches[watch.history_id]
        outcome = Outcome(watch.history_id, watch.kind, status, reason, watch.record, detail)
        if self.on_final is not None:
            try:
                await asyncio.shield(self.on_final(outcome))
            except Exception:
                log.exception("final hook failed for %s", watch.history_id)
        if not watch.future.done():
            watch.future.set_result(outcome)
