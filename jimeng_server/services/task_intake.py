"""Recording accepted submits, and deciding which tasks the watcher polls in the background.

`[watcher] watch = "callbacks"` (the default, as the spec says: the caller decides when to query): only
tasks with a `callback_url` are watched in the background; `"all"`: every submitted task. Whatever the mode, a
task paid by a pool account (an API key's task) is watched until final too: it holds a slot of its key's
in-flight cap (and its account's share of the pool) until its stored record is final, so the slot frees when
the upstream finishes, not when someone happens to query it. A background task
keeps its owner's session token in the store (it is needed to poll after a restart) until it is settled;
other tasks are stored without it. A task paid by a pool account (API key) never stores a token: it keeps
`account_id`, and the session is resolved from the pool (`AccountPool.resume`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..concurrency import uncancellable
from ..store.base import Store
from ..store.secretbox import SecretBox, SecretError
from ..tasks.cost import CostSource, TaskCost
from ..tasks.records import TaskRecord
from ..upstream.tokens import Account, TokenError, parse_token
from ..watcher import Watcher
from .callers import ResolveAccount
from .generation import Submission

log = logging.getLogger(__name__)

SEALED_PREFIX = "sealed:"
"""How a sealed token is stored in `tasks.token` (a session token never starts so)."""


class TaskIntake:
    """Stores every accepted submit and hands background tasks to the watcher; resumes them on start-up."""

    def __init__(
        self,
        store: Store,
        watcher: Watcher,
        *,
        watch_all: bool,
        resolve_account: ResolveAccount | None = None,
        box: SecretBox | None = None,
    ) -> None:
        """`resolve_account` turns a pool account id into its account (the pool's session: tasks of API-key callers
        keep no token). `box`: the `[accounts] encryption_key` box; when it seals, a background task's token is
        stored sealed too (`sealed:` + the Fernet token), never in the clear."""
        self.store = store
        self.watcher = watcher
        self.watch_all = watch_all
        self.resolve_account = resolve_account
        # Set by the app with `[results] keep = "resign"`: told the header account of each raw-token task with a
        # callback URL (its token is dropped at settle), so its webhook retries can be re-signed.
        self.remember_owner: Callable[[str, Account], None] | None = None
        self.box = box

    def in_background(self, callback_url: str | None, *, pooled: bool) -> bool:
        """True if a task with this callback URL is watched until final without anyone waiting; `pooled`: it is
        paid by a pool account (it holds an in-flight slot until it is final, so it is always watched)."""
        return self.watch_all or bool(callback_url) or pooled

    async def track(self, submission: Submission) -> None:
        """Record an accepted submission (before the submit answers) and watch it if it is a background task.

        Never raises for store trouble: a background task is then still watched (and any task is found
        upstream by a query).
        """
        account = submission.account
        pooled = submission.account_id is not None
        background = self.in_background(submission.callback_url, pooled=pooled)
        record = TaskRecord.submitted(
            submission.history_id,
            submission.owner or account.fingerprint,
            self._sealed(account.token) if background and not pooled else None,
            submission.kind,
            submission.model,
            submission.submit_id,
            at=submission.submitted_at,
            callback_url=submission.callback_url,
            input_images=submission.input_images,
            account_id=submission.account_id,
            parent_history_id=submission.parent_history_id,
        )
        try:
            await uncancellable(self.store.insert(record))
        except Exception:
            log.exception("task %s could not be recorded", submission.history_id)
        finally:
            if background:
                self.watcher.watch(
                    account,
                    submission.history_id,
                    submission.kind,
                    submitted_at=submission.submitted_at,
                    model=submission.model,
                    forecast=submission.forecast,
                )
            if self.remember_owner is not None and submission.callback_url and not pooled:
                self.remember_owner(submission.history_id, account)

    async def record_spent(self, result: object, credits: int) -> None:
        """Store what an accepted submit is estimated to have cost (AccountService.on_spent: the pooled balance
        drop, else the known price) as its task's `estimated` cost, when `result` is a recorded submission. A
        store failure is logged, never raised (the submit is paid for and answers)."""
        if not isinstance(result, Submission):
            return
        try:
            await uncancellable(self.store.record_cost(result.history_id, TaskCost(credits, CostSource.ESTIMATED)))
        except Exception:
            log.exception("cost of task %s could not be recorded", result.history_id)

    async def resume(self) -> int:
        """Watch every stored background task still processing that is not watched yet (at start-up: those
        left in flight; with replicas, also those other replicas stored since); returns how many."""
        resumed = 0
        for row in await self.store.unfinished():
            background = self.in_background(row.callback_url, pooled=row.account_id is not None)
            if not background or self.watcher.is_watching(row.history_id):
                continue
            account = await self._owner(row)
            if account is None:
                continue
            self.watcher.watch(account, row.history_id, row.kind, submitted_at=row.created_at, model=row.model)
            if self.remember_owner is not None and row.callback_url and row.account_id is None:
                self.remember_owner(row.history_id, account)
            resumed += 1
        if resumed:
            log.info("watching %d more stored task(s) still in flight", resumed)
        return resumed

    def _sealed(self, token: str) -> str:
        if self.box is None or not self.box.sealing:
            return token
        blob, _ = self.box.seal(token.encode("utf-8"))
        return SEALED_PREFIX + blob.decode("ascii")

    def _opened(self, stored: str) -> str:
        """The token of a stored value (sealed or, from before a key was set, in the clear); SecretError when a
        sealed one cannot be opened (no key, another key)."""
        if not stored.startswith(SEALED_PREFIX):
            return stored
        if self.box is None:
            raise SecretError("the task's token is sealed and no encryption key is set")
        return self.box.open(stored[len(SEALED_PREFIX) :].encode("ascii"), True).decode("utf-8")

    async def _owner(self, row: TaskRecord) -> Account | None:
        """The account that polls a stored task: its pool account, else its stored token (checked)."""
        if row.account_id is not None:
            account = await self.resolve_account(row.account_id) if self.resolve_account is not None else None
            if account is None:
                log.warning("task %s: its pool account is gone or unreadable, not resumed", row.history_id)
            return account
        if row.token is None:
            return None
        try:
            account = parse_token(self._opened(row.token))
        except (TokenError, SecretError):
            log.warning("task %s: stored token unusable, not resumed", row.history_id)
            return None
        if account.fingerprint != row.account_fp:
            log.warning("task %s: stored token does not match its owner, not resumed", row.history_id)
            return None
        return account
