"""Re-signing result links that expire (`[results] keep = "resign"`, README "Keeping results").

The upstream's result URLs are signed for a few hours (`x-expires`, docs/protocol.md §19.4). The store keeps
what each settled task's results are re-signed from (`ResultRefStore`, written by the settler; else read from
the task's stored upstream record: `upstream.links.result_refs`, the image uri, the video item id).
`ResultLinks` answers, for a settled task, links that live at least `margin` more seconds:

- while every stored (or last re-signed) URL lives past `now + margin`, they are answered as they are;
- otherwise ONE re-sign call per task is made (`get_image_by_uri` for images, `get_local_item_list` for videos;
  concurrent askers of one task share it), on the task's own account: its pool account, else the header
  account of the caller that asked (remembered in memory only, for the webhook retries that follow; never
  stored), and the fresh links are cached until they in turn near their expiry;
- a re-sign that cannot be made (no account known, an upstream error, a result with no ref) leaves those
  results as they were: a query never fails because a link could not be refreshed (logged, counted); it is
  tried again after `RETRY_AFTER_FAILURE` seconds, not on every query.

With `local` (`[results] keep = "local"` or `"s3"`): a result kept by `services/keeper.py` is answered as the
link of its file (`file_stores.py`: a signed `/v1/files/{id}` link, a presigned S3 URL; `kept` true); one not
kept yet, or given up (`keep_error` says why), as above. A settled task's keep jobs are added by
`after_settle`; with `hold_webhooks` an event waits (`HoldEvent`) until every job of its task is final, and
then carries the kept links.

Callers: `TaskQueries` (`answer`: the results of a settled task's query answer and until when they may be
served from the answer cache), the settler's `after_settle`, and the webhook sender's `body_hook`
(`event_body`: the event's `data.results` rewritten before each attempt, so a retry after a receiver outage or
a redelivery carries working URLs; the stored event is unchanged).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import jsonfast
from ..clock import Clock
from ..jobs import Job, Jobs
from ..metrics import result_resign
from ..store.base import Store
from ..store.keeping import KeepJob, KeepState
from ..store.outbox import OutboxEvent
from ..tasks.answer import ResultItem, result_item
from ..tasks.records import Outcome, TaskRecord
from ..upstream.client import JimengClient
from ..upstream.errors import UpstreamError
from ..upstream.history import local_item_urls
from ..upstream.links import ResultRef, record_refs, result_refs, url_expiry, video_model_expiry
from ..upstream.tokens import Account
from ..webhooks.sender import HoldEvent
from .callers import ResolveAccount
from .file_links import link_expiry
from .file_stores import FileStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Fresh:
    """A task's current links and the earliest expiry among them (None: none of them says); `retry_at`: after a
    re-sign that failed, no other is tried before then."""

    urls: tuple[str, ...]
    earliest: float | None
    retry_at: float | None = None
    signed_at: float | None = None  # when these links were re-signed here (None: as settled)


def earliest_expiry(urls: Sequence[str]) -> float | None:
    """The soonest `x-expires` among `urls`, None when none has one."""
    expiries = [e for e in (url_expiry(u) for u in urls) if e is not None]
    return min(expiries) if expiries else None


def _keeping(jobs: Sequence[KeepJob], results: int) -> bool:
    """True while a task of `results` results is being kept: a result has no keep job yet, or its job is not final."""
    return len(jobs) < results or not all(job.state.final for job in jobs)


VIDEO_LINK_SECONDS = 3600.0
"""How long a video link without `x-expires` is taken to live: the real CDN's video URLs say nothing, their item's
`video_model.url_expire` is about an hour after the answer (docs/protocol.md §18.4)."""
RETRY_AFTER_FAILURE = 60.0
"""Seconds after a re-sign that failed (or could not be made) before a task's links are tried again."""
HOLD_RECHECK = 60.0
"""Seconds a held webhook event waits before it is looked at again (the keeper wakes it sooner when done)."""


@dataclass(frozen=True, slots=True)
class Keeping:
    """How kept results are answered: where the files are (their links come from there), how long a link lives,
    whether webhooks wait for keeping."""

    files: FileStore
    link_seconds: float
    hold_webhooks: bool


MAX_TASKS = 10_000
"""Most tasks whose re-signed links (and owning header accounts) are remembered; the oldest are dropped first."""


def _bounded_put(table: OrderedDict[str, Any], key: str, value: Any) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > MAX_TASKS:
        table.popitem(last=False)


class ResultLinks:
    """Fresh result links of settled tasks (see the module doc). `close()` cancels re-signs in flight."""

    def __init__(
        self,
        client: JimengClient,
        store: Store,
        clock: Clock,
        *,
        margin: float,
        resolve_account: ResolveAccount | None = None,
        local: Keeping | None = None,
        jobs: Jobs | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.clock = clock
        self.margin = margin
        self.resolve_account = resolve_account
        self.local = local
        self.on_jobs: Callable[[], None] | None = None  # told when keep jobs were added (the keeper's `wake`)
        self.local_recheck = 3600.0  # longest a cached answer with kept links is served (the retention sweep)
        self._fresh: OrderedDict[str, _Fresh] = OrderedDict()  # the most recent MAX_TASKS re-signed tasks
        self._jobs = jobs or Jobs("result-links")
        self._inflight: dict[str, Job[_Fresh]] = {}  # history id -> its re-sign (a shielded job callers share)
        self._accounts: OrderedDict[str, Account] = OrderedDict()  # the most recent MAX_TASKS owners learned

    def remember(self, history_id: str, account: Account) -> None:
        """The header account that owns a raw-token task (settled tasks keep no token): used to re-sign its
        webhook retries. Memory only."""
        _bounded_put(self._accounts, history_id, account)

    def expiring(self, earliest: float | None) -> bool:
        """True when a link expiring at `earliest` must be re-signed now."""
        return earliest is not None and earliest <= self.clock.time() + self.margin

    def link_expiry(self, row: TaskRecord, fresh: _Fresh) -> float | None:
        """When a settled task's current links stop working: their earliest `x-expires`; for video links that
        carry none, the items' `video_model.url_expire` (as settled) or an hour after they were signed (settled
        or re-signed); None when nothing says (they are then never re-signed)."""
        if fresh.earliest is not None or row.kind.value != "video":
            return fresh.earliest
        if fresh.signed_at is not None:
            return fresh.signed_at + VIDEO_LINK_SECONDS
        items = row.raw_data.get("item_list") if isinstance(row.raw_data, dict) else None
        models = [e for e in (video_model_expiry(i) for i in items or []) if e is not None]
        if models:
            return min(models)
        return row.finished_at + VIDEO_LINK_SECONDS if row.finished_at is not None else None

    async def urls(self, row: TaskRecord, account: Account | None = None) -> tuple[str, ...]:
        """Links for the results of a settled task that live past `now + margin` where they can be re-signed
        (`account`: the caller's header account owning a raw-token task, if any)."""
        stored = row.results or ()
        if not stored:
            return stored
        if account is not None:
            self.remember(row.history_id, account)
        fresh = self._fresh.get(row.history_id) or _Fresh(stored, earliest_expiry(stored))
        if not self.expiring(self.link_expiry(row, fresh)):
            return fresh.urls
        if fresh.retry_at is not None and self.clock.time() < fresh.retry_at:
            return fresh.urls
        job = self._inflight.get(row.history_id)
        if job is None:
            job = self._inflight[row.history_id] = self._jobs.shield(self._resign(row, fresh), name="jimeng-resign")
            job.task.add_done_callback(functools.partial(self._ended, row.history_id))
        return (await job).urls

    async def refresh_images(self, rows: Sequence[TaskRecord], accounts: Mapping[str, Account]) -> None:
        """Re-sign the expiring image links of many settled tasks with ONE `get_image_by_uri` call per account
        (a batch query), ahead of `answer()`: the fresh links are cached per task as `urls()` would. `accounts`:
        the caller's header account of each raw-token task, by history id. Tasks whose links cannot be re-signed
        here (videos, no account, no refs) are left to `urls()`; a failed call leaves its tasks to it too. Not used
        while results are kept (`local`)."""
        if self.local is not None:
            return  # kept results need no upstream links; those not kept are re-signed one task at a time
        groups: dict[str, tuple[Account, list[tuple[TaskRecord, _Fresh]]]] = {}
        for row in rows:
            stored = row.results or ()
            current = self._fresh.get(row.history_id) or _Fresh(stored, earliest_expiry(stored))
            if row.kind.value != "image" or not stored or not self.expiring(current.earliest):
                continue
            if current.retry_at is not None and self.clock.time() < current.retry_at:
                continue
            if row.history_id in accounts:
                self.remember(row.history_id, accounts[row.history_id])
            account = await self._account(row)
            if account is not None:
                groups.setdefault(account.fingerprint, (account, []))[1].append((row, current))
        refs_of = await self.store.result_refs_of([row.history_id for _, group in groups.values() for row, _ in group])
        for account, group in groups.values():
            refs = {
                row.history_id: refs_of.get(row.history_id) or result_refs(row.raw_data, "image") for row, _ in group
            }
            uris = [ref.key for task in refs.values() for ref in task if ref is not None and ref.kind == "image"]
            if len(group) < 2 or not uris:
                continue  # one task: `urls()` makes the same single call
            try:
                fresh = await self.client.get_images_by_uri(account, list(dict.fromkeys(uris)))
            except UpstreamError as exc:
                log.warning("re-signing the result links of %d task(s) failed: %s", len(group), exc)
                continue
            for row, current in group:
                task_refs = refs[row.history_id]
                if len(task_refs) != len(current.urls):
                    continue
                pairs = zip(task_refs, current.urls, strict=True)
                urls = tuple(fresh.get(ref.key, old) if ref is not None else old for ref, old in pairs)
                _bounded_put(self._fresh, row.history_id, _Fresh(urls, earliest_expiry(urls)))
                result_resign("ok")

    async def items(self, row: TaskRecord, account: Account | None = None) -> list[ResultItem] | None:
        """`results` of a settled task's answer with fresh links (None when it has none)."""
        return (await self.answer(row, account))[0]

    async def answer(self, row: TaskRecord, account: Account | None = None) -> tuple[list[ResultItem] | None, float]:
        """`results` of a settled task's answer, and until when that answer may be served again as it is (from
        the answer cache): shortly before its first link expires; at once while results are still being kept."""
        now = self.clock.time()
        if row.results is None:
            return None, float("inf")
        stored = await self.store.keep_jobs_of([row.history_id]) if self.local is not None else {}
        jobs = {j.position: j for j in stored.get(row.history_id, [])}
        kept = {n: j.file_id for n, j in jobs.items() if j.state is KeepState.KEPT and j.file_id}
        urls = row.results if len(kept) == len(row.results) else await self.urls(row, account)
        items = [
            await self._kept_item(kept[n], now) if n in kept else self._upstream_item(url, jobs.get(n))
            for n, url in enumerate(urls)
        ]
        expiries = [item["expires_at"] for item in items if item["expires_at"] is not None]
        if len(kept) < len(urls):  # upstream links: also their estimated end when they do not say
            current = self._fresh.get(row.history_id) or _Fresh(tuple(urls), earliest_expiry(urls))
            estimate = self.link_expiry(row, current)
            expiries += [int(estimate)] if estimate is not None else []
        fresh_until = min(expiries) - self.margin if expiries else float("inf")
        if self.local is not None and (len(jobs) < len(urls) or not all(j.state.final for j in jobs.values())):
            fresh_until = now  # its links change once kept
        elif kept:
            fresh_until = min(fresh_until, now + self.local_recheck)  # retention (another replica's) may remove files
        return items, fresh_until

    async def _kept_item(self, file_id: str, now: float) -> ResultItem:
        assert self.local is not None
        expires = link_expiry(now, self.local.link_seconds)
        url = await self.local.files.url(file_id, expires, now)
        return {"url": url, "expires_at": expires if self.local.files.links_expire else None, "kept": True}

    @staticmethod
    def _upstream_item(url: str, job: KeepJob | None) -> ResultItem:
        item = result_item(url)
        if job is not None and job.state is KeepState.FAILED:
            item["keep_error"] = job.error or "the result could not be kept"
        elif job is not None and job.state is KeepState.EXPIRED:
            item["keep_error"] = "expired: the kept file was removed by retention; this is the upstream's link"
        return item

    @staticmethod
    def refs_of(outcome: Outcome) -> tuple[ResultRef | None, ...] | None:
        """The settler's `result_refs` hook: what the results of a finished task are re-signed from, stored with
        its settlement (None when it has no results)."""
        if outcome.record is None or not outcome.urls:
            return None
        return record_refs(outcome.record, outcome.kind.value)

    async def after_settle(self, outcomes: Sequence[Outcome], settled: set[str]) -> None:
        """The settler's hook: with `local`, add the keep jobs of the tasks just settled (then wake the keeper). A
        crash before this leaves the jobs to be added by the webhook's hold or by `ensure_jobs`."""
        done = [o for o in outcomes if o.history_id in settled and o.record is not None and o.urls]
        if self.local is not None and done:
            await self.store.add_keep_jobs({o.history_id: o.urls for o in done}, now=self.clock.time())
            if self.on_jobs is not None:
                self.on_jobs()

    async def event_body(self, event: OutboxEvent) -> str:
        """The body to send for an outbox event: its stored JSON with `data.results` re-signed when they expire
        (the webhook sender's `body_hook`), or with `local` the kept links; the stored body when nothing needs
        rewriting. Raises `HoldEvent` while its results are still being kept (`hold_webhooks`).

        Without `local`, an event stored with its links' expiry (`OutboxEvent.links_expire_at`) whose links live
        past `now + margin` and were not re-signed here is sent as stored without reading its body (most sends)."""
        if event.links_expire_at is not None and self._as_stored(event, event.links_expire_at):
            return event.body
        try:
            body = jsonfast.loads(event.body)
            results = body["data"]["results"]
            urls = [r["url"] for r in results]
        except (ValueError, KeyError, TypeError):
            return event.body
        if not urls:
            return event.body
        video = body["data"].get("task_type") == "video"
        # Stored before its links' expiry was: the body's own links tell (a video's expiry is in its task's record).
        if event.links_expire_at is None and not video and self._as_stored(event, earliest_expiry(urls)):
            return event.body
        row = await self.store.get(event.history_id)
        if row is None or not row.final or not row.results:
            return event.body
        if self.local is not None and self.local.hold_webhooks:
            await self._hold_while_keeping(row)
        body["data"]["results"] = await self.items(row)
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    def _as_stored(self, event: OutboxEvent, expires: float | None) -> bool:
        """True when `event` goes as stored: no results kept here, its task's links not re-signed here (else the
        body gets those: one truth) and its links, expiring at `expires`, live past `now + margin`."""
        return self.local is None and event.history_id not in self._fresh and not self.expiring(expires)

    async def _hold_while_keeping(self, row: TaskRecord) -> None:
        """Raise HoldEvent while a result of the task is not kept or given up (adding its jobs if missing)."""
        assert self.local is not None and row.results is not None
        now = self.clock.time()
        jobs = (await self.store.keep_jobs_of([row.history_id])).get(row.history_id, [])
        if not _keeping(jobs, len(row.results)):
            return
        if len(jobs) < len(row.results):
            await self.store.add_keep_jobs({row.history_id: row.results}, now=now)
            if self.on_jobs is not None:
                self.on_jobs()
        raise HoldEvent(now + HOLD_RECHECK, functools.partial(self._still_keeping, row.history_id, len(row.results)))

    async def _still_keeping(self, history_id: str, results: int) -> bool:
        """`_keeping` of the task's jobs as stored now (the hold's `still`)."""
        return _keeping((await self.store.keep_jobs_of([history_id])).get(history_id, []), results)

    def _ended(self, history_id: str, _task: asyncio.Task[_Fresh]) -> None:
        self._inflight.pop(history_id, None)

    async def close(self) -> None:
        """Cancel the re-signs in flight."""
        await self._jobs.stop(0.0)

    async def _account(self, row: TaskRecord) -> Account | None:
        if row.account_id is not None and self.resolve_account is not None:
            return await self.resolve_account(row.account_id)
        return self._accounts.get(row.history_id)

    async def _resign(self, row: TaskRecord, current: _Fresh) -> _Fresh:
        stored = await self.store.result_refs_of([row.history_id])
        refs = stored.get(row.history_id) or result_refs(row.raw_data, row.kind.value)
        account = await self._account(row)
        if account is None or len(refs) != len(current.urls) or not any(refs):
            result_resign("skipped")
            log.info("task %s: its result links expire and cannot be re-signed here", row.history_id)
            return self._later(row.history_id, current)
        try:
            fresh = await self._call(account, refs)
        except UpstreamError as exc:
            result_resign("failed")
            log.warning("task %s: re-signing its result links failed: %s", row.history_id, exc)
            return self._later(row.history_id, current)
        pairs = zip(refs, current.urls, strict=True)
        urls = tuple(fresh.get(ref.key, old) if ref is not None else old for ref, old in pairs)
        result_resign("ok")
        out = _Fresh(urls, earliest_expiry(urls), signed_at=self.clock.time())
        _bounded_put(self._fresh, row.history_id, out)
        return out

    def _later(self, history_id: str, current: _Fresh) -> _Fresh:
        """Keep the links as they are and try again only after RETRY_AFTER_FAILURE (a dead session or an outage is
        not asked again on every query)."""
        out = _Fresh(current.urls, current.earliest, self.clock.time() + RETRY_AFTER_FAILURE)
        _bounded_put(self._fresh, history_id, out)
        return out

    async def _call(self, account: Account, refs: Sequence[ResultRef | None]) -> dict[str, str]:
        """ref key -> fresh URL: one call per kind present."""
        images = [r.key for r in refs if r is not None and r.kind == "image"]
        videos = [r.key for r in refs if r is not None and r.kind == "video"]
        fresh: dict[str, str] = {}
        if images:
            fresh.update(await self.client.get_images_by_uri(account, list(dict.fromkeys(images))))
        if videos:
            fresh.update(local_item_urls(await self.client.get_local_items(account, list(dict.fromkeys(videos)))))
        return fresh
