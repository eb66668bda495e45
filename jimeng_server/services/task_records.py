"""The stored tasks as handlers read them: one caller's task or list, the dashboard's latest tasks, a task's
webhook events and attempts, and a redelivery. Handlers call this service, never the store (an import-linter
contract keeps store backends out of `api/`); it returns records, the API layer shapes the JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..store.base import Redelivery, Store
from ..store.outbox import Attempt, OutboxEvent
from ..tasks.cost import TaskCost
from ..tasks.records import TaskKind, TaskRecord
from .callers import Caller


@dataclass(frozen=True, slots=True)
class DeliveryLog:
    """A task's webhook events (oldest first) and the attempts made for them (event order, then attempt order)."""

    events: list[OutboxEvent]
    attempts: list[Attempt]


class TaskRecords:
    """Read access to stored tasks and their webhook outbox, and the one write a handler asks for (redeliver)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def ping(self) -> None:
        """Raise unless the store answers (the readiness probe)."""
        await self._store.ping()

    async def find(self, history_id: str) -> TaskRecord | None:
        """The stored task with this id, whoever owns it (admin views, owner checks made by the caller)."""
        return await self._store.get(history_id)

    async def owned(self, caller: Caller, history_id: str) -> TaskRecord | None:
        """The stored task with this id when one of the caller's identities (`Caller.owners`) submitted it, else
        None: another owner's task is indistinguishable from an unknown id."""
        record = await self._store.get(history_id)
        return record if record is not None and record.account_fp in caller.owners else None

    async def recent(self, limit: int) -> list[tuple[TaskRecord, str | None]]:
        """The latest `limit` tasks, newest first, each with its latest webhook event's state (None: none)."""
        return await self._store.recent(limit)

    async def recent_of(self, owners: Sequence[str], kind: TaskKind, limit: int) -> list[TaskRecord]:
        """The latest `limit` tasks of `kind` owned by any of `owners`, newest first."""
        return await self._store.recent_of(owners, kind, limit)

    async def costs_of(self, history_ids: Sequence[str]) -> dict[str, TaskCost]:
        """The stored costs (tasks/cost.py) of the tasks among `history_ids` that have one, keyed by id."""
        return await self._store.costs_of(history_ids)

    async def kept_file_owners(self, file_id: str) -> frozenset[str]:
        """The owners of the tasks whose kept results include this file."""
        return await self._store.kept_file_owners(file_id)

    async def deliveries(self, history_id: str) -> DeliveryLog:
        """The task's webhook events and delivery attempts (empty lists for a task without callback_url)."""
        return DeliveryLog(await self._store.events_of(history_id), await self._store.attempts_of(history_id))

    async def redeliver(self, history_id: str, *, now: float) -> Redelivery:
        """Queue the task's latest event again, due `now` (`Store.redeliver_latest`: same id, schedule restarted;
        an event being sent right now is left alone)."""
        return await self._store.redeliver_latest(history_id, now=now)
