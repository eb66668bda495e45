"""The task service: every accepted submit is recorded and watched; the watcher's findings are stored;
task queries are answered with owner routing (design.md §2–3, async-api-spec.zh.md).

Query rules:
- a task submitted here is asked about with the account that submitted it, whichever position its token
  has in the header; a task of an account not in the header is "not found" (nothing about it is shown);
- a final task is answered from the store; a task the watcher is polling is answered from its latest
  poll; any other is asked upstream (one `get_history_by_ids` per owning account for many ids);
- an id this server does not know is looked up with each header token in turn (one call per token, until
  found); it is answered from the upstream record, its type inferred, and it is not stored or watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypedDict, TypeVar

from ..clock import Clock
from ..concurrency import uncancellable
from ..config import StoreConfig, WatcherConfig
from ..errors import NotFound, from_upstream
from ..store.answer import TaskBody, task_query_body, task_query_body_of, with_raw
from ..store.models import Outcome, Reason, TaskKind, TaskRecord, TaskStatus
from ..store.sqlite import TaskStore
from ..upstream.client import JimengClient
from ..upstream.errors import UpstreamError
from ..upstream.history import HistoryRecord, parse_record
from ..upstream.payloads import history_image_info
from ..upstream.tokens import Account, TokenError, parse_token
from ..watcher import Watcher
from ..webhooks.events import task_event_writer
from .generation import Submission

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BATCH = 50
"""Most history ids one query may ask about."""
MAX_WAIT = 60.0
"""Longest long-poll wait, in seconds."""
UNKNOWN_TYPE = "unknown"


class BatchAnswer(TypedDict):
    """The answer to a query for many ids: bodies in request order, then the ids not found."""

    data: list[TaskBody]
    not_found: list[str]


def body_from_row(row: TaskRecord) -> TaskBody:
    """The query body of a stored task."""
    return with_raw(task_query_body_of(row), row.raw_data)


def infer_type(record: HistoryRecord) -> str:
    """`video`/`image` from the items of a record this server did not submit; `unknown` without items."""
    if record.video_urls:
        return TaskKind.VIDEO.value
    if record.image_urls:
        return TaskKind.IMAGE.value
    return UNKNOWN_TYPE


def public_status(record: HistoryRecord) -> TaskStatus:
    """10/50 -> 10 (done), 30 -> 30 (failed), anything else (20, 42, 45, unknown) -> 20 (processing)."""
    if record.done:
        return TaskStatus.DONE
    if record.failed:
        return TaskStatus.FAILED
    return TaskStatus.PROCESSING


def final_results(record: HistoryRecord, task_type: str) -> list[str] | None:
    """Result URLs of a final record: all of a done task ([] if it has none); a failed task's partial
    items when it made some (None otherwise); None while processing."""
    urls = list(record.urls(task_type))
    status = public_status(record)
    if status is TaskStatus.DONE:
        return urls
    if status is TaskStatus.FAILED and urls:
        return urls
    return None


def body_from_record(history_id: str, task_type: str, record: HistoryRecord) -> TaskBody:
    """The query body of an upstream record, `raw_data` untouched."""
    body = task_query_body(
        history_id=history_id,
        task_type=task_type,
        status=int(public_status(record)),
        fail_code=record.fail_code,
        item_count=record.item_count,
        results=final_results(record, task_type),
    )
    return with_raw(body, record.raw)


def not_found(history_id: str) -> NotFound:
    """404 for an id unknown to every header account (or owned by another account: same answer)."""
    return NotFound(
        f"task {history_id!r} was not found for the account(s) in the Authorization header; check the "
        "history_id and send the token of the account that submitted the task",
        code="TASK_NOT_FOUND",
    )


class TaskService:
    """Owns the task store; records submissions, stores watcher results, answers queries.

    `open()` opens the store and resumes watching the tasks left in flight by a previous run; `close()`
    waits for store writes in flight, then closes the store.
    """

    def __init__(
        self, config: StoreConfig, watcher_config: WatcherConfig, watcher: Watcher, client: JimengClient, clock: Clock
    ) -> None:
        self.config = config
        self.watcher_config = watcher_config
        self.watcher = watcher
        self.client = client
        self.clock = clock
        self._store: TaskStore | None = None
        self._writes = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.on_event: Callable[[], None] | None = None  # called after a write that may add a webhook event

    # ------------------------------------------------------------------ lifecycle

    @property
    def store(self) -> TaskStore:
        """The open store (RuntimeError before `open()`)."""
        if self._store is None:
            raise RuntimeError("the task store is not open")
        return self._store

    async def open(self) -> int:
        """Open the store at `store.path`, purge what expired, resume in-flight tasks; returns how many."""
        self._store = await TaskStore.open(self.config.path, clock=self.clock)
        await self.purge()
        return await self.resume()

    async def close(self) -> None:
        """Wait for hook writes in flight, then close the store. Idempotent."""
        await self._idle.wait()
        store, self._store = self._store, None
        if store is not None:
            await store.close()

    async def resume(self) -> int:
        """Watch again every stored task still processing that has its token; returns how many."""
        resumed = 0
        for row in await self.store.unfinished():
            if row.token is None or self.watcher.is_watching(row.history_id):
                continue
            try:
                account = parse_token(row.token)
            except TokenError:
                log.warning("task %s: stored token unusable, not resumed", row.history_id)
                continue
            if account.fingerprint != row.account_fp:
                log.warning("task %s: stored token does not match its owner, not resumed", row.history_id)
                continue
            self.watcher.watch(account, row.history_id, row.kind, submitted_at=row.created_at)
            resumed += 1
        if resumed:
            log.info("resumed watching %d task(s) left in flight", resumed)
        return resumed

    async def purge(self) -> tuple[int, int, int]:
        """Delete expired tasks, abandoned unfinished tasks and expired idempotency keys; returns the counts."""
        keep = self.config.retention_days * 86400
        store = self.store
        counts = (
            await store.purge_finished(older_than=keep),
            await store.purge_stale_unfinished(older_than=keep),
            await store.purge_idempotency(),
        )
        if any(counts):
            log.info("purged %d finished task(s), %d abandoned task(s), %d idempotency key(s)", *counts)
        return counts

    async def purge_forever(self) -> None:
        """The periodic purge (run as an owned task by the app's lifecycle; cancel to stop)."""
        while True:
            await self.clock.sleep(self.config.purge_interval_minutes * 60)
            try:
                await self.purge()
            except Exception:
                log.exception("periodic purge failed")

    # ------------------------------------------------------------------ writes (submit hook, watcher hooks)

    async def track(self, submission: Submission) -> None:
        """Record an accepted submission and hand it to the watcher (runs before the submit answers).

        Never raises for store trouble: the task is then still watched (and found upstream by a query).
        """
        account = submission.account
        record = TaskRecord(
            history_id=submission.history_id,
            account_fp=account.fingerprint,
            token=account.token,
            kind=submission.kind,
            model=submission.model,
            submit_id=submission.submit_id,
            status=TaskStatus.PROCESSING,
            upstream_status=None,
            fail_code="",
            fail_reason=None,
            item_count=0,
            results=None,
            raw_data=None,
            callback_url=submission.callback_url,
            input_images=submission.input_images,
            created_at=submission.submitted_at,
            updated_at=submission.submitted_at,
            finished_at=None,
        )
        try:
            await uncancellable(self._write(self.store.insert(record)))
        except Exception:
            log.exception("task %s could not be recorded", submission.history_id)
        finally:
            self.watcher.watch(account, submission.history_id, submission.kind, submitted_at=submission.submitted_at)

    async def on_progress(self, history_id: str, record: HistoryRecord) -> None:
        """Watcher hook: store a changed, still unfinished record."""
        await self._write(
            self.store.update_progress(
                history_id, upstream_status=record.status or 0, item_count=record.item_count, raw_data=record.raw
            )
        )

    async def on_final(self, outcome: Outcome) -> None:
        """Watcher hook: store a final upstream status; for a watch given up (deadline, lost record,
        refused session) keep the task processing with its last record, and forget its token: a later
        query asks the upstream with the caller's token."""
        if outcome.record is not None and outcome.reason in (Reason.DONE, Reason.UPSTREAM_FAILED):
            await self._write(self._store_final(outcome.history_id, outcome.kind, outcome.record, outcome.detail))
            return
        log.info("stopped watching task %s: %s %s", outcome.history_id, outcome.reason.value, outcome.detail)
        await self._write(self._give_up(outcome))

    async def _give_up(self, outcome: Outcome) -> None:
        if outcome.record is not None:
            await self.on_progress(outcome.history_id, outcome.record)
        # A task with a callback_url gets its task.failed event (timeout, ...) in the same transaction.
        writer = task_event_writer(
            outcome.history_id, now=self.clock.time(), reason=outcome.reason, detail=outcome.detail
        )
        await self.store.drop_token(outcome.history_id, extra=writer)
        self._event_written()

    async def _store_final(
        self, history_id: str, kind: TaskKind, record: HistoryRecord, detail: str = ""
    ) -> TaskRecord | None:
        final = await self.store.finish(
            history_id,
            status=public_status(record),
            upstream_status=record.status,
            fail_code=record.fail_code,
            fail_reason=detail or None,
            results=final_results(record, kind.value),
            item_count=record.item_count,
            raw_data=record.raw,
            keep_token=False,  # deliveries do not need the token: the outbox row holds the whole event
            extra=task_event_writer(history_id, now=self.clock.time(), detail=detail),
        )
        self._event_written()
        return final

    def _event_written(self) -> None:
        """Let the webhook sender look at the outbox now (instead of at its next poll)."""
        if self.on_event is not None:
            self.on_event()

    async def _write(self, aw: Awaitable[T]) -> T:
        """Count a store write in flight so `close()` can wait for it."""
        self._writes += 1
        self._idle.clear()
        try:
            return await aw
        finally:
            self._writes -= 1
            if self._writes == 0:
                self._idle.set()

    # ------------------------------------------------------------------ queries

    async def query(self, accounts: Sequence[Account], history_id: str, *, wait: float = 0.0) -> TaskBody:
        """One task, for the header's accounts; 404 TASK_NOT_FOUND when none of them has it.

        With `wait` > 0, a task the watcher is polling is answered once final or after `wait` seconds,
        whichever comes first (no extra upstream calls).
        """
        if wait > 0:
            await self._wait_for_final(accounts, history_id, wait)
        answer = await self.query_many(accounts, [history_id])
        if not answer["data"]:
            raise not_found(history_id)
        return answer["data"][0]

    async def query_many(self, accounts: Sequence[Account], history_ids: Sequence[str]) -> BatchAnswer:
        """Many tasks: one upstream call per owning account for the ids that need one, and one per header
        token (in order, until all are found) for ids this server does not know."""
        ids = list(dict.fromkeys(history_ids))
        rows = await self.store.get_many(ids)
        owners = {a.fingerprint: a for a in accounts}
        bodies: dict[str, TaskBody] = {}
        ask: dict[str, list[TaskRecord]] = defaultdict(list)
        unknown: list[str] = []
        for hid in ids:
            row = rows.get(hid)
            if row is None:
                unknown.append(hid)
            elif row.account_fp in owners:
                local = self._local_body(row)
                if local is not None:
                    bodies[hid] = local
                else:
                    ask[row.account_fp].append(row)
            # else: another account's task; it stays "not found"
        for fp, group in ask.items():
            bodies.update(await self._ask_owner(owners[fp], group))
        if unknown:
            bodies.update(await self._probe(accounts, unknown))
        return {"data": [bodies[h] for h in ids if h in bodies], "not_found": [h for h in ids if h not in bodies]}

    def _local_body(self, row: TaskRecord) -> TaskBody | None:
        """The answer without an upstream call, when the store or the watcher has it fresh."""
        if row.final:
            return body_from_row(row)
        due = self.watcher.due_at(row.history_id)
        if due is None:
            return None
        schedule = self.watcher.schedule_for(row.kind)
        if self.clock.time() - due > 2 * schedule.interval + 5 * self.watcher_config.tick:
            return None  # the watcher is far behind: ask the upstream
        snapshot = self.watcher.snapshot(row.history_id)
        return body_from_record(row.history_id, row.kind.value, snapshot) if snapshot else body_from_row(row)

    async def _ask_owner(self, owner: Account, rows: list[TaskRecord]) -> dict[str, TaskBody]:
        """Ask the upstream about stored, unwatched tasks of one account; store what it says."""
        image = any(r.kind is TaskKind.IMAGE for r in rows)
        data = await self._history(owner, [r.history_id for r in rows], image=image)
        bodies: dict[str, TaskBody] = {}
        for row in rows:
            raw = data.get(row.history_id)
            if not isinstance(raw, dict):
                bodies[row.history_id] = body_from_row(row)  # not visible upstream (yet): what we know
                continue
            record = parse_record(raw)
            bodies[row.history_id] = body_from_record(row.history_id, row.kind.value, record)
            if record.final:
                await self._write(self._store_final(row.history_id, row.kind, record))
            else:
                await self.on_progress(row.history_id, record)
        return bodies

    async def _probe(self, accounts: Sequence[Account], ids: list[str]) -> dict[str, TaskBody]:
        """Look up ids unknown here with each header account in turn until all are found."""
        remaining = list(ids)
        bodies: dict[str, TaskBody] = {}
        error: UpstreamError | None = None
        for account in accounts:
            if not remaining:
                break
            try:
                data = await self._history(account, remaining, image=True)
            except UpstreamError as exc:
                error = error or exc
                continue
            for hid in list(remaining):
                raw = data.get(hid)
                if isinstance(raw, dict):
                    record = parse_record(raw)
                    bodies[hid] = body_from_record(hid, infer_type(record), record)
                    remaining.remove(hid)
        if remaining and error is not None:
            raise from_upstream(error) from None  # a token failed: a 404 could be wrong
        return bodies

    async def _history(self, account: Account, ids: list[str], *, image: bool) -> dict[str, Any]:
        return await self.client.get_history(account, ids, image_info=history_image_info() if image else None)

    async def _wait_for_final(self, accounts: Sequence[Account], history_id: str, seconds: float) -> None:
        """Await the watcher's outcome of an owned, watched task for at most `seconds` on the clock."""
        owner_fps = {a.fingerprint for a in accounts}
        row = await self.store.get(history_id)
        if row is None or row.final or row.account_fp not in owner_fps:
            return
        if not self.watcher.is_watching(history_id):
            return
        owner = next(a for a in accounts if a.fingerprint == row.account_fp)
        future = self.watcher.watch(owner, history_id, row.kind)  # the existing watch's future
        sleeper = asyncio.ensure_future(self.clock.sleep(min(seconds, MAX_WAIT)))
        try:
            waiters: set[asyncio.Future[Any]] = {future, sleeper}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sleeper
