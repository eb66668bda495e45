"""Recording accepted submits, and deciding which tasks the watcher polls in the background.

`[watcher] watch = "callbacks"` (the default, as the spec says: the caller decides when to query): only
tasks with a `callback_url` are watched in the background; `"all"`: every submitted task. A background task
keeps its owner's session token in the store (it is needed to poll after a restart) until it is settled;
other tasks are stored without it. A task paid by a pool account (API key) never stores a token: it keeps
`account_id`, and the session is resolved from the pool (`AccountPool.resume`).
"""

from __future__ import annotations

import logging

from ..concurrency import uncancellable
from ..store.base import Store
from ..store.models import TaskRecord, TaskStatus
from ..upstream.tokens import Account, TokenError, parse_token
from ..watcher import Watcher
from .callers import ResolveAccount
from .generation import Submission

log = logging.getLogger(__name__)


class TaskIntake:
    """Stores every accepted submit and hands background tasks to the watcher; resumes them on start-up."""

    def __init__(
        self, store: Store, watcher: Watcher, *, watch_all: bool, resolve_account: ResolveAccount | None = None
    ) -> None:
        """`resolve_account` turns a pool account id into its account (the pool's session: tasks of API-key callers
        keep no token)."""
        self.store = store
        self.watcher = watcher
        self.watch_all = watch_all
        self.resolve_account = resolve_account

    def in_background(self, callback_url: str | None) -> bool:
        """True if a task with this callback URL is watched until final without anyone waiting."""
        return self.watch_all or bool(callback_url)

    async def track(self, submission: Submission) -> None:
        """Record an accepted submission (before the submit answers) and watch it if it is a background task.

        Never raises for store trouble: a background task is then still watched (and any task is found
        upstream by a query).
        """
        account = submission.account
        background = self.in_background(submission.callback_url)
        pooled = submission.account_id is not None
        record = TaskRecord(
            history_id=submission.history_id,
            account_fp=submission.owner or account.fingerprint,
            token=account.token if background and not pooled else None,
            kind=submission.kind,
            model=submission.model,
            submit_id=submission.submit_id,
            status=TaskStatus.PROCESSING,
            upstream_status=None,
            fail_code="",
            error=None,
            item_count=0,
            results=None,
            raw_data=None,
            callback_url=submission.callback_url,
            input_images=submission.input_images,
            created_at=submission.submitted_at,
            updated_at=submission.submitted_at,
            finished_at=None,
            account_id=submission.account_id,
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
                )

    async def resume(self) -> int:
        """Watch every stored background task still processing that is not watched yet (at start-up: those
        left in flight; with replicas, also those other replicas stored since); returns how many."""
        resumed = 0
        for row in await self.store.unfinished():
            if not self.in_background(row.callback_url) or self.watcher.is_watching(row.history_id):
                continue
            account = await self._owner(row)
            if account is None:
                continue
            self.watcher.watch(account, row.history_id, row.kind, submitted_at=row.created_at, model=row.model)
            resumed += 1
        if resumed:
            log.info("watching %d more stored task(s) still in flight", resumed)
        return resumed

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
            account = parse_token(row.token)
        except TokenError:
            log.warning("task %s: stored token unusable, not resumed", row.history_id)
            return None
        if account.fingerprint != row.account_fp:
            log.warning("task %s: stored token does not match its owner, not resumed", row.history_id)
            return None
        return account
