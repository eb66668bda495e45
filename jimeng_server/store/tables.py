"""The store's tables written once: each table's statements (PostgreSQL text, rendered per dialect by
`dialect.render`) and the `base.Store` methods over them, as mixins both backends inherit.

A backend supplies `_clock` and three ways to get a `dialect.Db`: `_tx()` (one transaction; on PostgreSQL the
rows it selects `FOR UPDATE` stay locked until it ends), `_read()` (reads only) and `_stmt()` (one statement
that is its own transaction), and `_notify` on a shared backend. To add a table: one `shared(...)` step at
the end of `schema.HISTORY`, a Protocol of its operations in `base.py` that `Store` extends, and its statements
and a mixin here listed in `SharedTables` (a new record's row mapper goes in `rows.py`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Final, Self

from ..clock import Clock
from ..tasks.claims import ClaimState, IdempotencyClaim, decide_claim
from ..tasks.cost import CostSource, TaskCost
from ..tasks.records import Finish, NewEvent, Progress, Settled, TaskKind, TaskRecord, TaskStatus
from ..tasks.settle import check_finals, plan_settle
from ..upstream.links import ResultRef
from .base import Notice, NoticeKind, Redelivery, TaskOwnershipError
from .dialect import Db, Dialect, UniqueViolation
from .keeping import KeepJob, KeptFile
from .outbox import NO_CLAIM, Attempt, AttemptResult, EventClaim, EventState, OutboxEvent
from .pool import AccountHealth, AccountRow, Cooldown, DuplicateError, KeyRow, NewAccount, NewKey
from .rows import (
    ACCOUNT_COLUMNS,
    EVENT_COLUMNS,
    KEEP_COLUMNS,
    KEY_COLUMNS,
    TASK_COLUMNS,
    Row,
    account_from_row,
    attempt_from_row,
    attempt_params,
    cooldown_from_row,
    event_from_row,
    finish_params,
    keep_job_from_row,
    key_from_row,
    progress_params,
    record_from_row,
    record_params,
    refs_from_text,
    refs_text,
    settle_params,
)

__all__ = [
    "IdempotencyKeys",
    "KeepJobs",
    "ModelCooldowns",
    "Outbox",
    "Pool",
    "ResultRefs",
    "SharedTables",
    "TableBase",
    "Tasks",
]


_PROCESSING: Final = int(TaskStatus.PROCESSING)


class TableBase:
    """What a backend gives the table mixins (see the module docstring). `_shared` is True for a backend
    several processes use at once (PostgreSQL): then a lease another process holds is never taken early."""

    _clock: Clock
    _shared: bool = False

    def _tx(self) -> AbstractAsyncContextManager[Db]:
        raise NotImplementedError

    def _read(self) -> AbstractAsyncContextManager[Db]:
        raise NotImplementedError

    def _stmt(self) -> AbstractAsyncContextManager[Db]:
        raise NotImplementedError

    async def _notify(self, db: Db, notices: Sequence[Notice]) -> None:
        """Tell the other replicas, on commit of `db`'s transaction (a shared backend overrides this)."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def ping(self) -> None:
        """One trivial query: returns when the database answers, raises when it does not (e.g. closed)."""
        async with self._read() as db:
            await db.fetchval("SELECT 1")


# ------------------------------------------------------------------------------------------------ idempotency

INSERT_KEY: Final = """
INSERT INTO idempotency_keys (account_fp, key, request_hash, status, body, created_at, expires_at)
VALUES ($1, $2, $3, NULL, NULL, $4, $5)
ON CONFLICT (account_fp, key) DO NOTHING
RETURNING 1
"""
LOCK_KEY: Final = (
    "SELECT request_hash, status, body, created_at, expires_at FROM idempotency_keys "
    "WHERE account_fp = $1 AND key = $2 FOR UPDATE"
)
RENEW_KEY: Final = (
    "UPDATE idempotency_keys SET request_hash = $3, status = NULL, body = NULL, created_at = $4, expires_at = $5 "
    "WHERE account_fp = $1 AND key = $2"
)
COMPLETE_KEY: Final = "UPDATE idempotency_keys SET status = $3, body = $4 WHERE account_fp = $1 AND key = $2"
RELEASE_KEY: Final = "DELETE FROM idempotency_keys WHERE account_fp = $1 AND key = $2 AND status IS NULL"
PURGE_KEYS: Final = "DELETE FROM idempotency_keys WHERE expires_at <= $1"


class IdempotencyKeys(TableBase):
    """`base.IdempotencyStore` (table `idempotency_keys`)."""

    async def claim_idempotency_key(
        self, account_fp: str, key: str, request_hash: str, *, ttl: float = 86400, lease: float | None = None
    ) -> IdempotencyClaim:
        """See `base.IdempotencyStore.claim_idempotency_key`: the key row is inserted, or else read under a row
        lock (SQLite: inside its one writer's transaction), so concurrent claims are decided one after the
        other; `tasks.claims.decide_claim` decides. A new key (the common case) takes one statement on its own
        (one trip: no transaction around it); only a key already there is decided in a transaction."""
        now = self._clock.time()
        async with self._stmt() as db:
            if await db.fetchval(INSERT_KEY, account_fp, key, request_hash, now, now + ttl) is not None:
                return IdempotencyClaim(ClaimState.NEW)
        async with self._tx() as db:
            while (row := await db.fetchrow(LOCK_KEY, account_fp, key)) is None:
                # released since the INSERT above: claim it anew (None: another claim inserted it first)
                if await db.fetchval(INSERT_KEY, account_fp, key, request_hash, now, now + ttl) is not None:
                    return IdempotencyClaim(ClaimState.NEW)
            claim = decide_claim(row, request_hash, now=now, lease=lease)
            if claim.state is ClaimState.NEW:
                await db.execute(RENEW_KEY, account_fp, key, request_hash, now, now + ttl)
            return claim

    async def complete_idempotency_key(self, account_fp: str, key: str, *, status: int, body: bytes) -> None:
        """See `base.IdempotencyStore.complete_idempotency_key`."""
        async with self._stmt() as db:
            await db.execute(COMPLETE_KEY, account_fp, key, status, body)

    async def release_idempotency_key(self, account_fp: str, key: str) -> None:
        """See `base.IdempotencyStore.release_idempotency_key`."""
        async with self._stmt() as db:
            await db.execute(RELEASE_KEY, account_fp, key)

    async def purge_idempotency_keys(self) -> int:
        """See `base.IdempotencyStore.purge_idempotency_keys`."""
        async with self._stmt() as db:
            return await db.execute(PURGE_KEYS, self._clock.time())


# ------------------------------------------------------------------------------------------------ result refs

# Written by the settle only, for tasks its own transaction found (and locked): no existence check.
PUT_RESULT_REFS: Final = """
INSERT INTO result_refs (history_id, refs, created_at) VALUES ($1, $2, $3) ON CONFLICT (history_id) DO NOTHING
"""
RESULT_REFS_OF: Final = "SELECT history_id, refs FROM result_refs WHERE history_id = ANY($1::text[])"


class ResultRefs(TableBase):
    """`base.ResultRefStore` (table `result_refs`)."""

    async def result_refs_of(self, history_ids: Sequence[str]) -> dict[str, tuple[ResultRef | None, ...]]:
        """See `base.ResultRefStore.result_refs_of`."""
        if not history_ids:
            return {}
        async with self._read() as db:
            rows = await db.fetch(RESULT_REFS_OF, list(history_ids))
        return {row["history_id"]: refs_from_text(row["refs"]) for row in rows}


# ------------------------------------------------------------------------------------------------ keep jobs

ADD_KEEP_JOB: Final = """
INSERT INTO kept_results (history_id, position, url, state, attempts, next_attempt_at, created_at, updated_at)
SELECT $1, $2, $3, 'pending', 0, $4, $4, $4 WHERE EXISTS (SELECT 1 FROM tasks WHERE history_id = $1)
ON CONFLICT (history_id, position) DO NOTHING
"""
CLAIM_KEEP_JOBS: Final = f"""
WITH due AS (
    SELECT history_id AS due_id, position AS due_position FROM kept_results
    WHERE (state = 'pending' AND next_attempt_at <= $1) OR (state = 'keeping' AND lease_until <= $1)
    ORDER BY next_attempt_at, history_id, position
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE kept_results AS k SET state = 'keeping', lease_until = $3, attempts = k.attempts + 1, updated_at = $1
FROM due WHERE k.history_id = due.due_id AND k.position = due.due_position
RETURNING {KEEP_COLUMNS}
"""
FINISH_KEEP_JOB: Final = """
UPDATE kept_results SET state = 'kept', file_id = $3, size = $4, content_type = $5, error = NULL, lease_until = NULL,
    next_attempt_at = NULL, updated_at = $6
WHERE history_id = $1 AND position = $2
"""
RETRY_KEEP_JOB: Final = """
UPDATE kept_results SET state = $3, error = $4, next_attempt_at = $5, lease_until = NULL, updated_at = $6
WHERE history_id = $1 AND position = $2
"""
KEEP_JOBS_OF: Final = (
    f"SELECT {KEEP_COLUMNS} FROM kept_results WHERE history_id = ANY($1::text[]) ORDER BY history_id, position"
)
NEXT_KEEP_DUE: Final = """
SELECT MIN(CASE WHEN state = 'pending' THEN next_attempt_at ELSE lease_until END) FROM kept_results
WHERE state IN ('pending', 'keeping') AND CASE WHEN state = 'pending' THEN next_attempt_at ELSE lease_until END > $1
"""
KEPT_FILE_OWNERS: Final = """
SELECT DISTINCT t.account_fp FROM kept_results k JOIN tasks t ON t.history_id = k.history_id
WHERE k.file_id = $1 AND k.state = 'kept'
"""
WAKE_HELD_EVENTS: Final = """
UPDATE webhook_events SET next_attempt_at = $1, updated_at = $1
WHERE history_id = $2 AND state = 'pending' AND attempts = round_start AND next_attempt_at > $1
"""
KEPT_FILES: Final = """
SELECT file_id, MAX(size) AS size, MAX(updated_at) AS last FROM kept_results WHERE state = 'kept'
GROUP BY file_id ORDER BY last, file_id
"""
EXPIRE_FILES: Final = """
UPDATE kept_results SET state = 'expired', updated_at = $1 WHERE state = 'kept' AND file_id = ANY($2::text[])
RETURNING history_id
"""


class KeepJobs(TableBase):
    """`base.KeepStore` (table `kept_results`; claims take due jobs `FOR UPDATE SKIP LOCKED` on PostgreSQL, so
    replicas never get the same job)."""

    async def add_keep_jobs(self, jobs: Mapping[str, Sequence[str]], *, now: float) -> None:
        """See `base.KeepStore.add_keep_jobs` (one transaction)."""
        rows = [(hid, n, url, now) for hid, urls in jobs.items() for n, url in enumerate(urls)]
        if rows:
            async with self._tx() as db:
                await db.executemany(ADD_KEEP_JOB, rows)

    async def claim_keep_jobs(self, *, now: float, lease_seconds: float, limit: int) -> list[KeepJob]:
        """See `base.KeepStore.claim_keep_jobs`."""
        if limit <= 0:
            return []
        async with self._stmt() as db:
            rows = await db.fetch(CLAIM_KEEP_JOBS, now, limit, now + lease_seconds)
        return sorted((keep_job_from_row(r) for r in rows), key=lambda j: (j.history_id, j.position))

    async def finish_keep_job(
        self, history_id: str, position: int, *, file_id: str, size: int, content_type: str, now: float
    ) -> None:
        """See `base.KeepStore.finish_keep_job`."""
        async with self._stmt() as db:
            await db.execute(FINISH_KEEP_JOB, history_id, position, file_id, size, content_type, now)

    async def retry_keep_job(
        self, history_id: str, position: int, *, error: str, next_attempt_at: float | None, now: float
    ) -> None:
        """See `base.KeepStore.retry_keep_job`."""
        state = "pending" if next_attempt_at is not None else "failed"
        async with self._stmt() as db:
            await db.execute(RETRY_KEEP_JOB, history_id, position, state, error, next_attempt_at, now)

    async def keep_jobs_of(self, history_ids: Sequence[str]) -> dict[str, list[KeepJob]]:
        """See `base.KeepStore.keep_jobs_of`."""
        if not history_ids:
            return {}
        async with self._read() as db:
            rows = await db.fetch(KEEP_JOBS_OF, list(history_ids))
        out: dict[str, list[KeepJob]] = {}
        for row in rows:
            job = keep_job_from_row(row)
            out.setdefault(job.history_id, []).append(job)
        return out

    async def next_keep_due(self, *, now: float) -> float | None:
        """See `base.KeepStore.next_keep_due`."""
        async with self._read() as db:
            due = await db.fetchval(NEXT_KEEP_DUE, now)
        return float(due) if due is not None else None

    async def kept_file_owners(self, file_id: str) -> frozenset[str]:
        """See `base.KeepStore.kept_file_owners`."""
        async with self._read() as db:
            return frozenset(str(r["account_fp"]) for r in await db.fetch(KEPT_FILE_OWNERS, file_id))

    async def wake_held_events(self, history_id: str, *, now: float) -> int:
        """See `base.KeepStore.wake_held_events` (notifies the replicas' senders when any became due)."""
        async with self._tx() as db:
            woken = await db.execute(WAKE_HELD_EVENTS, now, history_id)
            if woken:
                await self._notify(db, [Notice(NoticeKind.EVENTS)])
        return woken

    async def kept_files(self) -> list[KeptFile]:
        """See `base.KeepStore.kept_files`."""
        async with self._read() as db:
            rows = await db.fetch(KEPT_FILES)
        return [KeptFile(r["file_id"], int(r["size"] or 0), float(r["last"])) for r in rows]

    async def expire_kept_files(self, file_ids: Sequence[str], *, now: float) -> list[str]:
        """See `base.KeepStore.expire_kept_files`."""
        if not file_ids:
            return []
        async with self._stmt() as db:
            rows = await db.fetch(EXPIRE_FILES, now, list(file_ids))
        return sorted({str(r["history_id"]) for r in rows})


# ------------------------------------------------------------------------------------------------ account pool

INSERT_ACCOUNT: Final = f"""
INSERT INTO accounts (name, region, fingerprint, masked, secret, sealed, has_proxy, note, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {ACCOUNT_COLUMNS}
"""
ACCOUNTS: Final = f"SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id"
ACCOUNT_BY_ID: Final = f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"
ACCOUNT_BY_NAME: Final = f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1"
SET_ENABLED: Final = (
    "UPDATE accounts SET enabled = $2, cooldown_until = CASE WHEN $2 THEN NULL ELSE cooldown_until END WHERE id = $1"
)
UPDATE_SECRET: Final = f"UPDATE accounts SET secret = $2, sealed = $3 WHERE id = $1 RETURNING {ACCOUNT_COLUMNS}"
DELETE_ACCOUNT: Final = "DELETE FROM accounts WHERE id = $1"
RECORD_HEALTH: Final = (
    "UPDATE accounts SET last_error_code = $2, last_error = $3, cooldown_until = $4, "
    "last_check_at = CASE WHEN $5 THEN $6 ELSE last_check_at END WHERE id = $1"
)
RECORD_CREDITS: Final = "UPDATE accounts SET credits = $2, credits_at = $3 WHERE id = $1"
POOL_IN_FLIGHT: Final = f"""
SELECT account_id, account_fp, COUNT(*) AS n FROM tasks WHERE status = {_PROCESSING} AND account_id IS NOT NULL
AND created_at > CASE kind WHEN 'video' THEN $1::double precision ELSE $2::double precision END
GROUP BY account_id, account_fp
"""
INSERT_KEY_ROW: Final = (
    "INSERT INTO api_keys (name, hash, prefix, accounts, rate_per_minute, max_in_flight, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"
)
KEYS: Final = f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id"
KEY_BY_HASH: Final = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = $1"
REVOKE_KEY: Final = "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1"
RECORD_KEY_USE: Final = (
    "UPDATE api_keys SET submits = submits + 1, credits_spent = credits_spent + $2, last_used_at = $3 WHERE id = $1"
)


class Pool(TableBase):
    """`base.PoolStore` (tables `accounts` and `api_keys`)."""

    async def add_account(self, new: NewAccount, *, now: float) -> AccountRow:
        """See `base.PoolStore.add_account`."""
        values = (new.name, new.region, new.fingerprint, new.masked, new.secret, new.sealed, new.has_proxy, new.note)
        try:
            async with self._stmt() as db:
                row = await db.fetchrow(INSERT_ACCOUNT, *values, now)
        except UniqueViolation as exc:
            what = "name" if "name" in exc.constraint else "session"
            shown = repr(new.name) if what == "name" else new.masked
            raise DuplicateError(f"an account with this {what} ({shown}) is already in the pool") from None
        assert row is not None
        return account_from_row(row)

    async def accounts(self) -> list[AccountRow]:
        """See `base.PoolStore.accounts`."""
        async with self._read() as db:
            return [account_from_row(row) for row in await db.fetch(ACCOUNTS)]

    async def account_by_id(self, account_id: int) -> AccountRow | None:
        """See `base.PoolStore.account_by_id`."""
        async with self._read() as db:
            row = await db.fetchrow(ACCOUNT_BY_ID, account_id)
        return account_from_row(row) if row is not None else None

    async def account_by_name(self, name: str) -> AccountRow | None:
        """See `base.PoolStore.account_by_name`."""
        async with self._read() as db:
            row = await db.fetchrow(ACCOUNT_BY_NAME, name)
        return account_from_row(row) if row is not None else None

    async def set_account_enabled(self, account_id: int, enabled: bool) -> bool:
        """See `base.PoolStore.set_account_enabled`."""
        async with self._tx() as db:
            if enabled:
                await db.execute(CLEAR_MODEL_COOLDOWNS, account_id)
            return await db.execute(SET_ENABLED, account_id, enabled) > 0

    async def update_account_secret(self, account_id: int, secret: bytes, sealed: bool) -> AccountRow | None:
        """See `base.PoolStore.update_account_secret`."""
        async with self._stmt() as db:
            row = await db.fetchrow(UPDATE_SECRET, account_id, secret, sealed)
        return account_from_row(row) if row is not None else None

    async def delete_account(self, account_id: int) -> bool:
        """See `base.PoolStore.delete_account`."""
        async with self._stmt() as db:
            return await db.execute(DELETE_ACCOUNT, account_id) > 0

    async def record_account_health(self, account_id: int, health: AccountHealth, *, now: float) -> None:
        """See `base.PoolStore.record_account_health` (one transaction)."""
        async with self._tx() as db:
            await db.execute(
                RECORD_HEALTH, account_id, health.error_code, health.error, health.cooldown_until, health.checked, now
            )
            if health.credits is not None:
                await db.execute(RECORD_CREDITS, account_id, health.credits, now)

    async def pool_tasks_in_flight(self, *, image_since: float, video_since: float) -> list[tuple[int, str, int]]:
        """See `base.PoolStore.pool_tasks_in_flight`."""
        async with self._read() as db:
            rows = await db.fetch(POOL_IN_FLIGHT, video_since, image_since)
        return [(int(row["account_id"]), row["account_fp"], int(row["n"])) for row in rows]

    async def add_key(self, new: NewKey, *, now: float) -> int:
        """See `base.PoolStore.add_key`."""
        values = (new.name, new.digest, new.prefix, new.accounts_json, new.rate_per_minute, new.max_in_flight)
        try:
            async with self._stmt() as db:
                key_id = await db.fetchval(INSERT_KEY_ROW, *values, now)
        except UniqueViolation:
            raise DuplicateError(f"an API key named {new.name!r} already exists") from None
        return int(key_id)

    async def keys(self) -> list[KeyRow]:
        """See `base.PoolStore.keys`."""
        async with self._read() as db:
            return [key_from_row(row) for row in await db.fetch(KEYS)]

    async def key_by_hash(self, digest: str) -> KeyRow | None:
        """See `base.PoolStore.key_by_hash`."""
        async with self._read() as db:
            row = await db.fetchrow(KEY_BY_HASH, digest)
        return key_from_row(row) if row is not None else None

    async def revoke_key(self, key_id: int, *, now: float) -> bool:
        """See `base.PoolStore.revoke_key`."""
        async with self._stmt() as db:
            return await db.execute(REVOKE_KEY, key_id, now) > 0

    async def record_key_use(self, key_id: int, *, credits_spent: int, now: float) -> None:
        """See `base.PoolStore.record_key_use`."""
        async with self._stmt() as db:
            await db.execute(RECORD_KEY_USE, key_id, credits_spent, now)


# ------------------------------------------------------------------------------------------------ model cool-downs

REST_MODEL: Final = """
INSERT INTO model_cooldowns (account_id, model, rest_until, reason, message)
SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1)
ON CONFLICT (account_id, model) DO UPDATE SET rest_until = excluded.rest_until, reason = excluded.reason,
message = excluded.message
"""
SWEEP_MODEL_COOLDOWNS: Final = "DELETE FROM model_cooldowns WHERE rest_until <= $1"
CLEAR_MODEL_COOLDOWNS: Final = "DELETE FROM model_cooldowns WHERE account_id = $1"
MODEL_COOLDOWNS: Final = """
SELECT account_id, model, rest_until, reason, message FROM model_cooldowns
WHERE rest_until > $1 AND ($2::text IS NULL OR model = $2) ORDER BY account_id, rest_until, model
"""


class ModelCooldowns(TableBase):
    """`base.ModelCooldownStore` (table `model_cooldowns`)."""

    async def rest_model(self, account_id: int, cool: Cooldown, *, now: float) -> None:
        """See `base.ModelCooldownStore.rest_model`."""
        if cool.model is None:
            raise ValueError("a model cool-down names its model")
        async with self._tx() as db:
            await db.execute(SWEEP_MODEL_COOLDOWNS, now)
            await db.execute(REST_MODEL, account_id, cool.model, cool.until, cool.reason, cool.message)

    async def model_cooldowns(self, *, now: float, model: str | None = None) -> dict[int, list[Cooldown]]:
        """See `base.ModelCooldownStore.model_cooldowns`."""
        async with self._read() as db:
            rows = await db.fetch(MODEL_COOLDOWNS, now, model)
        found: dict[int, list[Cooldown]] = {}
        for row in rows:
            account_id, cool = cooldown_from_row(row)
            found.setdefault(account_id, []).append(cool)
        return found


# ------------------------------------------------------------------------------------------------ outbox

_ACTIVE: Final = "('pending', 'delivering')"
_EVENT_FROM_TASK: Final = """
SELECT $1, {seq}history_id, account_fp, $2, $3, callback_url, $7, 0, 0, $4, $8::double precision, $4, $4,
    $6::double precision
FROM tasks WHERE history_id = $5 AND callback_url IS NOT NULL
"""
_EVENT_INSERT_COLUMNS: Final = (
    "event_id, {seq}history_id, account_fp, type, body, callback_url, state, attempts, round_start, "
    "next_attempt_at, lease_until, created_at, updated_at, links_expire_at"
)
INSERT_EVENT: Final = {
    # SQLite numbers events itself (its `seq` has no default); PostgreSQL's is an identity column.
    Dialect.SQLITE: f"INSERT INTO webhook_events ({_EVENT_INSERT_COLUMNS.format(seq='seq, ')})"
    + _EVENT_FROM_TASK.format(seq="(SELECT COALESCE(MAX(seq), 0) + 1 FROM webhook_events), "),
    Dialect.POSTGRES: f"INSERT INTO webhook_events ({_EVENT_INSERT_COLUMNS.format(seq='')})"
    + _EVENT_FROM_TASK.format(seq=""),
}
# `state IN (active)` (not `= 'pending'`) so the partial index webhook_events_due serves it; a claimed event's
# next_attempt_at is already past, so it never counts.
NEXT_DUE: Final = f"SELECT MIN(next_attempt_at) FROM webhook_events WHERE state IN {_ACTIVE} AND next_attempt_at > $1"
RELEASE_LEASES: Final = (
    "UPDATE webhook_events SET state = 'pending', lease_until = NULL, "
    "next_attempt_at = LEAST(COALESCE(next_attempt_at, $1), $1), updated_at = $1 "
    "WHERE state = 'delivering' AND (lease_until IS NULL OR lease_until <= $2)"
)
CLAIM_DUE: Final = f"""
WITH due AS (
    SELECT e.event_id AS due_id FROM webhook_events e
    WHERE e.state IN {_ACTIVE} AND e.next_attempt_at <= $1
      AND (e.lease_until IS NULL OR e.lease_until <= $1)
      AND NOT (e.event_id = ANY($2::text[]))
      AND NOT EXISTS (
          SELECT 1 FROM webhook_events p
          WHERE p.history_id = e.history_id AND p.seq < e.seq AND p.state IN {_ACTIVE}
      )
    ORDER BY e.next_attempt_at, e.seq
    LIMIT $3
    FOR UPDATE OF e SKIP LOCKED
)
UPDATE webhook_events AS w SET state = 'delivering', lease_until = $4, updated_at = $1
FROM due WHERE w.event_id = due.due_id
RETURNING {EVENT_COLUMNS}
"""
RECORD_ATTEMPT: Final = """
INSERT INTO webhook_attempts (event_id, attempt, at, status, error, latency_ms, next_attempt_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (event_id, attempt) DO UPDATE SET at = excluded.at, status = excluded.status, error = excluded.error,
    latency_ms = excluded.latency_ms, next_attempt_at = excluded.next_attempt_at
"""
FINISH_ATTEMPT: Final = (
    "UPDATE webhook_events SET state = $1, attempts = GREATEST(attempts, $2), next_attempt_at = $3, "
    "lease_until = NULL, updated_at = $4 WHERE event_id = $5"
)
UNCLAIM: Final = (
    "UPDATE webhook_events SET state = 'pending', lease_until = NULL, next_attempt_at = $1, updated_at = $1 "
    "WHERE state = 'delivering' AND event_id = ANY($2::text[])"
)
HASTEN: Final = (
    "UPDATE webhook_events SET next_attempt_at = $1, updated_at = $1 "
    "WHERE state = 'pending' AND next_attempt_at > $1 AND event_id = ANY($2::text[])"
)
UNCLAIM_DUE: Final = (
    "UPDATE webhook_events SET state = 'pending', lease_until = NULL, next_attempt_at = $1, updated_at = $1 "
    "WHERE state = 'delivering' AND event_id = $2"
)
LATEST_EVENT: Final = (
    f"SELECT {EVENT_COLUMNS} FROM webhook_events WHERE history_id = $1 ORDER BY seq DESC LIMIT 1 FOR UPDATE"
)
REQUEUE: Final = (
    "UPDATE webhook_events SET state = 'pending', round_start = attempts, next_attempt_at = $1, "
    "lease_until = NULL, updated_at = $1 WHERE event_id = $2 AND state != 'delivering'"
)
EVENTS_OF: Final = f"SELECT {EVENT_COLUMNS} FROM webhook_events WHERE history_id = $1 ORDER BY seq"
EVENTS_BY_ID: Final = f"SELECT {EVENT_COLUMNS} FROM webhook_events WHERE event_id = ANY($1::text[])"
ATTEMPTS_OF: Final = """
SELECT a.event_id, a.attempt, a.at, a.status, a.error, a.latency_ms, a.next_attempt_at
FROM webhook_attempts a JOIN webhook_events e ON e.event_id = a.event_id
WHERE e.history_id = $1 ORDER BY e.seq, a.attempt
"""
STATE_COUNTS: Final = "SELECT state, COUNT(*) AS n FROM webhook_events GROUP BY state"


_PENDING: Final[tuple[str, float | None]] = (EventState.PENDING.value, None)  # state, lease: for any sender
_DELIVERING: Final = EventState.DELIVERING.value


def _claimed(rows: Sequence[Row]) -> list[OutboxEvent]:
    """Claimed event rows as events, oldest due first (then in creation order)."""
    return sorted((event_from_row(row) for row in rows), key=lambda e: (e.next_attempt_at or 0.0, e.seq))


class Outbox(TableBase):
    """`base.OutboxStore` (tables `webhook_events`, `webhook_attempts`)."""

    @staticmethod
    async def _insert_events(
        db: Db, events: Sequence[tuple[str, NewEvent]], *, now: float, claim: EventClaim
    ) -> list[OutboxEvent]:
        """Add an event, due now, for each `(history_id, event)`, in order, to the task's owner and callback URL
        (both read from the task row; a task without a callback URL gets none): the first `claim.limit` claimed
        (`delivering` until `claim.lease_until`) and returned as stored, oldest first; the rest pending."""
        if not events:
            return []
        claimed = (_DELIVERING, claim.lease_until)
        rows = [
            (e.event_id, e.type, e.body, now, hid, e.links_expire_at, *(claimed if n < claim.limit else _PENDING))
            for n, (hid, e) in enumerate(events)
        ]
        await db.executemany(INSERT_EVENT[db.dialect], rows)
        taken = [row[0] for row in rows[: claim.limit]]
        return _claimed(await db.fetch(EVENTS_BY_ID, taken)) if taken else []

    async def release_event_leases(self, *, now: float) -> int:
        """See `base.OutboxStore.release_event_leases`: on a shared backend only EXPIRED leases go back to
        pending (other replicas may be sending the rest); on a file only one process uses, every one does."""
        async with self._stmt() as db:
            return await db.execute(RELEASE_LEASES, now, now if self._shared else math.inf)

    async def claim_due_events(
        self, *, now: float, limit: int, lease_until: float, exclude: Collection[str] = ()
    ) -> list[OutboxEvent]:
        """See `base.OutboxStore.claim_due_events` (one statement; `FOR UPDATE SKIP LOCKED` on PostgreSQL:
        concurrent claimers never wait for each other nor get the same event)."""
        if limit <= 0:
            return []
        async with self._stmt() as db:
            rows = await db.fetch(CLAIM_DUE, now, list(exclude), limit, lease_until)
        return _claimed(rows)

    async def claim_and_next_due(
        self, *, now: float, limit: int, lease_until: float, exclude: Collection[str] = ()
    ) -> tuple[list[OutboxEvent], float | None]:
        """See `base.OutboxStore.claim_and_next_due` (SQLite: both statements in one trip to its thread)."""
        claim = [(CLAIM_DUE, (now, list(exclude), limit, lease_until))] if limit > 0 else []
        async with self._stmt() as db:
            *rows, due = await db.fetch_each(*claim, (NEXT_DUE, (now,)))
        value = due[0][0] if due else None
        return _claimed(rows[0]) if rows else [], float(value) if value is not None else None

    async def next_event_due(self, *, now: float) -> float | None:
        """See `base.OutboxStore.next_event_due`."""
        async with self._read() as db:
            due = await db.fetchval(NEXT_DUE, now)
        return float(due) if due is not None else None

    async def record_attempts(self, results: Sequence[AttemptResult]) -> None:
        """See `base.OutboxStore.record_attempts` (one transaction)."""
        if results:
            async with self._tx() as db:
                await db.executemany(RECORD_ATTEMPT, attempt_params(results))
                await db.executemany(FINISH_ATTEMPT, finish_params(results))

    async def unclaim_events(self, event_ids: Collection[str], *, now: float) -> None:
        """See `base.OutboxStore.unclaim_events`."""
        async with self._stmt() as db:
            await db.execute(UNCLAIM, now, list(event_ids))

    async def hasten_events(self, event_ids: Collection[str], *, now: float) -> None:
        """See `base.OutboxStore.hasten_events`."""
        async with self._stmt() as db:
            await db.execute(HASTEN, now, list(event_ids))

    async def unclaim_events_due(self, due: Mapping[str, float]) -> None:
        """See `base.OutboxStore.unclaim_events_due`."""
        if due:
            async with self._tx() as db:
                await db.executemany(UNCLAIM_DUE, [(when, event_id) for event_id, when in due.items()])

    async def redeliver_latest(self, history_id: str, *, now: float) -> Redelivery:
        """See `base.OutboxStore.redeliver_latest` (one transaction; the latest event's row is locked)."""
        async with self._tx() as db:
            row = await db.fetchrow(LATEST_EVENT, history_id)
            if row is None:
                return Redelivery(None, queued=False)
            latest = event_from_row(row)
            queued = await db.execute(REQUEUE, now, latest.event_id) == 1
            if queued:
                await self._notify(db, [Notice(NoticeKind.EVENTS)])
            return Redelivery(latest, queued)

    async def events_of(self, history_id: str) -> list[OutboxEvent]:
        """See `base.OutboxStore.events_of`."""
        async with self._read() as db:
            return [event_from_row(row) for row in await db.fetch(EVENTS_OF, history_id)]

    async def attempts_of(self, history_id: str) -> list[Attempt]:
        """See `base.OutboxStore.attempts_of`."""
        async with self._read() as db:
            return [attempt_from_row(row) for row in await db.fetch(ATTEMPTS_OF, history_id)]

    async def event_state_counts(self) -> dict[EventState, int]:
        """See `base.OutboxStore.event_state_counts`."""
        async with self._read() as db:
            return {EventState(row["state"]): int(row["n"]) for row in await db.fetch(STATE_COUNTS)}


# ------------------------------------------------------------------------------------------------ tasks

INSERT_TASK: Final = f"""
INSERT INTO tasks ({TASK_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
ON CONFLICT (history_id) DO UPDATE SET
    token = COALESCE(excluded.token, tasks.token),
    kind = excluded.kind,
    model = excluded.model,
    submit_id = excluded.submit_id,
    callback_url = COALESCE(excluded.callback_url, tasks.callback_url),
    input_images = COALESCE(excluded.input_images, tasks.input_images),
    updated_at = $21
WHERE tasks.account_fp = excluded.account_fp AND tasks.status = {_PROCESSING}
"""
TASK_OWNER: Final = "SELECT account_fp FROM tasks WHERE history_id = $1"
GET_TASK: Final = f"SELECT {TASK_COLUMNS} FROM tasks WHERE history_id = $1"
GET_TASKS: Final = f"SELECT {TASK_COLUMNS} FROM tasks WHERE history_id = ANY($1::text[])"
TASK_LINKS: Final = """
SELECT history_id, parent_history_id FROM tasks
WHERE parent_history_id IS NOT NULL AND (history_id = ANY($1::text[]) OR parent_history_id = ANY($1::text[]))
ORDER BY created_at, history_id
"""
UNFINISHED: Final = f"SELECT {TASK_COLUMNS} FROM tasks WHERE status = {_PROCESSING} ORDER BY created_at, history_id"
RECENT: Final = f"""
SELECT {TASK_COLUMNS}, (SELECT e.state FROM webhook_events e WHERE e.history_id = tasks.history_id
                        ORDER BY e.seq DESC LIMIT 1) AS webhook_state
FROM tasks ORDER BY created_at DESC LIMIT $1
"""
RECENT_OF: Final = f"""
SELECT {TASK_COLUMNS} FROM tasks WHERE account_fp = ANY($1::text[]) AND kind = $2 ORDER BY created_at DESC LIMIT $3
"""
UPDATE_PROGRESS: Final = (
    "UPDATE tasks SET upstream_status = $1, item_count = $2, raw_data = $3, updated_at = $4 "
    f"WHERE history_id = $5 AND status = {_PROCESSING}"
)
# `+status`: the same test, but no index on it; SQLite would otherwise walk `tasks_status` (every task in flight,
# thousands during a burst) instead of looking the batch's ids up by key (tests/store/test_query_plans.py).
OPEN_TASKS: Final = f"""
SELECT history_id, callback_url IS NOT NULL AS hooked, parent_history_id, cost_credits, cost_source FROM tasks
WHERE history_id = ANY($1::text[]) AND +status = {_PROCESSING} FOR UPDATE
"""
SETTLE_TASK: Final = f"""
UPDATE tasks SET status = $1, upstream_status = $2, fail_code = $3, error = $4, results = $5, item_count = $6,
    raw_data = $7, updated_at = $8, finished_at = $8, token = NULL
WHERE history_id = $9 AND status = {_PROCESSING}
"""
PURGE_FINISHED: Final = f"""
DELETE FROM tasks WHERE finished_at IS NOT NULL AND finished_at < $1 AND status != {_PROCESSING}
AND NOT EXISTS (SELECT 1 FROM webhook_events e WHERE e.history_id = tasks.history_id AND e.state IN {_ACTIVE})
"""
PURGE_STALE: Final = f"DELETE FROM tasks WHERE status = {_PROCESSING} AND token IS NULL AND updated_at < $1"


SET_COST: Final = f"""
UPDATE tasks SET cost_credits = $2, cost_source = $3
WHERE history_id = $1 AND (cost_source IS NULL OR cost_source = '{CostSource.ESTIMATED.value}')
"""
COST_OF: Final = "SELECT account_fp, cost_credits, cost_source FROM tasks WHERE history_id = $1"
ESTIMATED_POOL_COSTS: Final = (
    "SELECT history_id, account_id, submit_id FROM tasks WHERE history_id = ANY($1::text[]) "
    f"AND status != {_PROCESSING} AND account_id IS NOT NULL AND submit_id != '' "
    f"AND cost_source = '{CostSource.ESTIMATED.value}' ORDER BY history_id"
)
CORRECT_KEY_SPEND: Final = "UPDATE api_keys SET credits_spent = credits_spent + $2 WHERE id = $1"
COSTS_OF: Final = (
    "SELECT history_id, cost_credits, cost_source FROM tasks "
    "WHERE history_id = ANY($1::text[]) AND cost_source IS NOT NULL"
)


def _cost_of(row: Row) -> TaskCost | None:
    """The stored cost of a row with `cost_credits` and `cost_source`, None when it has none."""
    source = row["cost_source"]
    return TaskCost(row["cost_credits"], CostSource(source)) if source is not None else None


class Tasks(Outbox):
    """`base.TaskTable` (table `tasks`; a settle writes its events through `Outbox`)."""

    async def insert(self, record: TaskRecord) -> None:
        """See `base.TaskTable.insert` (one upsert; the owner is read only when it changed nothing)."""
        async with self._stmt() as db:
            if await db.execute(INSERT_TASK, *record_params(record), self._clock.time()) == 0:
                # kept as it was: final, or another account's (a task's owner never changes)
                owner = await db.fetchval(TASK_OWNER, record.history_id)
                if owner is not None and owner != record.account_fp:
                    raise TaskOwnershipError(f"task {record.history_id!r} is already stored for another account")
            else:
                await self._notify(db, [Notice(NoticeKind.NEW_TASK, record.history_id)])

    async def get(self, history_id: str) -> TaskRecord | None:
        """See `base.TaskTable.get`."""
        async with self._read() as db:
            row = await db.fetchrow(GET_TASK, history_id)
        return record_from_row(row) if row is not None else None

    async def get_many(self, history_ids: Sequence[str]) -> dict[str, TaskRecord]:
        """See `base.TaskTable.get_many`."""
        if not history_ids:
            return {}
        async with self._read() as db:
            rows = await db.fetch(GET_TASKS, list(history_ids))
        return {row["history_id"]: record_from_row(row) for row in rows}

    async def links(self, history_ids: Sequence[str]) -> list[tuple[str, str]]:
        """See `base.TaskTable.links`."""
        if not history_ids:
            return []
        async with self._read() as db:
            rows = await db.fetch(TASK_LINKS, list(history_ids))
        return [(row["history_id"], row["parent_history_id"]) for row in rows]

    async def unfinished(self) -> list[TaskRecord]:
        """See `base.TaskTable.unfinished`."""
        async with self._read() as db:
            return [record_from_row(row) for row in await db.fetch(UNFINISHED)]

    async def recent(self, limit: int) -> list[tuple[TaskRecord, str | None]]:
        """See `base.TaskTable.recent`."""
        async with self._read() as db:
            return [(record_from_row(row), row["webhook_state"]) for row in await db.fetch(RECENT, limit)]

    async def recent_of(self, owners: Sequence[str], kind: TaskKind, limit: int) -> list[TaskRecord]:
        """See `base.TaskTable.recent_of`."""
        if not owners:
            return []
        async with self._read() as db:
            return [record_from_row(row) for row in await db.fetch(RECENT_OF, list(owners), kind.value, limit)]

    async def update_progress(self, updates: Sequence[Progress]) -> None:
        """See `base.TaskTable.update_progress` (one transaction; unknown and final tasks are left unchanged)."""
        if updates:
            async with self._tx() as db:
                await db.executemany(UPDATE_PROGRESS, progress_params(updates, now=self._clock.time()))

    async def settle(self, finals: Sequence[Finish]) -> list[Settled]:
        """See `base.TaskTable.settle` (`settle_claiming` claiming nothing)."""
        settled, _ = await self.settle_claiming(finals, NO_CLAIM)
        return settled

    async def settle_claiming(
        self, finals: Sequence[Finish], claim: EventClaim
    ) -> tuple[list[Settled], list[OutboxEvent]]:
        """See `base.TaskTable.settle_claiming`: one transaction, a handful of statements for the whole batch: the
        tasks still processing with what their events carry from the row (locked on PostgreSQL, so a settle of the
        same task elsewhere waits and then finds it final), `tasks.settle.plan_settle` (which makes the events),
        then one update, one refs insert and one event insert each, and one read of the events it claimed."""
        check_finals(finals)
        if not finals:
            return [], []
        now = self._clock.time()
        async with self._tx() as db:
            rows = await db.fetch(OPEN_TASKS, [f.history_id for f in finals])
            facts = {
                row["history_id"]: (row["parent_history_id"], _cost_of(row))
                for row in rows
                if row["parent_history_id"] is not None or row["cost_source"] is not None
            }
            plan = plan_settle(finals, {row["history_id"]: bool(row["hooked"]) for row in rows}, facts)
            if not plan.finishes:
                return [], []
            await db.executemany(SETTLE_TASK, [settle_params(f, now=now) for f in plan.finishes])
            refs = [(f.history_id, refs_text(f.refs), now) for f in plan.finishes if f.refs is not None]
            if refs:
                await db.executemany(PUT_RESULT_REFS, refs)
            claimed = await self._insert_events(db, plan.events, now=now, claim=claim)
            notices = [Notice(NoticeKind.SETTLED, f.history_id) for f in plan.finishes]
            pending = len(plan.events) > len(claimed)  # other senders have nothing to claim otherwise
            await self._notify(db, [*notices, Notice(NoticeKind.EVENTS)] if pending else notices)
        return plan.settled, claimed

    async def record_cost(self, history_id: str, cost: TaskCost) -> bool:
        """See `base.TaskTable.record_cost` (one transaction; a measured cost is never replaced: the update's
        WHERE decides, so of two writers racing only one changes the row and corrects the key)."""
        async with self._tx() as db:
            old = await db.fetchrow(COST_OF, history_id)
            if old is None or not await db.execute(SET_COST, history_id, cost.credits, cost.source.value):
                return False
            owner: str = old["account_fp"]
            if old["cost_source"] is not None and owner.startswith("key:") and cost.credits != old["cost_credits"]:
                await db.execute(CORRECT_KEY_SPEND, int(owner[4:]), cost.credits - old["cost_credits"])
            return True

    async def costs_of(self, history_ids: Sequence[str]) -> dict[str, TaskCost]:
        """See `base.TaskTable.costs_of`."""
        if not history_ids:
            return {}
        async with self._read() as db:
            rows = await db.fetch(COSTS_OF, list(history_ids))
        return {r["history_id"]: cost for r in rows if (cost := _cost_of(r)) is not None}

    async def estimated_pool_costs(self, history_ids: Sequence[str]) -> list[tuple[str, int, str]]:
        """See `base.TaskTable.estimated_pool_costs`."""
        if not history_ids:
            return []
        async with self._read() as db:
            rows = await db.fetch(ESTIMATED_POOL_COSTS, list(history_ids))
        return [(r["history_id"], int(r["account_id"]), r["submit_id"]) for r in rows]

    async def purge_finished(self, *, older_than: float) -> int:
        """See `base.TaskTable.purge_finished`."""
        async with self._stmt() as db:
            return await db.execute(PURGE_FINISHED, self._clock.time() - older_than)

    async def purge_stale_unfinished(self, *, older_than: float) -> int:
        """See `base.TaskTable.purge_stale_unfinished`."""
        async with self._stmt() as db:
            return await db.execute(PURGE_STALE, self._clock.time() - older_than)


class SharedTables(Tasks, IdempotencyKeys, ResultRefs, KeepJobs, Pool, ModelCooldowns):
    """Every table both backends have: the base class of `SqliteStore` and `PostgresStore`. A new table's mixin
    is listed here."""
