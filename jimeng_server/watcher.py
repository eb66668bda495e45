"""The watcher: the one in-process scheduler that polls every watched in-flight task.

Per account, ONE `get_history_by_ids` call carries up to `batch_size` due history ids (100, the most the
upstream takes); an account whose due backlog needs more runs up to `polls_per_account` calls at once, and a
poll that ends starts the next one at once. Watches wait in one heap per account ordered by due time, so a
tick costs in proportion to the accounts and the tasks due, not the tasks watched.
Completion rules (fixing the reference poller, docs/protocol.md §9.6, §15 and §18):
- 10 and 50 are done; 30 is failed (items that exist are kept on the outcome);
- 20/42/45 and unknown statuses keep waiting (42 and 45 at 1.2x / 1.5x the interval);
- past the kind's deadline (when a sync caller gets its 504) the interval doubles per poll up to
  `slow_interval`; `settle_after` seconds after submit the task is settled as failed (TIMEOUT);
- an id missing from the answer is "not visible yet" for the first `not_visible_polls` polls, then settles
  as failed (NOT_FOUND); a poll refused with ret 1015 re-checks the session (one balance read, logged) and
  retries with back-off: the tasks are settled as failed (SESSION_EXPIRED) only once the refusal has lasted
  `session_refusal_window` (a paid task is not failed on one answer); other poll errors retry;
- every task settled as failed is logged with its reason and detail;
- a finished video takes the watermark-free `video_model` URL of its items (§17.8, §18.4); without one it gets
  its download-quality URL from one `get_local_item_list` call (preview URL on failure).
The outcomes of one poll reach the `on_final` hook together (one store transaction), its changed records the
`on_progress` hook together; both are saved by a task of their own, so the account's poll slot is free
meanwhile. A watch is `keep`
(background: until final) or held only by its waiters (`wait()`), and dropped when the last one leaves.
With replicas, a `leased` watch (a stored background task) is polled and settled only while `may_poll` says
this process holds its account's watch lease; elsewhere it just waits for `complete()`.
Timing (`[watcher] adaptive`): a watch given its `model` is polled when its profile's learned completion
times (polltiming.py, learnt here from the tasks this watcher sees finish, kept in `timings_file`) say it has
probably finished since its last look; an account's poll takes along every watch that has a fair chance of
being final by then, so the due tasks of one account share one call, and no watch is polled twice within
`coalesce` seconds. Unknown profiles (and tasks older than every sample) follow the kind's fixed schedule.
With `use_forecast`, a watch whose last answer (its generate answer, given to `watch()`, then each poll) carries
the upstream's forecast (`forecast_left`) is timed by that forecast instead (`polltiming.choose_look`, same
bounds), whether or not its profile is known.
`upstream_interval` makes a record's `polling_config.interval_seconds` the shortest gap between its polls.
Tests drive it with an injected clock and `run_once()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from . import jsonfast
from .clock import Clock, sleep_unless
from .config import KindSchedule, WatcherConfig
from .jobs import Jobs
from .metrics import timed_poll
from .polltiming import CompletionTimes, choose_look, finish_estimate, profile_of
from .tasks.records import Outcome, Reason, TaskKind, TaskStatus
from .upstream.client import JimengClient
from .upstream.errors import UpstreamError, UpstreamRetError
from .upstream.history import (
    STATUS_SLOWDOWN,
    WAITING_STATUSES,
    HistoryRecord,
    forecast_left,
    local_item_urls,
    parse_record,
    with_high_quality,
)
from .upstream.payloads import history_image_info
from .upstream.tokens import Account

log = logging.getLogger(__name__)

_CROWD_CAP = 10
"""The most watches of one account that scale its poll threshold down (see `_schedule_learned`): beyond this, more
tasks in flight make polls no more frequent, and a poll carries only the tasks with a fair chance of being final."""

_Ending = tuple["_Watch", TaskStatus, Reason, str, "HistoryRecord | None"]
"""A watch to end: its final status, why, a detail for messages, and the record it ends with (None: the last one
seen)."""


@dataclass(frozen=True, slots=True)
class _Seen:
    """The last record a poll returned for a watched task, kept compact (thousands of watches hold one): its
    status, item count and JSON text; `record()` parses it again when a query or an ending needs it."""

    status: int | None
    item_count: int
    text: bytes

    @classmethod
    def of(cls, record: HistoryRecord) -> _Seen:
        return cls(record.status, record.item_count, jsonfast.dumps(record.raw))

    def record(self) -> HistoryRecord:
        return parse_record(jsonfast.loads(self.text))


ProgressHook = Callable[[Sequence[tuple[str, HistoryRecord]]], Awaitable[None]]
"""Called with the changed records of one poll's tasks still running, together: their status, item count and raw
record (parsed with `running_items=False`: their items are not read, so their URLs and ids are empty)."""
FinalHook = Callable[[Sequence[Outcome]], Awaitable[None]]
"""Called with the outcomes of one poll (or of the watches expired together) together."""


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
    seen: _Seen | None = None
    last_error: str = ""
    refused_since: float | None = None  # when polls of its session began to be refused (ret 1015)
    refusals: int = 0  # refused polls in a row (the back-off's exponent)
    entry: int = -1  # the sequence number of its valid heap entries; -1 while polled (or not queued)
    profile: str = ""  # learned-timing key ("image:jimeng-4.5"); "" = the kind's fixed schedule only
    checked: float = 0.0  # seconds after submit of the last look that saw it running (0: none yet)
    advised: float = 0.0  # the upstream's polling_config.interval_seconds from its record (0: none)
    last_poll: float = 0.0  # clock time of its last poll
    forecast: float | None = None  # the upstream's seconds-to-end as of `checked` (its last answer); None: none
    first_forecast: tuple[float, float] | None = None  # (seconds after submit, forecast) of its first forecast


@dataclass(slots=True)
class _Queue:
    """One account's queued watches: a heap by due time (when a watch's own poll is due) and a heap by
    ride-along time (from when it joins a poll of the account); both hold one entry per watch with the same
    sequence number, so an entry taken from either makes the other stale."""

    due: list[tuple[float, int, _Watch]]
    ride: list[tuple[float, int, _Watch]]


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
        timings_path: str | None = None,
        jobs: Jobs | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.clock = clock
        self.on_progress = on_progress
        self.on_final = on_final
        self.may_poll: Callable[[str], bool] | None = None
        """With replicas: whether this process polls the leased tasks of an account (by fingerprint)."""
        self._watches: dict[str, _Watch] = {}
        self._queues: dict[str, _Queue] = {}  # account fingerprint -> its queued watches
        self._load: dict[str, int] = {}  # account fingerprint -> how many watches it has
        self.timings = CompletionTimes(samples=config.learn_samples, min_samples=config.learn_min_samples)
        self.timings_path = timings_path
        """Where learned completion times are kept across restarts (None: not kept)."""
        self._seq = itertools.count()
        self._jobs = jobs or Jobs("watcher")
        """Owns the loop and the polls (spawned: `stop` cancels them) and the saves (shielded: `stop` waits)."""
        self._loop_task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._inflight: dict[str, set[asyncio.Task[None]]] = {}  # account fingerprint -> its polls in flight

    # ------------------------------------------------------------------ public API

    @property
    def pending(self) -> int:
        """How many tasks are being watched."""
        return len(self._watches)

    @property
    def polls_in_flight(self) -> tuple[asyncio.Task[None], ...]:
        """The poll tasks running now (at most `polls_per_account` per account)."""
        return tuple(task for polls in self._inflight.values() for task in polls)

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
        model: str = "",
        forecast: float | None = None,
    ) -> asyncio.Future[Outcome]:
        """Watch a task; returns a future of its Outcome (set once it is final or settled). Watching an id
        twice returns the same future (and makes it `keep` if either call asked for that). `submitted_at`
        (default now) anchors the first poll, the deadline and the settle horizon, so tasks resumed after a
        restart keep them. A watch that is not `keep` lives only while `wait()` callers hold it. `leased`
        (default: `keep`) marks a stored background task, polled only under its account's lease (`may_poll`).
        `model` (the public model name) lets learned completion times time its polls; `forecast` (the generate
        answer's `forecast_left`, seconds from `submitted_at`) times its first poll under `use_forecast`."""
        leased = keep if leased is None else leased
        existing = self._watches.get(history_id)
        if existing is not None:
            existing.keep = existing.keep or keep
            existing.leased = existing.leased or leased
            return existing.future
        start = self.clock.time() if submitted_at is None else submitted_at
        schedule = self.schedule_for(kind)
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        watch = _Watch(
            history_id=history_id,
            account=account,
            kind=kind,
            schedule=schedule,
            started_at=start,
            deadline_at=start + schedule.deadline,
            settle_at=start + max(self.config.settle_after, schedule.deadline),
            next_due=0.0,
            future=fut,
            keep=keep,
            leased=leased,
            profile=profile_of(kind.value, model) if model and self.config.adaptive else "",
            forecast=forecast,
            first_forecast=None if forecast is None else (0.0, forecast),
        )
        self._watches[history_id] = watch
        self._load[account.fingerprint] = self._load.get(account.fingerprint, 0) + 1
        if not self._schedule_learned(watch, self.clock.time()):
            self._schedule(watch, start + schedule.first_poll)
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
            last = watch.seen.record() if watch.seen is not None else None
            return Outcome(history_id, watch.kind, TaskStatus.PROCESSING, Reason.TIMEOUT, last, detail)
        finally:
            sleeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sleeper
            watch.waiters -= 1
            if not watch.keep and watch.waiters == 0 and self._watches.get(history_id) is watch:
                self._forget(watch)
                watch.future.cancel()

    def complete(self, outcome: Outcome) -> None:
        """End a watch with an outcome found elsewhere (a query saw the task final and settled it): its
        waiters get the outcome; the `on_final` hook is not called. Unknown ids: no-op."""
        watch = self._watches.get(outcome.history_id)
        if watch is not None:
            self._forget(watch)
        if watch is not None and not watch.future.done():
            watch.future.set_result(outcome)

    def snapshot(self, history_id: str) -> HistoryRecord | None:
        """The last record seen for a watched task (None if unknown or not yet seen)."""
        watch = self._watches.get(history_id)
        return watch.seen.record() if watch is not None and watch.seen is not None else None

    def due_at(self, history_id: str) -> float | None:
        """When the watched task's next poll is due (None if not watched); far in the past = a stalled loop."""
        watch = self._watches.get(history_id)
        return watch.next_due if watch else None

    async def run_once(self) -> int:
        """One tick, awaited to its end: expire overdue tasks, poll due ones, wait for the polls this tick
        started and for what they learnt to be stored. Returns how many polls it started. Tests drive time
        with it (burst mode: a poll that ends does not start the next one; the next tick does)."""
        polls = self._tick()
        if polls:
            await asyncio.gather(*polls, return_exceptions=True)
        await self._jobs.drain()
        return len(polls)

    async def start(self) -> None:
        """Start the background loop (idempotent)."""
        if self._loop_task is None:
            self._loop_task = self._jobs.spawn(self._run(), name="jimeng-watcher")

    async def stop(self) -> None:
        """Stop the loop and any poll in flight, and wait for them, and for the stores of what earlier polls
        learnt; watches stay registered (their futures stay pending), so a restarted watcher or a new process
        can take them up again."""
        self._loop_task = None
        await self._jobs.stop()
        self._inflight.clear()

    # ------------------------------------------------------------------ internals

    async def _run(self) -> None:
        # The loop never waits for polls: one account's slow upstream (retries and back-off can take
        # minutes) must not hold up the other accounts' polls. It sleeps until the next watch is due (at most
        # `tick`), and a poll that ends wakes it, so an account with a backlog is polled again at once.
        while True:
            try:
                self._tick()
            except Exception:
                log.exception("watcher tick failed")
            pause = self.config.tick
            due = self._next_due()
            if due is not None:
                pause = min(pause, max(self.config.tick / 100, due - self.clock.time()))
            await self._wait(pause)

    def _next_due(self) -> float | None:
        """When the earliest queued watch of an account with a free poll slot is due (a hint: it may have
        ended since), or None."""
        tops = [
            queue.due[0][0]
            for fingerprint, queue in self._queues.items()
            if queue.due and len(self._inflight.get(fingerprint, ())) < self.config.polls_per_account
        ]
        return min(tops, default=None)

    async def _wait(self, seconds: float) -> None:
        """Sleep `seconds` on the clock, or less when a poll ends."""
        await sleep_unless(self.clock, seconds, self._wakeup)
        self._wakeup.clear()

    def _tick(self) -> list[asyncio.Task[None]]:
        """For each account with watches: end those past their settle horizon and start polls for the due
        ones, up to `polls_per_account` in flight. Returns the started polls (owned by the watcher until they
        end). Synchronous: nothing else runs in between, so no lock is needed."""
        now = self.clock.time()
        polls: list[asyncio.Task[None]] = []
        expired: list[_Watch] = []
        for fingerprint in list(self._queues):
            polls.extend(self._start_polls(fingerprint, now, expired))
        if expired:
            self._finish_all([(w, TaskStatus.FAILED, Reason.TIMEOUT, self._timeout_detail(w), None) for w in expired])
        return polls

    def _start_polls(self, fingerprint: str, now: float, expired: list[_Watch]) -> list[asyncio.Task[None]]:
        """Start the polls one account's due watches need now; collect those past their horizon in `expired`."""
        queue = self._queues[fingerprint]
        started: list[asyncio.Task[None]] = []
        while len(self._inflight.get(fingerprint, ())) < self.config.polls_per_account:
            batch = self._take_due(queue, now, expired)
            if not batch:
                break
            poll = self._jobs.spawn(self._poll(batch), name=f"jimeng-poll-{fingerprint[:8]}")
            self._inflight.setdefault(fingerprint, set()).add(poll)
            poll.add_done_callback(functools.partial(self._poll_ended, fingerprint))
            started.append(poll)
        if not queue.due:
            del self._queues[fingerprint]
        return started

    def _take_due(self, queue: _Queue, now: float, expired: list[_Watch]) -> list[_Watch]:
        """The next batch of one account (at most `batch_size`): nothing unless a watch is due; then every
        watch whose ride-along time has come, so tasks due moments apart share one call (see `_schedule`).
        Stale entries (ended watches, rescheduled ones) are dropped on the way."""
        due_heap, ride_heap = queue.due, queue.ride
        while due_heap and self._stale(due_heap[0]):
            heapq.heappop(due_heap)
        if not due_heap or due_heap[0][0] > now:
            return []
        batch: list[_Watch] = []
        while ride_heap and len(batch) < self.config.batch_size:
            ride, _, watch = ride_heap[0]
            if self._stale(ride_heap[0]):
                heapq.heappop(ride_heap)
                continue
            if ride > now:
                break
            heapq.heappop(ride_heap)
            watch.entry = -1
            if now >= watch.settle_at:
                expired.append(watch)
            elif not self._polled_here(watch):  # another replica polls it: look again after an interval
                self._schedule(watch, now + watch.schedule.interval)
            else:
                batch.append(watch)
        while due_heap and self._stale(due_heap[0]):
            heapq.heappop(due_heap)
        return batch

    def _forget(self, watch: _Watch) -> None:
        """Remove an ending watch from the watch list (its queue entries go stale)."""
        del self._watches[watch.history_id]
        fingerprint = watch.account.fingerprint
        left = self._load.get(fingerprint, 1) - 1
        if left > 0:
            self._load[fingerprint] = left
        else:
            self._load.pop(fingerprint, None)

    def _stale(self, entry: tuple[float, int, _Watch]) -> bool:
        _, seq, watch = entry
        return watch.entry != seq or self._watches.get(watch.history_id) is not watch

    def _schedule(self, watch: _Watch, due: float, ride: float | None = None) -> None:
        """Queue a watch for its next poll at `due` (never later than its settle horizon); it rides along
        with the account's polls from `ride` on (default: from `due`, or half an interval earlier once it
        has been polled, so tasks submitted moments apart share one call)."""
        watch.next_due = min(due, watch.settle_at)
        if ride is None:
            ride = watch.next_due - watch.schedule.interval / 2 if watch.polls else watch.next_due
        watch.entry = seq = next(self._seq)
        queue = self._queues.get(watch.account.fingerprint)
        if queue is None:
            queue = self._queues[watch.account.fingerprint] = _Queue([], [])
        heapq.heappush(queue.due, (watch.next_due, seq, watch))
        heapq.heappush(queue.ride, (min(ride, watch.next_due), seq, watch))

    def _schedule_learned(self, watch: _Watch, now: float) -> bool:
        """Queue a watch by the upstream's forecast from its last answer (with `use_forecast`), else by its
        profile's learned completion times (see the module doc); False when neither knows it (the caller falls
        back to the fixed schedule).

        The account's next poll should come when the chance that at least one of its k watches has finished
        since its last look reaches `poll_at`: for k alike watches, when each one's own chance reaches
        1 - (1 - poll_at)^(1/k), k at most `_CROWD_CAP`. So a lone task is looked at once it has probably
        ended, and an account with many tasks is looked at often while they end (every `coalesce` seconds at
        most), one call carrying those that may have ended. A forecast is used the same way: each watch's own
        window (`forecast_slack` either side of its forecast end) in place of the learned distribution.
        A watch already polled is not due again within `coalesce` seconds, nor within a tenth of its age
        shared by the k watches (a lone task that outlives most samples is not looked at every moment), nor
        (with `upstream_interval`) within its record's advised interval. A task older than every sample is
        looked at again after a tenth of its age (between `coalesce` and the kind's interval)."""
        cfg = self.config
        crowd = min(_CROWD_CAP, max(1, self._load.get(watch.account.fingerprint, 1)))
        look = choose_look(
            self.timings,
            watch.profile,
            watch.checked,
            watch.forecast if cfg.adaptive and cfg.use_forecast else None,
            crowd=crowd,
            poll_at=cfg.poll_at,
            ride_along=cfg.ride_along,
            slack=cfg.forecast_slack,
        )
        if look is None:
            if self.timings.known(watch.profile) is None or not watch.polls:
                return False
            age = now - watch.started_at
            gap = max(cfg.coalesce, min(watch.schedule.interval, age / 10))
            look = (age + gap - cfg.coalesce, age + gap)
        earliest = now + max(cfg.coalesce, (now - watch.started_at) / 10 / crowd) if watch.polls else now
        if cfg.upstream_interval and watch.advised:
            earliest = max(earliest, watch.last_poll + watch.advised)
        due = min(max(watch.started_at + look[1], earliest), now + cfg.slow_interval)
        ride = min(watch.started_at + look[0], due - cfg.coalesce)  # due within `coalesce`: ride along
        self._schedule(watch, due, max(ride, earliest) if watch.polls else ride)
        return True

    def _learn(self, watch: _Watch, record: HistoryRecord, now: float) -> None:
        """Add a finished watch's completion time to its profile, and the ratio of that time to its first forecast
        (`learn_forecast`); save the times every so many."""
        if not watch.profile:
            return
        seen = now - watch.started_at
        finished = finish_estimate(record.raw, watch.checked, seen)
        self.timings.learn(watch.profile, finished)
        if watch.first_forecast is not None:
            self.timings.learn_forecast(watch.profile, *watch.first_forecast, finished)
        if self.timings_path and self.timings.learned >= self.config.learn_samples:
            self.timings.learned = 0
            self._save(asyncio.to_thread(self._write_timings, self.timings.dumps()))

    def load_timings(self) -> None:
        """Read the learned completion times kept at `timings_path` (a missing file: nothing learnt yet)."""
        if not self.timings_path:
            return
        try:
            with open(self.timings_path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot read learned completion times (%s); learning again", exc.strerror or exc)
            return
        self.timings.loads(text)

    def save_timings(self) -> None:
        """Write the learned completion times to `timings_path` (atomically; a failure is logged)."""
        if self.timings_path:
            self._write_timings(self.timings.dumps())

    def _write_timings(self, text: str) -> None:
        assert self.timings_path
        tmp = f"{self.timings_path}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, self.timings_path)
        except OSError as exc:
            log.warning("cannot save learned completion times: %s", exc.strerror or exc)

    def _save(self, aw: Coroutine[Any, Any, None]) -> None:
        """Store what a poll learnt in a shielded job of its own (`run_once` and `stop` wait for it)."""
        self._jobs.shield(aw, name="jimeng-watcher-save")

    def _polled_here(self, watch: _Watch) -> bool:
        return not watch.leased or self.may_poll is None or self.may_poll(watch.account.fingerprint)

    def _poll_ended(self, fingerprint: str, task: asyncio.Task[None]) -> None:
        running = self._inflight.get(fingerprint, set())
        running.discard(task)
        if not running:
            self._inflight.pop(fingerprint, None)
        self._wakeup.set()  # a failed poll is logged by its owner (jobs.py)

    async def _poll(self, batch: list[_Watch]) -> None:
        try:
            await self._poll_batch(batch)
        finally:
            for watch in batch:  # a poll cut short (stop, a bug) leaves its watches queued as they were
                if watch.entry == -1 and self._watches.get(watch.history_id) is watch:
                    self._schedule(watch, watch.next_due)

    async def _poll_batch(self, batch: list[_Watch]) -> None:
        account = batch[0].account
        ids = [w.history_id for w in batch]
        image_info = history_image_info() if any(w.kind is TaskKind.IMAGE for w in batch) else None
        try:
            with timed_poll():
                data = await self.client.get_history(account, ids, image_info=image_info)
        except UpstreamRetError as exc:
            if exc.ret == "1015":
                await self._session_refused(batch)
                return
            self._retry_later(batch, f"ret {exc.ret} {exc.errmsg}".strip())
            return
        except UpstreamError as exc:
            self._retry_later(batch, exc.reason)
            return
        now = self.clock.time()
        statuses = self.client.statuses
        ended: list[_Ending] = []
        changed: list[tuple[str, HistoryRecord]] = []
        for watch in batch:
            if self._watches.get(watch.history_id) is not watch:
                continue  # ended while the poll was in flight (settled, completed by a query, dropped)
            watch.polls += 1
            watch.refused_since, watch.refusals = None, 0
            watch.last_poll = now
            raw = data.get(watch.history_id)
            if not isinstance(raw, dict):
                watch.missing += 1
                if watch.seen is None and watch.missing > self.config.not_visible_polls:
                    detail = f"the upstream did not show the task after {watch.missing} polls"
                    ended.append((watch, TaskStatus.FAILED, Reason.NOT_FOUND, detail, None))
                else:
                    self._schedule(watch, now + self._interval(watch, now))
                continue
            record = parse_record(raw, statuses, running_items=False)  # a running record: status and count
            if record.final and watch.kind is TaskKind.VIDEO and record.item_ids and not record.clean_videos:
                record = await self._high_quality(account, record)
            if watch.seen is None or (watch.seen.status, watch.seen.item_count) != (record.status, record.item_count):
                changed.append((watch.history_id, record))
            watch.last_error = ""
            if record.done:
                self._learn(watch, record, now)
                ended.append((watch, TaskStatus.DONE, Reason.DONE, "", record))
            elif record.failed:
                detail = f"fail_code {record.fail_code}"
                ended.append((watch, TaskStatus.FAILED, Reason.UPSTREAM_FAILED, detail, record))
            else:
                watch.seen = _Seen.of(record)
                watch.checked = now - watch.started_at
                watch.advised = _advised_interval(raw) or watch.advised
                watch.forecast = forecast_left(raw)
                if watch.first_forecast is None and watch.forecast is not None:
                    watch.first_forecast = (watch.checked, watch.forecast)
                if record.status not in WAITING_STATUSES:
                    log.warning("task %s has unknown upstream status %s", watch.history_id, record.status)
                if not self._schedule_learned(watch, now):
                    self._schedule(watch, now + self._interval(watch, now))
        if ended:
            self._finish_all(ended)
            gone = {watch.history_id for watch, *_ in ended}
            changed = [(hid, record) for hid, record in changed if hid not in gone]
        if changed and self.on_progress is not None:
            self._save(self._progress(changed))

    async def _progress(self, changed: Sequence[tuple[str, HistoryRecord]]) -> None:
        assert self.on_progress is not None
        try:
            await self.on_progress(changed)
        except Exception:
            log.exception("progress hook failed for %d task(s)", len(changed))

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
        status = watch.seen.status if watch.seen is not None else None
        base = watch.schedule.interval * STATUS_SLOWDOWN.get(status or 0, 1.0)
        if self.config.upstream_interval:
            base = max(base, watch.advised)
        if now < watch.deadline_at:
            return base
        watch.late_polls += 1
        return max(base, min(self.config.slow_interval, base * 2.0**watch.late_polls))

    @staticmethod
    def _timeout_detail(watch: _Watch) -> str:
        detail = f"no final status within {watch.settle_at - watch.started_at:g} s"
        return f"{detail} (last poll error: {watch.last_error})" if watch.last_error else detail

    async def _session_refused(self, batch: list[_Watch]) -> None:
        """A poll refused with ret 1015: re-check the session (one balance read, for the log and the detail),
        settle as failed the watches refused for `session_refusal_window` and retry the others with back-off
        (the interval doubling per refused poll, up to `slow_interval`; the last retry at the window's end).
        One answer never fails a paid task: the upstream answers 1015 for passing reasons too while the
        session is live."""
        account = batch[0].account
        try:
            await self.client.get_credits(account)
            check = "a balance read with the session works"
        except UpstreamError as exc:
            check = f"a balance read with the session failed too ({exc.reason})"
        now = self.clock.time()
        window = self.config.session_refusal_window
        ending: list[_Ending] = []
        waiting = 0
        for watch in batch:
            if self._watches.get(watch.history_id) is not watch:
                continue
            if watch.refused_since is None:
                watch.refused_since = now
            watch.refusals += 1
            watch.last_error = f"ret 1015 ({check})"
            if now - watch.refused_since >= window:
                detail = (
                    f"the upstream refused the session (ret 1015) on every poll for {now - watch.refused_since:g} s"
                )
                ending.append((watch, TaskStatus.FAILED, Reason.SESSION_EXPIRED, f"{detail}; {check}", None))
            else:
                waiting += 1
                backoff = min(self.config.slow_interval, watch.schedule.interval * 2.0**watch.refusals)
                self._schedule(watch, min(now + backoff, watch.refused_since + window))  # a last look at its end
        log.warning(
            "poll for %s refused the session (ret 1015); %s; %d task(s) retried with back-off, %d settled as failed",
            account.masked,
            check,
            waiting,
            len(ending),
        )
        if ending:
            self._finish_all(ending)

    def _retry_later(self, batch: list[_Watch], error: str) -> None:
        now = self.clock.time()
        log.warning("poll of %d task(s) for %s failed: %s", len(batch), batch[0].account.masked, error)
        for watch in batch:
            if self._watches.get(watch.history_id) is watch:
                watch.last_error = error
                self._schedule(watch, now + self._interval(watch, now))

    def _finish_all(self, endings: Sequence[_Ending]) -> None:
        """End these watches now (they leave the watch list at once) and store their outcomes in a task of its
        own: ONE `on_final` call for all of them, then their futures are set."""
        outcomes: list[tuple[_Watch, Outcome]] = []
        for watch, status, reason, detail, record in endings:
            if self._watches.get(watch.history_id) is not watch:
                continue  # already ended (a settle and a poll answer can race)
            self._forget(watch)
            watch.entry = -1
            if status is TaskStatus.FAILED:
                log.warning("task %s settled as failed (%s): %s", watch.history_id, reason.value, detail or "-")
            if record is None and watch.seen is not None:
                record = watch.seen.record()
            outcomes.append((watch, Outcome(watch.history_id, watch.kind, status, reason, record, detail)))
        if outcomes:
            self._save(self._conclude(outcomes))

    async def _conclude(self, outcomes: Sequence[tuple[_Watch, Outcome]]) -> None:
        if self.on_final is not None:
            try:
                await self._jobs.shield(self.on_final([o for _, o in outcomes]), name="jimeng-watcher-final")
            except Exception:
                log.exception("final hook failed for %d task(s)", len(outcomes))
        for watch, outcome in outcomes:
            if not watch.future.done():
                watch.future.set_result(outcome)


def _advised_interval(raw: dict[str, Any]) -> float:
    """The upstream's advised seconds between polls (`queue_info.polling_config.interval_seconds`), else 0."""
    queue = raw.get("queue_info")
    config = queue.get("polling_config") if isinstance(queue, dict) else None
    value = config.get("interval_seconds") if isinstance(config, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 86400:
        return float(value)
    return 0.0
