"""Keep jobs (`[results] keep = "local"`, issue 21): one row per result of a settled task, from "pending" to "kept"
(the bytes are in the results directory under `file_id`, the SHA-256 of their content) or "failed" (the keeper gave
up after its retries; the answer then carries the upstream's link); a kept result becomes "expired" when retention
removes its file. Backend-neutral records (row mapping in `rows.py`); each backend stores
them behind `base.KeepStore` (written once in `tables.py`), the work is `services/keeper.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["KeepJob", "KeepState", "KeptFile"]


class KeepState(StrEnum):
    """Where a result's keeping stands."""

    PENDING = "pending"  # waiting for `next_attempt_at`
    KEEPING = "keeping"  # claimed by a keeper until `lease_until`
    KEPT = "kept"  # the bytes are stored as `file_id`
    FAILED = "failed"  # every attempt failed (`error` says why of the last)
    EXPIRED = "expired"  # was kept; its file was removed by retention (`keep_days`, the quota)

    @property
    def final(self) -> bool:
        """True for KEPT, FAILED and EXPIRED: nothing more happens to the job."""
        return self is not KeepState.PENDING and self is not KeepState.KEEPING


@dataclass(frozen=True, slots=True)
class KeptFile:
    """A kept file: its id, size and when a result was last kept as it."""

    file_id: str
    size: int
    last_kept_at: float


@dataclass(frozen=True, slots=True)
class KeepJob:
    """One result to keep: its task, its position in `results`, the upstream URL it was settled with."""

    history_id: str
    position: int
    url: str
    state: KeepState
    attempts: int
    next_attempt_at: float | None
    lease_until: float | None
    file_id: str | None
    size: int | None
    content_type: str | None
    error: str | None
    created_at: float
    updated_at: float
