"""The idempotency claim decision (pure): what a stored key row means for a new request with the same key.

Every store backend reads (or locks) the key row in its own transaction and calls `decide_claim`; a NEW answer
means the backend (re)writes the row as a fresh, unanswered claim before it commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

__all__ = ["ClaimState", "IdempotencyClaim", "KeyRowView", "decide_claim"]


class ClaimState(StrEnum):
    """Outcome of `IdempotencyStore.claim_idempotency_key`."""

    NEW = "new"  # first use of the key: run the request, then complete_idempotency_key or release_idempotency_key
    REPLAY = "replay"  # same request already answered: send the stored status and body again
    MISMATCH = "mismatch"  # key reused with a different request body
    IN_PROGRESS = "in_progress"  # the first request with this key has not finished yet


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """An idempotency decision; `status` and `body` are set only for REPLAY."""

    state: ClaimState
    status: int | None = None
    body: bytes | None = None


class KeyRowView(Protocol):
    """A stored key row addressed by column: `request_hash`, `status` (None while unanswered), `body`,
    `created_at`, `expires_at`."""

    def __getitem__(self, key: str, /) -> Any: ...


def decide_claim(row: KeyRowView | None, request_hash: str, *, now: float, lease: float | None) -> IdempotencyClaim:
    """The claim of `request_hash` against the stored row of its key (None: no row).

    NEW when there is no row, the row expired, or it is an unanswered claim older than `lease` (its request
    died without releasing it); otherwise MISMATCH for another request body, IN_PROGRESS while unanswered, and
    REPLAY with the stored answer.
    """
    if row is None or row["expires_at"] <= now:
        return IdempotencyClaim(ClaimState.NEW)
    if row["status"] is None and lease is not None and row["created_at"] <= now - lease:
        return IdempotencyClaim(ClaimState.NEW)
    if row["request_hash"] != request_hash:
        return IdempotencyClaim(ClaimState.MISMATCH)
    if row["status"] is None:
        return IdempotencyClaim(ClaimState.IN_PROGRESS)
    return IdempotencyClaim(ClaimState.REPLAY, status=int(row["status"]), body=bytes(row["body"] or b""))
