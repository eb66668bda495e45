"""Domain objects of the task store: task kinds, the spec's public statuses and the task record.

Pure data, no I/O. `TaskRecord.token` is a secret: it is excluded from `repr` so a logged record never
leaks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from ..upstream.history import HistoryRecord


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
    """One submitted upstream task as stored by `TaskStore`.

    `token` is the owning session token (a secret), kept only while the task still needs polling or
    delivery; `account_fp` is the owner's non-reversible fingerprint used for lookups and ownership
    checks. Timestamps are seconds on the store's clock. `fail_code` is "" when there is none.
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
    fail_reason: str | None
    item_count: int
    results: tuple[str, ...] | None
    raw_data: dict[str, Any] | None
    callback_url: str | None
    input_images: int | None
    created_at: float
    updated_at: float
    finished_at: float | None

    @property
    def final(self) -> bool:
        """True once the task is DONE or FAILED."""
        return self.status.final


class Reason(StrEnum):
    """Why a watch ended."""

    DONE = "done"
    UPSTREAM_FAILED = "upstream_failed"
    TIMEOUT = "timeout"
    NOT_FOUND = "not_found"
    SESSION_EXPIRED = "session_expired"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The final state of a watched task. `record` is the last upstream record seen, if any."""

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
