"""The SQLite backend's webhook outbox SQL over `webhook_events` and `webhook_attempts` (schema: sqlite migration 2).

Private to `sqlite.SqliteStore`: every function takes the connection of one of its transactions or reads;
`SqliteStore.settle` calls `insert_events` inside the transaction that makes the task final, so a state change and
its event are written together. Pure SQL and row mapping; the types are in `outbox.py`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Final

import aiosqlite

from ..tasks.records import NewEvent
from .outbox import Attempt, AttemptResult, EventState, OutboxEvent
from .rows import EVENT_COLUMNS, attempt_from_row, attempt_params, event_from_row, finish_params

_ACTIVE_SQL: Final = "('pending', 'delivering')"


# ---------------------------------------------------------------------------------------------- writing


async def insert_events(conn: aiosqlite.Connection, events: Sequence[tuple[str, NewEvent]], *, now: float) -> None:
    """Add a pending event, due now, for each `(history_id, event)`, in order, to the task's owner and callback URL
    (both read from the task row; a task without a callback URL gets none). Each `event_id` must be new."""
    await conn.executemany(
        f"""
        INSERT INTO webhook_events ({EVENT_COLUMNS})
        SELECT ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM webhook_events), history_id, account_fp, ?, ?,
               callback_url, 'pending', 0, 0, ?, NULL, ?, ?
        FROM tasks WHERE history_id = ? AND callback_url IS NOT NULL
        """,
        [(event.event_id, event.type, event.body, now, now, now, history_id) for history_id, event in events],
    )


async def next_due_after(conn: aiosqlite.Connection, now: float) -> float | None:
    """The earliest `next_attempt_at` later than `now` among pending events (None if there is none):
    when the sender must look again at the latest."""
    # `state IN (active)` (not `= 'pending'`) so SQLite uses the partial index webhook_events_due instead of
    # scanning every event ever kept; a claimed event's next_attempt_at is already past, so it never counts.
    rows = list(
        await conn.execute_fetchall(
            "SELECT MIN(next_attempt_at) AS due FROM webhook_events "
            f"WHERE state IN {_ACTIVE_SQL} AND next_attempt_at > ?",
            (now,),
        )
    )
    return float(rows[0]["due"]) if rows and rows[0]["due"] is not None else None


async def release_leases(conn: aiosqlite.Connection, *, now: float) -> int:
    """Return every `delivering` event to `pending`, due at once (at start-up: their sender is gone).

    Assumes one sender per database file. Returns how many were released.
    """
    cur = await conn.execute(
        "UPDATE webhook_events SET state = 'pending', lease_until = NULL, "
        "next_attempt_at = MIN(COALESCE(next_attempt_at, ?), ?), updated_at = ? WHERE state = 'delivering'",
        (now, now, now),
    )
    return cur.rowcount


async def claim_due(
    conn: aiosqlite.Connection, *, now: float, limit: int, lease_until: float, exclude: Collection[str] = ()
) -> list[OutboxEvent]:
    """Claim up to `limit` due events (oldest due first) and mark them `delivering` until `lease_until`.

    Due: pending (or delivering with an expired lease) with `next_attempt_at <= now`, not in `exclude`
    (events this sender still has in flight), and no earlier active event of the same task (a task's
    events go out in order). ONE statement, so it is atomic on its own (no transaction needed): two claimers
    never get the same event.
    """
    if limit <= 0:
        return []
    rows = await conn.execute_fetchall(
        f"""
        UPDATE webhook_events SET state = 'delivering', lease_until = ?, updated_at = ?
        WHERE event_id IN (
            SELECT e.event_id FROM webhook_events e
            WHERE e.state IN {_ACTIVE_SQL} AND e.next_attempt_at <= ?
              AND (e.lease_until IS NULL OR e.lease_until <= ?)
              AND e.event_id NOT IN (SELECT value FROM json_each(?))
              AND NOT EXISTS (
                  SELECT 1 FROM webhook_events p
                  WHERE p.history_id = e.history_id AND p.seq < e.seq AND p.state IN {_ACTIVE_SQL}
              )
            ORDER BY e.next_attempt_at, e.seq
            LIMIT ?
        )
        RETURNING {EVENT_COLUMNS}
        """,
        (lease_until, now, now, now, json.dumps(list(exclude)), limit),
    )
    events = [event_from_row(row) for row in rows]
    return sorted(events, key=lambda e: (e.next_attempt_at or 0.0, e.seq))


async def complete_attempts(conn: aiosqlite.Connection, results: Sequence[AttemptResult]) -> None:
    """Record each finished attempt and move its event to the result's state (next attempt due at
    `next_attempt_at` when pending), releasing its lease."""
    await conn.executemany(
        "INSERT OR REPLACE INTO webhook_attempts (event_id, attempt, at, status, error, latency_ms, next_attempt_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        attempt_params(results),
    )
    await conn.executemany(
        "UPDATE webhook_events SET state = ?, attempts = MAX(attempts, ?), next_attempt_at = ?, lease_until = NULL, "
        "updated_at = ? WHERE event_id = ?",
        finish_params(results),
    )


async def unclaim(conn: aiosqlite.Connection, event_ids: Collection[str], *, now: float) -> None:
    """Give claimed events back (pending, due now, no attempt recorded): their sends were cancelled."""
    await conn.execute(
        "UPDATE webhook_events SET state = 'pending', lease_until = NULL, next_attempt_at = ?, updated_at = ? "
        "WHERE state = 'delivering' AND event_id IN (SELECT value FROM json_each(?))",
        (now, now, json.dumps(list(event_ids))),
    )


async def requeue(conn: aiosqlite.Connection, event_id: str, *, now: float) -> bool:
    """Queue an event again (redelivery): pending, due `now`, its retry schedule restarted; the event id
    stays the same. An event being delivered right now is left alone: returns False."""
    cur = await conn.execute(
        "UPDATE webhook_events SET state = 'pending', round_start = attempts, next_attempt_at = ?, "
        "lease_until = NULL, updated_at = ? WHERE event_id = ? AND state != 'delivering'",
        (now, now, event_id),
    )
    return cur.rowcount == 1


# ---------------------------------------------------------------------------------------------- reading


async def events_of(conn: aiosqlite.Connection, history_id: str) -> list[OutboxEvent]:
    """Every event of a task, oldest first."""
    async with conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM webhook_events WHERE history_id = ? ORDER BY seq", (history_id,)
    ) as cur:
        rows = await cur.fetchall()
    return [event_from_row(row) for row in rows]


async def attempts_of(conn: aiosqlite.Connection, history_id: str) -> list[Attempt]:
    """Every recorded attempt for a task's events, in event order, then attempt order."""
    async with conn.execute(
        "SELECT a.event_id, a.attempt, a.at, a.status, a.error, a.latency_ms, a.next_attempt_at "
        "FROM webhook_attempts a JOIN webhook_events e ON e.event_id = a.event_id "
        "WHERE e.history_id = ? ORDER BY e.seq, a.attempt",
        (history_id,),
    ) as cur:
        rows = await cur.fetchall()
    return [attempt_from_row(row) for row in rows]


async def state_counts(conn: aiosqlite.Connection) -> dict[EventState, int]:
    """How many events are in each state (states without events are absent)."""
    async with conn.execute("SELECT state, COUNT(*) AS n FROM webhook_events GROUP BY state") as cur:
        rows = await cur.fetchall()
    return {EventState(row["state"]): int(row["n"]) for row in rows}
