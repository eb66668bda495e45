"""The task records: task kinds, the spec's public statuses, the task record, settlements, webhook event types
and the store's write requests (progress, finishes, events).

Pure data, no I/O. `TaskRecord.token` is a secret: it is excluded from `repr` so a logged record never
leaks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Final

from ..upstream.history import HistoryRecord
from ..upstream.links import ResultRef
from .cost import TaskCost


class TaskKind(StrEnum):
    """What a task generates; the spec's `task_type` (its `unknown` exists only on the wire)."""

    IMAGE = "image"
    VIDEO = "video"


class TaskStatus(IntEnum):
    """The public task statuses of the spec: 10 done, 20 processing, 30 failed."""

    DONE = 10
    PROCESSING = 20
    FAILED = 30

    @property
    def final(self) -> bool:
        """True for DONE and FAILED: the task will not change any more."""
        return self is not TaskStatus.PROCESSING


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One submitted upstream task as stored by `SqliteStore`.

    `token` is the owning session token (a secret), kept only while the task still needs polling or
    delivery; `account_fp` is the owner id used for lookups and ownership checks: the submitting account's
    non-reversible fingerprint for raw-token tasks, `key:<id>` for tasks submitted with an API key, whose
    paying pool account is `account_id` (they store no token: the session is resolved from the account).
    Timestamps are seconds on the store's clock. `fail_code` is "" when there is none.
    """

    history_id: str
    account_fp: str
    token: str | None = field(repr=False)
    kind: TaskKind
    model: str
    submit_id: str
    status: TaskStatus
    upstream_status: int | None
    fail_code: str
    error: dict[str, str] | None  # a failed task's `{"code", "message"}` (tasks/answer.py `Failure`)
    item_count: int
    results: tuple[str, ...] | None
    raw_data: dict[str, Any] | None
    callback_url: str | None
    input_images: int | None
    created_at: float
    updated_at: float
    finished_at: float | None
    account_id: int | None = None
    parent_history_id: str | None = None  # a post-edit's source task (upscale, outpaint, repair, interpolation)

    @property
    def final(self) -> bool:
        """True once the task is DONE or FAILED."""
        return self.status.final

    @classmethod
    def submitted(
        cls,
        history_id: str,
        account_fp: str,
        token: str | None,
        kind: TaskKind,
        model: str,
        submit_id: str,
        *,
        at: float,
        callback_url: str | None = None,
        input_images: int | None = None,
        account_id: int | None = None,
        parent_history_id: str | None = None,
    ) -> TaskRecord:
        """A task just accepted upstream, as it is first stored: processing, nothing known of its outcome yet,
        created and updated `at`."""
        return cls(
            history_id=history_id,
            account_fp=account_fp,
            token=token,
            kind=kind,
            model=model,
            submit_id=submit_id,
            status=TaskStatus.PROCESSING,
            upstream_status=None,
            fail_code="",
            error=None,
            item_count=0,
            results=None,
            raw_data=None,
            callback_url=callback_url,
            input_images=input_images,
            created_at=at,
            updated_at=at,
            finished_at=None,
            account_id=account_id,
            parent_history_id=parent_history_id,
        )


class Reason(StrEnum):
    """Why a task's watch ended: a final upstream status, or the watcher settling it as failed."""

    DONE = "done"
    UPSTREAM_FAILED = "upstream_failed"
    TIMEOUT = "timeout"
    NOT_FOUND = "not_found"
    SESSION_EXPIRED = "session_expired"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a watch ended (or, for a sync caller whose wait ran out, where it stood: status PROCESSING with
    reason TIMEOUT). `record` is the last upstream record seen, if any."""

    history_id: str
    kind: TaskKind
    status: TaskStatus
    reason: Reason
    record: HistoryRecord | None
    detail: str = ""

    @property
    def urls(self) -> tuple[str, ...]:
        return self.record.urls(self.kind.value) if self.record else ()

    @property
    def fail_code(self) -> str:
        return self.record.fail_code if self.record else ""


@dataclass(frozen=True, slots=True)
class Settlement:
    """A task's final state as stored and answered (tasks/answer.py `settlement_of` builds it)."""

    status: TaskStatus
    upstream_status: int | None
    fail_code: str
    error: dict[str, str] | None
    results: tuple[str, ...] | None
    item_count: int
    raw_data: dict[str, Any] | None


EVENT_SUCCEEDED: Final = "task.succeeded"
EVENT_FAILED: Final = "task.failed"


def event_type_of(status: TaskStatus) -> str:
    """The webhook event type of a task settling with `status`: `task.succeeded` for DONE, `task.failed` for
    FAILED; ValueError for a status that is not final."""
    if status is TaskStatus.DONE:
        return EVENT_SUCCEEDED
    if status is TaskStatus.FAILED:
        return EVENT_FAILED
    raise ValueError(f"no webhook event for a task that is not final ({status!r})")


MakeEvent = Callable[[str | None, TaskCost | None], "NewEvent"]
"""Makes a task's webhook event from its source task (a post-edit's, else None) and stored cost (else None), as
the settle's transaction reads them."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A webhook event to add to the outbox: its id (the `webhook-id`), type and exact JSON body, and when the
    body's result links stop working as far as the body tells (`webhooks.events.links_expire_at`; None: not
    known, the sender then reads the body to find out)."""

    event_id: str
    type: str
    body: str
    links_expire_at: float | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """A poll of a task still processing: the upstream status, how many items it shows, its untouched record."""

    history_id: str
    upstream_status: int
    item_count: int
    raw_data: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Finish:
    """One task to settle: its final state and, for a task with a callback URL, its event: given, or made by
    `event(source, cost)` from what the settle's transaction reads of the task (the source task of a post-edit and
    the stored cost, each None when it has none); `refs`: what its results are re-signed from, stored in the same
    transaction (None: nothing to store)."""

    history_id: str
    settlement: Settlement
    event: NewEvent | MakeEvent | None
    refs: tuple[ResultRef | None, ...] | None = None


@dataclass(frozen=True, slots=True)
class Settled:
    """A task `SqliteStore.settle` made final, and whether its event went to the outbox."""

    history_id: str
    event_written: bool
