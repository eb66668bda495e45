"""The webhook outbox's data: event states, stored events and recorded attempts (backend-neutral).

Both backends store them (`tables.Outbox`) behind `base.OutboxStore`; scheduling and HTTP
live in `webhooks/sender.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = ["ACTIVE_STATES", "NO_CLAIM", "Attempt", "AttemptResult", "EventClaim", "EventState", "OutboxEvent"]


class EventState(StrEnum):
    """Delivery state of one event."""

    PENDING = "pending"  # waiting for `next_attempt_at`
    DELIVERING = "delivering"  # claimed by a sender until `lease_until`
    DELIVERED = "delivered"  # a 2xx answer was received
    EXHAUSTED = "exhausted"  # every attempt of the schedule failed
    STOPPED = "stopped"  # the receiver answered 410 Gone

    @property
    def active(self) -> bool:
        """True while the event still wants delivering (pending or delivering)."""
        return self in ACTIVE_STATES


ACTIVE_STATES: Final = frozenset({EventState.PENDING, EventState.DELIVERING})


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One stored event. `body` is the exact JSON text sent (and signed); `attempts` counts every attempt
    ever made, `round_start` those made before the last redelivery (the retry schedule restarts there);
    `links_expire_at`: when the body's result links stop working as the body tells, stored with it
    (`webhooks.events.links_expire_at`; None for an event written before it was stored)."""

    event_id: str
    seq: int
    history_id: str
    account_fp: str
    type: str
    body: str
    callback_url: str
    state: EventState
    attempts: int
    round_start: int
    next_attempt_at: float | None
    lease_until: float | None
    created_at: float
    updated_at: float
    links_expire_at: float | None = None

    @property
    def round_attempts(self) -> int:
        """Attempts made since the event was (re)queued."""
        return self.attempts - self.round_start


@dataclass(frozen=True, slots=True)
class Attempt:
    """One recorded delivery attempt. `status` is None when no HTTP answer came (then `error` says why);
    `next_attempt_at` is None when no further attempt follows."""

    event_id: str
    attempt: int
    at: float
    status: int | None
    error: str | None
    latency_ms: int
    next_attempt_at: float | None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """A finished delivery attempt to record: its `Attempt` row and the event's state after it (the next attempt
    is due at `attempt.next_attempt_at` when the state is pending)."""

    attempt: Attempt
    state: EventState


@dataclass(frozen=True, slots=True)
class EventClaim:
    """What a settle may claim of the events it writes for a sender in its own process (`TaskTable.settle_claiming`):
    the first `limit` of them are written `delivering`, leased until `lease_until`, and returned; `limit` 0 claims
    none (every event is written pending, for whichever sender claims it)."""

    limit: int
    lease_until: float


NO_CLAIM: Final = EventClaim(0, 0.0)
"""Claim none of a settle's events."""
