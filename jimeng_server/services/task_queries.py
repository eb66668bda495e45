"""Answering task queries with owner routing (design.md §2–3, async-api-spec.zh.md).

- A task submitted here is asked about with the account that submitted it, whichever position its token
  has in the header; a task of an account not in the header is "not found" (nothing about it is shown).
- A settled task is answered from the store, then from memory: its encoded answer is kept in the bounded
  `services/answers.AnswerCache` (ownership checked as for the stored row). A task the watcher polls is
  answered from its latest poll; any other running task is asked upstream (concurrent lookups of one account
  share one call), and what the upstream says is stored: a final record settles the task (state and webhook
  event, once).
- An id this server does not know is looked up with each header token in turn (one call per token, until
  found); it is answered from the upstream record, its type inferred, and it is not stored or watched.
- An API key sees the tasks submitted with it (each asked upstream with its pool account when needed); ids
  it did not submit are "not found" (the pool's accounts are never probed for a key).
- `?wait=S` watches the task while the caller waits (the watch is dropped when the last waiter leaves,
  unless the task is watched in the background anyway).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence

from ..clock import Clock
from ..config import WatcherConfig
from ..errors import NotFound, from_upstream
from ..store.base import Store
from ..tasks.answer import TaskBody, body_of_record, body_of_row, record_reason
from ..tasks.cost import CostSource
from ..tasks.records import Outcome, Reason, TaskKind, TaskRecord, TaskStatus
from ..upstream.errors import UpstreamError
from ..upstream.history import HistoryRecord, parse_record
from ..upstream.tokens import Account
from ..watcher import Watcher
from .answers import AnswerCache, encode_batch, encode_json
from .callers import Caller, ResolveAccount
from .history_lookup import HistoryLookup
from .result_links import ResultLinks
from .settlement import TaskSettler

MAX_BATCH = 50
"""Most history ids one query may ask about."""
MAX_WAIT = 60.0
"""Longest long-poll wait, in seconds."""
UNKNOWN_TYPE = "unknown"


def infer_type(record: HistoryRecord) -> str:
    """`video`/`image` from the items of a record this server did not submit; `unknown` without items."""
    if record.video_urls:
        return TaskKind.VIDEO.value
    if record.image_urls:
        return TaskKind.IMAGE.value
    return UNKNOWN_TYPE


def not_found(history_id: str) -> NotFound:
    """404 for an id unknown to every header account (or owned by another account: same answer)."""
    return NotFound(
        f"task {history_id!r} was not found for the account(s) in the Authorization header; check the "
        "history_id and send the token of the account that submitted the task",
        code="TASK_NOT_FOUND",
    )


class TaskQueries:
    """One or many tasks for the caller of a request (its header tokens, or its API key)."""

    def __init__(
        self,
        store: Store,
        watcher: Watcher,
        settler: TaskSettler,
        lookup: HistoryLookup,
        config: WatcherConfig,
        clock: Clock,
        *,
        resolve_account: ResolveAccount | None = None,
        answers: AnswerCache | None = None,
        links: ResultLinks | None = None,
    ) -> None:
        """`resolve_account` gives the pool account a key's task is polled with (those tasks keep no token);
        `answers` keeps the encoded answers of final tasks (None: none are kept); `links` re-signs the expiring
        result links of settled tasks (None: answered as stored)."""
        self.store = store
        self.watcher = watcher
        self.settler = settler
        self.lookup = lookup
        self.config = config
        self.clock = clock
        self.resolve_account = resolve_account
        # Set by the app (`services/task_costs.py`): told final tasks answered with an estimated cost, to measure
        # it from the upstream's spending records in the background (it must not block or raise).
        self.on_estimated: Callable[[list[str]], None] | None = None
        self.answers = answers if answers is not None else AnswerCache(0, clock, retention_seconds=0.0)
        self.links = links

    async def query(self, caller: Caller, history_id: str, *, wait: float = 0.0) -> bytes:
        """One task's encoded answer (`encode_json` of its `TaskBody`); 404 TASK_NOT_FOUND when the caller
        does not own it. With `wait` > 0 a running task of the caller is answered once final or after `wait`
        seconds, whichever comes first. A final task's answer comes from `answers` when it is there."""
        if wait > 0 and self.answers.get(history_id) is None:
            await self._wait_for_final(caller, history_id, min(wait, MAX_WAIT))
        answer = await self._answers(caller, [history_id])
        if history_id not in answer:
            raise not_found(history_id)
        return answer[history_id]

    async def query_many(self, caller: Caller, history_ids: Sequence[str]) -> bytes:
        """Many tasks, encoded: `{"data": [<task>, ...], "not_found": [ids]}` in request order (duplicates
        collapse). One upstream call per owning account for the ids that need one, and one per header token
        (in order, until all are found) for ids this server does not know."""
        ids = list(dict.fromkeys(history_ids))
        answer = await self._answers(caller, ids)
        return encode_batch([answer[h] for h in ids if h in answer], [h for h in ids if h not in answer])

    async def _answers(self, caller: Caller, ids: list[str]) -> dict[str, bytes]:
        """The encoded answers of the `ids` the caller may see (the others are absent): final tasks from
        `answers` when they are there (ownership checked as for a stored row), the rest from `_bodies`."""
        owners = caller.owners
        answer: dict[str, bytes] = {}
        rest: list[str] = []
        for hid in ids:
            cached = self.answers.get(hid)
            if cached is None:
                rest.append(hid)
            elif cached.owner in owners:
                answer[hid] = cached.body
            # else: another account's task; it stays "not found", as from the store
        if rest:
            answer.update(await self._bodies(caller, rest))
        return answer

    async def _bodies(self, caller: Caller, ids: list[str]) -> dict[str, bytes]:
        """Answers without the cache: the store, the watcher, the upstream. The answer of a task the store
        holds as final is kept in `answers`."""
        rows = await self.store.get_many(ids)
        owners = caller.owners
        encoded: dict[str, bytes] = {}
        bodies: dict[str, TaskBody] = {}
        ask: dict[str | int, list[TaskRecord]] = defaultdict(list)  # by paying account: pool id or fingerprint
        finals: list[TaskRecord] = []
        unknown: list[str] = []
        post_edits = await self._post_edits([row for row in rows.values() if row.final])
        for hid in ids:
            row = rows.get(hid)
            if row is None:
                unknown.append(hid)
            elif row.account_fp not in owners:
                continue  # another account's task; it stays "not found"
            elif row.final:
                finals.append(row)
            else:
                local = self._local_body(row)
                if local is not None:
                    bodies[hid] = local
                else:
                    ask[row.account_id if row.account_id is not None else row.account_fp].append(row)
        if finals:
            encoded.update(await self._final_answers(caller, finals, post_edits))
        ended: list[str] = []
        for group in ask.values():
            owner = await self._paying_account(caller, group[0])
            if owner is None:  # a pool account removed since: what the store knows
                bodies.update((r.history_id, body_of_row(r)) for r in group)
            else:
                bodies.update(await self._ask_owner(owner, group, ended))
        if ended:
            # Tasks the upstream said are final: answered from the store once settled, as every later query is.
            # The watcher may have settled them first from its own reading (a video's download-quality URL),
            # and the stored settlement is the one truth the webhook and later queries say.
            stored = [row for row in (await self.store.get_many(ended)).values() if row.final]
            for row in stored:
                bodies.pop(row.history_id, None)
            encoded.update(await self._final_answers(caller, stored, await self._post_edits(stored)))
        if unknown and caller.key is None:
            bodies.update(await self._probe(caller.accounts, unknown))
        encoded.update((hid, encode_json(body)) for hid, body in bodies.items())
        return encoded

    async def _post_edits(self, rows: list[TaskRecord]) -> dict[str, list[str]]:
        """The post-edits made from each of these finished tasks (one store read; none when `rows` is empty)."""
        made: dict[str, list[str]] = defaultdict(list)
        if rows:
            wanted = {row.history_id for row in rows}
            for child, parent in await self.store.links(list(wanted)):
                if parent in wanted:
                    made[parent].append(child)
        return made

    async def _final_answers(
        self, caller: Caller, rows: list[TaskRecord], post_edits: dict[str, list[str]]
    ) -> dict[str, bytes]:
        """The encoded answers of stored final tasks (their links re-signed or kept ones, concurrently; the
        post-edits made from each), each kept in `answers` until its links change."""
        costs = await self.store.costs_of([row.history_id for row in rows])
        bodies = [body_of_row(row, post_edits.get(row.history_id, ()), costs.get(row.history_id)) for row in rows]
        fresh: list[float | None] = [None] * len(rows)
        if self.links is not None:
            raw = (r for r in rows if r.account_id is None)
            owners = {r.history_id: a for r in raw if (a := caller.account_with(r.account_fp)) is not None}
            await self.links.refresh_images(rows, owners)  # one re-sign call per account for a batch
            fresh = await asyncio.gather(*(self._fresh_links(caller, r, b) for r, b in zip(rows, bodies, strict=True)))
        encoded: dict[str, bytes] = {}
        estimated: list[str] = []
        for row, body, until in zip(rows, bodies, fresh, strict=True):
            encoded[row.history_id] = answer = encode_json(body)
            cost = costs.get(row.history_id)
            if cost is not None and cost.source is CostSource.ESTIMATED:
                estimated.append(row.history_id)  # not cached: a later query may carry the measurement
            else:
                self.answers.put(row.history_id, row.account_fp, row.finished_at, answer, fresh_until=until)
        if estimated and self.on_estimated is not None:
            self.on_estimated(estimated)
        return encoded

    async def _fresh_links(self, caller: Caller, row: TaskRecord, body: TaskBody) -> float | None:
        """Put re-signed links in a settled task's `body` when its stored ones expire (with `links`); returns
        when the answer's links must be re-signed again (None: never)."""
        if self.links is None or not row.results:
            return None
        account = caller.account_with(row.account_fp) if row.account_id is None else None
        body["results"], fresh_until = await self.links.answer(row, account)
        return fresh_until if fresh_until != float("inf") else None

    def _local_body(self, row: TaskRecord) -> TaskBody | None:
        """The answer of a running task without an upstream call, when the store or the watcher has it fresh."""
        if self.watcher.polled_elsewhere(row.history_id):
            return body_of_row(row)  # another replica polls it and stores its progress: no second poll
        due = self.watcher.due_at(row.history_id)
        if due is None:
            return None
        schedule = self.watcher.schedule_for(row.kind)
        if self.clock.time() - due > 2 * schedule.interval + 5 * self.config.tick:
            return None  # the watcher is far behind: ask the upstream
        snapshot = self.watcher.snapshot(row.history_id)
        if not snapshot:
            return body_of_row(row)
        return body_of_record(row.history_id, row.kind.value, snapshot, parent_history_id=row.parent_history_id)

    async def owner_account(self, caller: Caller, history_id: str) -> tuple[TaskRecord, Account | None] | None:
        """The stored task `history_id` of the caller and the account that submitted it (None when that pool
        account is gone); None when the caller does not own a stored task of that id. For fetching a result
        through the account's proxy."""
        row = await self.store.get(history_id)
        if row is None or row.account_fp not in caller.owners:
            return None
        return row, await self._paying_account(caller, row)

    async def _paying_account(self, caller: Caller, row: TaskRecord) -> Account | None:
        """The account that submitted an owned task: its pool account, or the caller's matching header token."""
        if row.account_id is None:
            return caller.account_with(row.account_fp)
        return await self.resolve_account(row.account_id) if self.resolve_account is not None else None

    async def _ask_owner(self, owner: Account, rows: list[TaskRecord], ended: list[str]) -> dict[str, TaskBody]:
        """Ask the upstream about stored running tasks of one account; store what it says. The ids it said are
        final are added to `ended` (their bodies here are the upstream's reading, not yet the stored truth)."""
        image = any(r.kind is TaskKind.IMAGE for r in rows)
        data = await self.lookup.get(owner, [r.history_id for r in rows], image=image)
        bodies: dict[str, TaskBody] = {}
        finals: list[Outcome] = []
        running: list[tuple[str, HistoryRecord]] = []
        for row in rows:
            raw = data.get(row.history_id)
            if not isinstance(raw, dict):
                bodies[row.history_id] = body_of_row(row)  # not visible upstream (yet): what we know
                continue
            record = parse_record(raw, self.lookup.client.statuses)
            bodies[row.history_id] = body_of_record(
                row.history_id, row.kind.value, record, parent_history_id=row.parent_history_id
            )
            reason = record_reason(record)
            if reason is None:
                running.append((row.history_id, record))
                continue
            status = TaskStatus.DONE if reason is Reason.DONE else TaskStatus.FAILED
            finals.append(Outcome(row.history_id, row.kind, status, reason, record))
        if running:
            await self.settler.progress(running)
        if finals:
            await self.settler.settle(finals)
            ended.extend(outcome.history_id for outcome in finals)
            for outcome in finals:
                self.watcher.complete(outcome)  # waiters on a watch of this task get the same outcome
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
                data = await self.lookup.get(account, remaining, image=True)
            except UpstreamError as exc:
                error = error or exc
                continue
            for hid in list(remaining):
                raw = data.get(hid)
                if isinstance(raw, dict):
                    record = parse_record(raw, self.lookup.client.statuses)
                    bodies[hid] = body_of_record(hid, infer_type(record), record)
                    remaining.remove(hid)
        if remaining and error is not None:
            raise from_upstream(error) from None  # a token failed: a 404 could be wrong
        return bodies

    async def _wait_for_final(self, caller: Caller, history_id: str, seconds: float) -> None:
        """Watch an owned running task while the caller waits (at most `seconds` on the clock)."""
        row = await self.store.get(history_id)
        if row is None or row.final or row.account_fp not in caller.owners:
            return
        owner = await self._paying_account(caller, row)
        if owner is None:
            return
        self.watcher.watch(owner, history_id, row.kind, submitted_at=row.created_at, keep=False, model=row.model)
        outcome = await self.watcher.wait(history_id, seconds)
        if outcome is not None and outcome.status.final:
            # Store the watcher's outcome (e.g. a video's download-quality URL) before answering, so the answer
            # comes from the store, not from a second upstream read racing the watcher's own save (a no-op twice).
            await self.settler.settle([outcome])
