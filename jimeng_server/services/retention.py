"""Retention: deleting expired tasks, abandoned unfinished tasks and expired idempotency keys, at start-up
and periodically (an owned background task, started and stopped by the app). The in-memory answers of final
tasks past the same horizon are dropped with them (they are no longer served anyway: services/answers.py)."""

from __future__ import annotations

import asyncio
import logging

from ..clock import Clock
from ..config import StoreConfig
from ..jobs import Jobs
from ..store.base import Store
from .answers import AnswerCache

log = logging.getLogger(__name__)


class Retention:
    """`purge()` once; `start()`/`stop()` the periodic purge every `purge_interval_minutes`."""

    def __init__(
        self,
        store: Store,
        config: StoreConfig,
        clock: Clock,
        *,
        answers: AnswerCache | None = None,
        jobs: Jobs | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.answers = answers
        self._jobs = jobs or Jobs("retention")
        self._task: asyncio.Task[None] | None = None

    async def purge(self) -> tuple[int, int, int]:
        """Delete what expired; returns the counts (finished tasks, abandoned tasks, idempotency keys)."""
        keep = self.config.retention_days * 86400
        counts = (
            await self.store.purge_finished(older_than=keep),
            await self.store.purge_stale_unfinished(older_than=keep),
            await self.store.purge_idempotency_keys(),
        )
        if self.answers is not None:
            self.answers.expire()
        if any(counts):
            log.info("purged %d finished task(s), %d abandoned task(s), %d idempotency key(s)", *counts)
        return counts

    def start(self) -> None:
        """Start the periodic purge (idempotent)."""
        if self._task is None:
            self._task = self._jobs.spawn(self._run(), name="jimeng-purge")

    async def stop(self) -> None:
        """Stop the periodic purge and wait for it."""
        self._task = None
        await self._jobs.stop()

    async def _run(self) -> None:
        while True:
            await self.clock.sleep(self.config.purge_interval_minutes * 60)
            try:
                await self.purge()
            except Exception:
                log.exception("periodic purge failed")
