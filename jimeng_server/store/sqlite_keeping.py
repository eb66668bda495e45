"""The SQLite backend's keep-job SQL over `kept_results` (schema: `MIGRATION_KEPT` below; issue 21).

Private to `sqlite.SqliteStore`: every function takes the connection of one of its transactions or reads. Pure SQL;
the records are in `keeping.py`, the contracts in `base.KeepStore`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Final

import aiosqlite

from .keeping import KeepJob, KeptFile
from .rows import KEEP_COLUMNS, keep_job_from_row

MIGRATION_KEPT: Final = """
-- One row per result of a settled task that is kept (issue 21, [results] keep = "local"); dropped with its task.
CREATE TABLE kept_results (
    history_id      TEXT NOT NULL REFERENCES tasks (history_id) ON DELETE CASCADE,
    position        INTEGER NOT NULL,           -- the result's index in the task's `results`
    url             TEXT NOT NULL,              -- the upstream URL it was settled with
    state           TEXT NOT NULL CHECK (state IN ('pending', 'keeping', 'kept', 'failed', 'expired')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,                       -- a pending job is due then
    lease_until     REAL,                       -- a claimed ('keeping') job is reserved until then
    file_id         TEXT,                       -- SHA-256 hex of the kept bytes (the file's name)
    size            INTEGER,
    content_type    TEXT,
    error           TEXT,                       -- why the last attempt failed
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    PRIMARY KEY (history_id, position)
) WITHOUT ROWID;
CREATE INDEX kept_results_due ON kept_results (next_attempt_at) WHERE state IN ('pending', 'keeping');
CREATE INDEX kept_results_file ON kept_results (file_id) WHERE file_id IS NOT NULL;
"""


async def add_jobs(conn: aiosqlite.Connection, jobs: Mapping[str, Sequence[str]], *, now: float) -> None:
    """One pending job per URL of each stored task, due now; positions already there are left as they are."""
    await conn.executemany(
        "INSERT INTO kept_results (history_id, position, url, state, attempts, next_attempt_at, created_at, "
        "updated_at) SELECT ?1, ?2, ?3, 'pending', 0, ?4, ?4, ?4 "
        "WHERE EXISTS (SELECT 1 FROM tasks WHERE history_id = ?1) ON CONFLICT (history_id, position) DO NOTHING",
        [(hid, n, url, now) for hid, urls in jobs.items() for n, url in enumerate(urls)],
    )


async def claim(conn: aiosqlite.Connection, *, now: float, lease_seconds: float, limit: int) -> list[KeepJob]:
    """Claim due jobs (pending and due, or keeping with a lease run out), oldest first, inside a write."""
    rows = list(
        await conn.execute_fetchall(
            "SELECT history_id, position FROM kept_results WHERE state IN ('pending', 'keeping') "
            "AND ((state = 'pending' AND next_attempt_at <= ?1) OR (state = 'keeping' AND lease_until <= ?1)) "
            "ORDER BY next_attempt_at, history_id, position LIMIT ?2",
            (now, limit),
        )
    )
    if not rows:
        return []
    keys = json.dumps([[r["history_id"], r["position"]] for r in rows])
    claimed = await conn.execute_fetchall(
        f"UPDATE kept_results SET state = 'keeping', lease_until = ?1, attempts = attempts + 1, updated_at = ?2 "
        "WHERE (history_id, position) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') "
        f"FROM json_each(?3)) RETURNING {KEEP_COLUMNS}",
        (now + lease_seconds, now, keys),
    )
    return sorted((keep_job_from_row(r) for r in claimed), key=lambda j: (j.history_id, j.position))


async def finish(
    conn: aiosqlite.Connection,
    history_id: str,
    position: int,
    *,
    file_id: str,
    size: int,
    content_type: str,
    now: float,
) -> None:
    """Mark a claimed job kept."""
    await conn.execute(
        "UPDATE kept_results SET state = 'kept', file_id = ?, size = ?, content_type = ?, error = NULL, "
        "lease_until = NULL, next_attempt_at = NULL, updated_at = ? WHERE history_id = ? AND position = ?",
        (file_id, size, content_type, now, history_id, position),
    )


async def retry(
    conn: aiosqlite.Connection,
    history_id: str,
    position: int,
    *,
    error: str,
    next_attempt_at: float | None,
    now: float,
) -> None:
    """A failed attempt: pending again until `next_attempt_at`, or failed for good when it is None."""
    state = "pending" if next_attempt_at is not None else "failed"
    await conn.execute(
        "UPDATE kept_results SET state = ?, error = ?, next_attempt_at = ?, lease_until = NULL, updated_at = ? "
        "WHERE history_id = ? AND position = ?",
        (state, error, next_attempt_at, now, history_id, position),
    )


async def jobs_of(conn: aiosqlite.Connection, history_ids: Sequence[str]) -> dict[str, list[KeepJob]]:
    """The jobs of these tasks by position."""
    rows = await conn.execute_fetchall(
        f"SELECT {KEEP_COLUMNS} FROM kept_results WHERE history_id IN (SELECT value FROM json_each(?)) "
        "ORDER BY history_id, position",
        (json.dumps(list(history_ids)),),
    )
    out: dict[str, list[KeepJob]] = {}
    for row in rows:
        job = keep_job_from_row(row)
        out.setdefault(job.history_id, []).append(job)
    return out


async def next_due(conn: aiosqlite.Connection, *, now: float) -> float | None:
    """The earliest time after `now` a job becomes claimable (a pending one's due time, a lease's end)."""
    rows = list(
        await conn.execute_fetchall(
            "SELECT MIN(CASE WHEN state = 'pending' THEN next_attempt_at ELSE lease_until END) AS due "
            "FROM kept_results WHERE state IN ('pending', 'keeping') "
            "AND CASE WHEN state = 'pending' THEN next_attempt_at ELSE lease_until END > ?",
            (now,),
        )
    )
    return float(rows[0]["due"]) if rows and rows[0]["due"] is not None else None


async def file_owners(conn: aiosqlite.Connection, file_id: str) -> frozenset[str]:
    """The owners (`account_fp`) of the tasks that kept this file."""
    rows = await conn.execute_fetchall(
        "SELECT DISTINCT t.account_fp FROM kept_results k JOIN tasks t ON t.history_id = k.history_id "
        "WHERE k.file_id = ? AND k.state = 'kept'",
        (file_id,),
    )
    return frozenset(str(r["account_fp"]) for r in rows)


async def wake_held(conn: aiosqlite.Connection, history_id: str, *, now: float) -> int:
    """Make the task's pending events that were never tried in their round due now (held back while keeping)."""
    cur = await conn.execute(
        "UPDATE webhook_events SET next_attempt_at = ?1, updated_at = ?1 WHERE history_id = ?2 "
        "AND state = 'pending' AND attempts = round_start AND next_attempt_at > ?1",
        (now, history_id),
    )
    return cur.rowcount


async def kept_files(conn: aiosqlite.Connection) -> list[KeptFile]:
    """Every kept file, least recently kept first."""
    rows = await conn.execute_fetchall(
        "SELECT file_id, MAX(size) AS size, MAX(updated_at) AS last FROM kept_results WHERE state = 'kept' "
        "GROUP BY file_id ORDER BY last, file_id"
    )
    return [KeptFile(r["file_id"], int(r["size"] or 0), float(r["last"])) for r in rows]


async def expire_files(conn: aiosqlite.Connection, file_ids: Sequence[str], *, now: float) -> list[str]:
    """Mark every kept result of these files expired; the ids of their tasks."""
    rows = await conn.execute_fetchall(
        "UPDATE kept_results SET state = 'expired', updated_at = ? WHERE state = 'kept' "
        "AND file_id IN (SELECT value FROM json_each(?)) RETURNING history_id",
        (now, json.dumps(list(file_ids))),
    )
    return sorted({str(r["history_id"]) for r in rows})
