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
  results as they were: a query never fails because a link could not be refreshed (logged, counted).

Callers: `TaskQueries` (the query answer of a settled task, and whether its cached answer is still fresh) and
the webhook sender's `body_hook` (`event_body`: the event's `data.results` rewritten before each attempt, so
a retry after a receiver outage or a redelivery carries working URLs; the stored event is unchanged).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..metrics import result_resign
from ..store.answer import ResultItem, result_item
from ..store.base import Store
from ..store.models import TaskRecord
from ..store.outbox import OutboxEvent
from ..upstream.client import JimengClient
from ..upstream.errors import UpstreamError
from ..upstream.history import local_item_urls
from ..upstream.links import ResultRef, result_refs, url_expiry
from ..upstream.tokens import Account
from .callers import ResolveAccount

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Fresh:
    """A task's current links and the earliest expiry among them (None: none of them says)."""

    urls: tuple[str, ...]
    earliest: float | None


def earliest_expiry(urls: Sequence[str]) -> float | None:
    """The soonest `x-expires` among `urls`, None when none has one."""
    expiries = [e for e in (url_expiry(u) for u in urls) if e is not None]
    return min(expiries) if expiries else None


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
    ) -> None:
        self.client = client
        self.store = store
        self.clock = clock
        self.margin = margin
        self.resolve_account = resolve_account
        self._fresh: OrderedDict[str, _Fresh] = OrderedDict()  # the most recent MAX_TASKS re-signed tasks
        self._inflight: dict[str, asyncio.Task[_Fresh]] = {}
        self._accounts: OrderedDict[str, Account] = OrderedDict()  # the most recent MAX_TASKS owners learned

    def remember(self, history_id: str, account: Account) -> None:
        """The header account that owns a raw-token task (settled tasks keep no token): used to re-sign its
        webhook retries. Memory only."""
        _bounded_put(self._accounts, history_id, account)

    def expiring(self, earliest: float | None) -> bool:
        """True when a link expiring at `earliest` must be re-signed now."""
        return earliest is not None and earliest <= self.clock.time() + self.margin

    def answer_expiry(self, history_id: str, urls: Sequence[str]) -> float | None:
        """The earliest expiry of a task's answered links (the re-signed ones when there are)."""
        fresh = self._fresh.get(history_id)
        return fresh.earliest if fresh is not None else earliest_expiry(urls)

    async def urls(self, row: TaskRecord, account: Account | None = None) -> tuple[str, ...]:
        """Links for the results of a settled task that live past `now + margin` where they can be re-signed
        (`account`: the caller's header account owning a raw-token task, if any)."""
        stored = row.results or ()
        if not stored:
            return stored
        if account is not None:
            self.remember(row.history_id, account)
        fresh = self._fresh.get(row.history_id) or _Fresh(stored, earliest_expiry(stored))
        if not self.expiring(fresh.earliest):
            return fresh.urls
        task = self._inflight.get(row.history_id)
        if task is None:
            task = asyncio.create_task(self._resign(row, fresh), name="jimeng-resign")
            self._inflight[row.history_id] = task
            task.add_done_callback(functools.partial(self._ended, row.history_id))
        return (await asyncio.shield(task)).urls

    async def items(self, row: TaskRecord, account: Account | None = None) -> list[ResultItem] | None:
        """`results` of a settled task's answer with fresh links (None when it has none)."""
        if row.results is None:
            return None
        return [result_item(url) for url in await self.urls(row, account)]

    async def event_body(self, event: OutboxEvent) -> str:
        """The body to send for an outbox event: its stored JSON with `data.results` re-signed when they expire
        (the webhook sender's `body_hook`). The stored body when nothing needs re-signing."""
        try:
            body = json.loads(event.body)
            results = body["data"]["results"]
            urls = [r["url"] for r in results]
        except (ValueError, KeyError, TypeError):
            return event.body
        if not urls or not self.expiring(self.answer_expiry(event.history_id, urls)):
            return event.body
        row = await self.store.get(event.history_id)
        if row is None or not row.final:
            return event.body
        body["data"]["results"] = await self.items(row)
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    def _ended(self, history_id: str, _task: asyncio.Task[_Fresh]) -> None:
        self._inflight.pop(history_id, None)

    async def close(self) -> None:
        """Cancel the re-signs in flight."""
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)

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
            return current
        try:
            fresh = await self._call(account, refs)
        except UpstreamError as exc:
            result_resign("failed")
            log.warning("task %s: re-signing its result links failed: %s", row.history_id, exc)
            return current
        pairs = zip(refs, current.urls, strict=True)
        urls = tuple(fresh.get(ref.key, old) if ref is not None else old for ref, old in pairs)
        result_resign("ok")
        out = _Fresh(urls, earliest_expiry(urls))
        _bounded_put(self._fresh, row.history_id, out)
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
