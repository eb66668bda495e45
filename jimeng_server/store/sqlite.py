"""The durable task store: one aiosqlite connection (WAL) holding task records and idempotency keys.

The file is created 0600 (its `-wal`/`-shm` companions are tightened to match); the schema is versioned
with `PRAGMA user_version` through the ordered `MIGRATIONS` list. All SQL of the project lives here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar, cast

import aiosqlite

from ..clock import Clock
from ..concurrency import uncancellable
from ..metrics import timed_store
from . import outbox
from .models import Finish, Settled, TaskKind, TaskRecord, TaskStatus

__all__ = [
    "MIGRATIONS",
    "ClaimState",
    "IdempotencyClaim",
    "Migration",
    "SchemaVersionError",
    "StoreError",
    "TaskOwnershipError",
    "TaskStore",
]

log = logging.getLogger(__name__)
# aiosqlite logs every statement WITH its parameters at DEBUG, and task rows hold session tokens.
logging.getLogger("aiosqlite").setLevel(logging.INFO)

_T = TypeVar("_T")

Migration = str | Callable[[aiosqlite.Connection], Awaitable[None]]
"""One schema step: an SQL script (statements separated by `;`) or a coroutine function given the
connection. Either runs inside the migration's own transaction and must not COMMIT itself."""

_MIGRATION_1: Final = """
CREATE TABLE tasks (
    history_id      TEXT PRIMARY KEY NOT NULL,
    account_fp      TEXT NOT NULL,
    token           TEXT,
    kind            TEXT NOT NULL,
    model           TEXT NOT NULL,
    submit_id       TEXT NOT NULL,
    status          INTEGER NOT NULL,
    upstream_status INTEGER,
    fail_code       TEXT NOT NULL DEFAULT '',
    fail_reason     TEXT,
    item_count      INTEGER NOT NULL DEFAULT 0,
    results         TEXT,      -- JSON array of URLs, NULL until done
    raw_data        TEXT,      -- JSON object: the last untouched upstream history record
    callback_url    TEXT,
    input_images    INTEGER,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    finished_at     REAL
);
CREATE INDEX tasks_status ON tasks (status);
CREATE INDEX tasks_finished_at ON tasks (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX tasks_account_fp ON tasks (account_fp);

CREATE TABLE idempotency_keys (
    account_fp   TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       INTEGER,      -- NULL while the first request is in progress
    body         BLOB,
    created_at   REAL NOT NULL,
    expires_at   REAL NOT NULL,
    PRIMARY KEY (account_fp, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
"""

_MIGRATION_2: Final = """
CREATE TABLE webhook_events (
    event_id        TEXT PRIMARY KEY NOT NULL,  -- the webhook-id: stable across retries and redeliveries
    seq             INTEGER NOT NULL,           -- creation order: a task's events are delivered in this order
    history_id      TEXT NOT NULL REFERENCES tasks (history_id) ON DELETE CASCADE,
    account_fp      TEXT NOT NULL,
    type            TEXT NOT NULL,
    body            TEXT NOT NULL,              -- the exact JSON text that is sent and signed
    callback_url    TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivering', 'delivered', 'exhausted', 'stopped')),
    attempts        INTEGER NOT NULL DEFAULT 0, -- attempts made in total
    round_start     INTEGER NOT NULL DEFAULT 0, -- attempts made before the last redelivery (schedule restarts)
    next_attempt_at REAL,
    lease_until     REAL,                       -- a claimed ('delivering') event is reserved until then
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE UNIQUE INDEX webhook_events_seq ON webhook_events (seq);
CREATE INDEX webhook_events_history ON webhook_events (history_id, seq);
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE state IN ('pending', 'delivering');

CREATE TABLE webhook_attempts (
    event_id        TEXT NOT NULL REFERENCES webhook_events (event_id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,           -- 1, 2, ... per event
    at              REAL NOT NULL,
    status          INTEGER,                    -- the receiver's HTTP status; NULL when none came
    error           TEXT,                       -- why the attempt failed; NULL on success
    latency_ms      INTEGER NOT NULL,
    next_attempt_at REAL,                       -- when the next attempt is due; NULL when none follows
    PRIMARY KEY (event_id, attempt)
) WITHOUT ROWID;
"""

_MIGRATION_3: Final = """
ALTER TABLE tasks ADD COLUMN error TEXT;  -- JSON {"code", "message"} of a failed task
UPDATE tasks SET error = json_object(
    'code', CASE WHEN fail_code = '2038' THEN 'CONTENT_REJECTED' ELSE 'GENERATION_FAILED' END,
    'message', 'the upstream reported the generation as failed'
        || CASE WHEN fail_code != '' THEN ' (fail_code ' || fail_code || ')' ELSE '' END)
WHERE status = 30;
ALTER TABLE tasks DROP COLUMN fail_reason;
"""

_MIGRATION_4: Final = """
CREATE TABLE accounts (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    region          TEXT NOT NULL,
    fingerprint     TEXT NOT NULL UNIQUE,      -- Account.fingerprint of the session: one pool entry per session
    masked          TEXT NOT NULL,             -- the display form of the session id
    secret          BLOB NOT NULL,             -- JSON {sessionid, proxy, ...}; a Fernet token when sealed
    sealed          INTEGER NOT NULL,          -- 1: `secret` is encrypted with [accounts] encryption_key
    has_proxy       INTEGER NOT NULL DEFAULT 0,
    enabled         INTEGER NOT NULL DEFAULT 1,
    note            TEXT NOT NULL DEFAULT '',
    last_check_at   REAL,
    last_error_code TEXT,
    last_error      TEXT,
    cooldown_until  REAL,
    credits         INTEGER,                   -- last balance seen
    credits_at      REAL,
    created_at      REAL NOT NULL
);

CREATE TABLE api_keys (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    hash            TEXT NOT NULL UNIQUE,      -- SHA-256 hex of the whole key; the key itself is never stored
    prefix          TEXT NOT NULL,             -- the key's first characters, to tell keys apart in lists
    accounts        TEXT,                      -- JSON array of account ids it may use; NULL = every account
    rate_per_minute INTEGER NOT NULL,
    max_in_flight   INTEGER NOT NULL,
    revoked_at      REAL,
    submits         INTEGER NOT NULL DEFAULT 0,
    credits_spent   INTEGER NOT NULL DEFAULT 0,
    last_used_at    REAL,
    created_at      REAL NOT NULL
);

-- The pool account that pays for a task submitted with an API key (NULL for raw tokens); such a task's
-- account_fp is its owner "key:<id>" and its token stays NULL (the session is resolved from the account).
ALTER TABLE tasks ADD COLUMN account_id INTEGER;
CREATE INDEX tasks_created_at ON tasks (created_at);
"""

MIGRATIONS: list[Migration] = [_MIGRATION_1, _MIGRATION_2, _MIGRATION_3, _MIGRATION_4]
"""The schema history, oldest first: entry i brings the file to `user_version` i + 1. Append only."""

_TASK_COLUMNS: Final = (
    "history_id, account_fp, token, kind, model, submit_id, status, upstream_status, fail_code, "
    "error, item_count, results, raw_data, callback_url, input_images, created_at, updated_at, "
    "finished_at, account_id"
)
_PROCESSING: Final = int(TaskStatus.PROCESSING)


class StoreError(Exception):
    """A task-store failure that callers may want to tell apart from SQLite errors."""


class SchemaVersionError(StoreError):
    """The database file was written by a newer version of this server."""


class TaskOwnershipError(StoreError):
    """A task id is already stored for another account; the message names the id, never a token."""


class ClaimState(StrEnum):
    """Outcome of `TaskStore.claim_idempotency_key`."""

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


class TaskStore:
    """Task records and idempotency keys in one SQLite file.

    Every operation runs under one asyncio lock on one connection, so a reader never sees another
    coroutine's uncommitted transaction and write transactions (`BEGIN IMMEDIATE`) never interleave.
    Time stamps come from the injected clock. Build with `TaskStore(path, clock=...)` and `await start()`
    (or `await TaskStore.open(...)`), release with `close()` (or use `async with`).
    """

    def __init__(self, path: str | Path, *, clock: Clock, busy_timeout: float = 5.0) -> None:
        """A store for the database at `path`; nothing is opened until `start()`."""
        self._path = Path(path)
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._conn_: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: str | Path, *, clock: Clock, busy_timeout: float = 5.0) -> TaskStore:
        """A started store: `TaskStore(path, ...)` then `await start()`."""
        store = cls(path, clock=clock, busy_timeout=busy_timeout)
        await store.start()
        return store

    async def start(self) -> None:
        """Open (creating if needed, mode 0600, parents included) and migrate the database.

        Raises `SchemaVersionError` if the file is newer than `MIGRATIONS`.
        """
        path = self._path
        await asyncio.to_thread(_create_private_file, path)
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            async with conn.execute("PRAGMA journal_mode = WAL") as cur:
                row = await cur.fetchone()
            if row is None or str(row[0]).lower() != "wal":
                log.warning("task store %s: WAL journal mode unavailable, using %s", path, row and row[0])
            await conn.execute("PRAGMA foreign_keys = ON")
            await _migrate(conn, MIGRATIONS)
            await asyncio.to_thread(_tighten_companions, path)
        except BaseException:
            await conn.close()
            raise
        self._conn_ = conn

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._conn_ is None:
            raise RuntimeError("the task store is not started")
        return self._conn_

    async def close(self) -> None:
        """Wait for the operation in flight, then close the connection. Idempotent."""
        async with self._lock:
            if self._closed or self._conn_ is None:
                return
            self._closed = True
            await self._conn_.close()

    async def __aenter__(self) -> TaskStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def schema_version(self) -> int:
        """The schema version this code writes (`len(MIGRATIONS)`)."""
        return len(MIGRATIONS)

    async def ping(self) -> None:
        """One trivial query: returns when the database answers, raises when it does not (e.g. closed)."""
        async with self._read() as conn, conn.execute("SELECT 1") as cur:
            await cur.fetchone()

    # ------------------------------------------------------------------ transactions

    def read(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        """The connection under the store's lock, for reads that need several statements.

        Use only the yielded connection inside the block: calling another store method there deadlocks.
        """
        return self._read()

    def transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        """One write transaction (`BEGIN IMMEDIATE`) under the store's lock, for SQL kept outside this module
        (e.g. the webhook outbox): committed if the block returns, rolled back if it raises or is cancelled.

        Use only the yielded connection inside the block: calling another store method there deadlocks.
        """
        return self._write()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        with timed_store("read"):
            async with self._lock:
                yield self._conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One `BEGIN IMMEDIATE` transaction: committed if the body returns, rolled back if it raises
        (cancellation included); the commit or rollback itself always completes."""
        with timed_store("write"):
            async with self._lock:
                try:
                    # Inside the try: a BEGIN cancelled in flight still runs on aiosqlite's thread.
                    await self._conn.execute("BEGIN IMMEDIATE")
                    yield self._conn
                    await uncancellable(_exec(self._conn, "COMMIT"))
                except BaseException:
                    await uncancellable(_rollback(self._conn))
                    raise

    # ------------------------------------------------------------------ tasks

    async def insert(self, record: TaskRecord) -> None:
        """Store a new task; `history_id` is the key.

        If the id already exists for the same `account_fp` and the stored task is still processing, its
        submission fields (token, kind, model, submit_id, callback_url, input_images) are refreshed from
        `record` (a None token or callback_url keeps the stored value); progress and result fields are
        never changed by `insert`, and a final task is left as it is. If the id belongs to another
        account, raises `TaskOwnershipError` and changes nothing.
        """
        results = json.dumps(list(record.results)) if record.results is not None else None
        async with self._write() as conn:
            cur = await conn.execute(
                f"""
                INSERT INTO tasks ({_TASK_COLUMNS})
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (history_id) DO UPDATE SET
                    token = COALESCE(excluded.token, tasks.token),
                    kind = excluded.kind,
                    model = excluded.model,
                    submit_id = excluded.submit_id,
                    callback_url = COALESCE(excluded.callback_url, tasks.callback_url),
                    input_images = COALESCE(excluded.input_images, tasks.input_images),
                    updated_at = ?
                WHERE tasks.account_fp = excluded.account_fp AND tasks.status = {_PROCESSING}
                """,
                (
                    record.history_id,
                    record.account_fp,
                    record.token,
                    record.kind.value,
                    record.model,
                    record.submit_id,
                    int(record.status),
                    record.upstream_status,
                    record.fail_code,
                    _dump_json(record.error),
                    record.item_count,
                    results,
                    _dump_json(record.raw_data),
                    record.callback_url,
                    record.input_images,
                    record.created_at,
                    record.updated_at,
                    record.finished_at,
                    record.account_id,
                    self._clock.time(),
                ),
            )
            if cur.rowcount == 0:
                async with conn.execute(
                    "SELECT account_fp FROM tasks WHERE history_id = ?", (record.history_id,)
                ) as owner_cur:
                    owner = await owner_cur.fetchone()
                if owner is not None and owner["account_fp"] != record.account_fp:
                    raise TaskOwnershipError(f"task {record.history_id!r} is already stored for another account")

    async def get(self, history_id: str) -> TaskRecord | None:
        """The task with this id, or None."""
        async with self._read() as conn:
            return await _fetch_one(conn, history_id)

    async def get_many(self, history_ids: Sequence[str]) -> dict[str, TaskRecord]:
        """The stored tasks among `history_ids` (one query, any count), keyed by id; unknown ids absent."""
        if not history_ids:
            return {}
        async with (
            self._read() as conn,
            conn.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE history_id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(history_ids)),),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return {row["history_id"]: _record_from_row(row) for row in rows}

    async def unfinished(self) -> list[TaskRecord]:
        """Every task still processing (tokens included), oldest first: what to resume on start-up."""
        async with (
            self._read() as conn,
            conn.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE status = ? ORDER BY created_at, history_id",
                (_PROCESSING,),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [_record_from_row(row) for row in rows]

    async def recent(self, limit: int) -> list[tuple[TaskRecord, str | None]]:
        """The latest `limit` tasks, newest first, each with the state of its latest webhook event (None when
        it has none): the dashboard's task list."""
        async with (
            self._read() as conn,
            conn.execute(
                f"SELECT {_TASK_COLUMNS}, (SELECT e.state FROM webhook_events e WHERE e.history_id = tasks.history_id "
                "ORDER BY e.seq DESC LIMIT 1) AS webhook_state FROM tasks ORDER BY created_at DESC LIMIT ?",
                (limit,),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [(_record_from_row(row), row["webhook_state"]) for row in rows]

    async def update_progress(
        self, history_id: str, *, upstream_status: int, item_count: int, raw_data: dict[str, Any] | None
    ) -> None:
        """Record a poll of a task still processing; unknown and final tasks are left unchanged."""
        async with self._write() as conn:
            await conn.execute(
                "UPDATE tasks SET upstream_status = ?, item_count = ?, raw_data = ?, updated_at = ? "
                "WHERE history_id = ? AND status = ?",
                (upstream_status, item_count, _dump_json(raw_data), self._clock.time(), history_id, _PROCESSING),
            )

    async def settle(self, finals: Sequence[Finish]) -> list[Settled]:
        """Make processing tasks final, ALL in ONE transaction (a poll's finishes commit together).

        For each `Finish`: store its settlement, stamp `finished_at`, drop the token; then, when the task has
        a callback URL, add its `event` to the webhook outbox in the same transaction. A task that is
        unknown or already final is left alone (it was settled before: one terminal state, one event).
        Returns what was settled now, in order, with whether an event was written.
        """
        now = self._clock.time()
        settled: list[Settled] = []
        async with self._write() as conn:
            for final in finals:
                done = final.settlement
                if not done.status.final:
                    raise ValueError(f"settle() needs a final status, got {done.status!r}")
                cur = await conn.execute(
                    """
                    UPDATE tasks SET status = ?, upstream_status = ?, fail_code = ?, error = ?,
                        results = ?, item_count = ?, raw_data = ?, updated_at = ?, finished_at = ?, token = NULL
                    WHERE history_id = ? AND status = ?
                    """,
                    (
                        int(done.status),
                        done.upstream_status,
                        done.fail_code,
                        _dump_json(done.error),
                        json.dumps(list(done.results)) if done.results is not None else None,
                        done.item_count,
                        _dump_json(done.raw_data),
                        now,
                        now,
                        final.history_id,
                        _PROCESSING,
                    ),
                )
                if cur.rowcount == 0:
                    continue
                event = final.event
                wrote = event is not None and await outbox.insert_event(
                    conn,
                    event_id=event.event_id,
                    history_id=final.history_id,
                    type=event.type,
                    body=event.body,
                    now=now,
                )
                settled.append(Settled(final.history_id, wrote))
        return settled

    async def purge_finished(self, *, older_than: float) -> int:
        """Delete final tasks that finished more than `older_than` seconds ago; return how many.

        A task whose webhook event is still pending or being delivered is kept; the events and delivery
        attempts of deleted tasks go with them.
        """
        cutoff = self._clock.time() - older_than
        async with self._write() as conn:
            cur = await conn.execute(
                "DELETE FROM tasks WHERE finished_at IS NOT NULL AND finished_at < ? AND status != ? "
                "AND NOT EXISTS (SELECT 1 FROM webhook_events e WHERE e.history_id = tasks.history_id "
                "AND e.state IN ('pending', 'delivering'))",
                (cutoff, _PROCESSING),
            )
            return cur.rowcount

    async def purge_stale_unfinished(self, *, older_than: float) -> int:
        """Delete tasks still processing but no longer polled (no token) and untouched for `older_than`
        seconds (the watcher gave up on them); return how many."""
        cutoff = self._clock.time() - older_than
        async with self._write() as conn:
            cur = await conn.execute(
                "DELETE FROM tasks WHERE status = ? AND token IS NULL AND updated_at < ?", (_PROCESSING, cutoff)
            )
            return cur.rowcount

    # ------------------------------------------------------------------ idempotency keys

    async def claim_idempotency_key(
        self, account_fp: str, key: str, request_hash: str, *, ttl: float = 86400, lease: float | None = None
    ) -> IdempotencyClaim:
        """Claim idempotency key `key` of `account_fp` for a request whose body hashes to `request_hash`.

        Atomically: no live row (none, or expired) -> a new in-progress row valid for `ttl` seconds and
        NEW; a different hash -> MISMATCH; the same hash still in progress -> IN_PROGRESS; the same hash
        completed -> REPLAY with the stored status and body. With `lease`, an in-progress row older than
        `lease` seconds counts as abandoned (its request died with a crashed process) and is claimed anew.
        """
        now = self._clock.time()
        async with self._write() as conn:
            async with conn.execute(
                "SELECT request_hash, status, body, created_at, expires_at FROM idempotency_keys "
                "WHERE account_fp = ? AND key = ?",
                (account_fp, key),
            ) as cur:
                row = await cur.fetchone()
            stale = lease is not None and row is not None and row["status"] is None and row["created_at"] <= now - lease
            if row is None or row["expires_at"] <= now or stale:
                await conn.execute(
                    "INSERT OR REPLACE INTO idempotency_keys "
                    "(account_fp, key, request_hash, status, body, created_at, expires_at) "
                    "VALUES (?, ?, ?, NULL, NULL, ?, ?)",
                    (account_fp, key, request_hash, now, now + ttl),
                )
                return IdempotencyClaim(ClaimState.NEW)
            if row["request_hash"] != request_hash:
                return IdempotencyClaim(ClaimState.MISMATCH)
            if row["status"] is None:
                return IdempotencyClaim(ClaimState.IN_PROGRESS)
            return IdempotencyClaim(ClaimState.REPLAY, status=int(row["status"]), body=bytes(row["body"] or b""))

    async def complete_idempotency_key(self, account_fp: str, key: str, *, status: int, body: bytes) -> None:
        """Store the response of the request that claimed the key; later claims REPLAY it until expiry."""
        async with self._write() as conn:
            await conn.execute(
                "UPDATE idempotency_keys SET status = ?, body = ? WHERE account_fp = ? AND key = ?",
                (status, body, account_fp, key),
            )

    async def release_idempotency_key(self, account_fp: str, key: str) -> None:
        """Forget an in-progress key (the request failed before spending anything) so a retry runs anew.

        A completed key is kept: its response must still be replayed.
        """
        async with self._write() as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE account_fp = ? AND key = ? AND status IS NULL",
                (account_fp, key),
            )

    async def purge_idempotency_keys(self) -> int:
        """Delete expired idempotency keys; return how many."""
        async with self._write() as conn:
            cur = await conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (self._clock.time(),))
            return cur.rowcount


# ---------------------------------------------------------------------- helpers


def _create_private_file(path: Path) -> None:
    """Create `path` (and missing parents, 0700) as an empty 0600 file; tighten an existing file we own."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            log.warning("task store %s was readable by others; restricting it to mode 0600", path)
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _tighten_companions(path: Path) -> None:
    """Make the `-wal` and `-shm` files 0600 too (SQLite copies the main file's mode; this is a guard)."""
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        try:
            st = companion.stat()
        except FileNotFoundError:
            continue
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            companion.chmod(0o600)


async def _migrate(conn: aiosqlite.Connection, migrations: Sequence[Migration]) -> None:
    """Apply the migrations past the file's `user_version`, each in its own transaction."""
    target = len(migrations)
    current = await _user_version(conn)
    if current > target:
        raise SchemaVersionError(f"database schema version {current} is newer than this server's ({target})")
    for version in range(current + 1, target + 1):
        try:
            await conn.execute("BEGIN IMMEDIATE")
            # Re-read under the write lock: another process may have migrated meanwhile.
            if await _user_version(conn) >= version:
                await conn.execute("ROLLBACK")
                continue
            migration = migrations[version - 1]
            if isinstance(migration, str):
                for statement in _split_sql(migration):
                    await conn.execute(statement)
            else:
                await migration(conn)
            await conn.execute(f"PRAGMA user_version = {version:d}")
            await uncancellable(_exec(conn, "COMMIT"))
        except BaseException:
            await uncancellable(_rollback(conn))
            raise
        log.info("task store schema migrated to version %d", version)


async def _user_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


def _split_sql(script: str) -> list[str]:
    """Split a script into complete statements (semicolons inside strings or triggers are respected).

    `executescript` cannot be used: it commits any open transaction first.
    """
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if _strip_sql_comments(pending).strip(" \t\r\n;"):
                statements.append(pending.strip())
            pending = ""
    if _strip_sql_comments(pending).strip(" \t\r\n;"):
        raise StoreError("migration script ends with an incomplete statement")
    return statements


def _strip_sql_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


async def _exec(conn: aiosqlite.Connection, sql: str) -> None:
    await conn.execute(sql)


async def _rollback(conn: aiosqlite.Connection) -> None:
    try:
        await conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        # The transaction may already be gone: SQLite rolls back by itself after some errors, and a
        # cancelled COMMIT still runs on aiosqlite's thread before this statement.
        if "no transaction is active" not in str(exc):
            raise



async def _fetch_one(conn: aiosqlite.Connection, history_id: str) -> TaskRecord | None:
    async with conn.execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE history_id = ?", (history_id,)) as cur:
        row = await cur.fetchone()
    return _record_from_row(row) if row is not None else None


def _dump_json(value: Mapping[str, Any] | None) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _record_from_row(row: sqlite3.Row) -> TaskRecord:
    results = row["results"]
    raw_data = row["raw_data"]
    return TaskRecord(
        history_id=row["history_id"],
        account_fp=row["account_fp"],
        token=row["token"],
        kind=TaskKind(row["kind"]),
        model=row["model"],
        submit_id=row["submit_id"],
        status=TaskStatus(row["status"]),
        upstream_status=row["upstream_status"],
        fail_code=row["fail_code"],
        error=cast("dict[str, str]", json.loads(row["error"])) if row["error"] is not None else None,
        item_count=row["item_count"],
        results=tuple(json.loads(results)) if results is not None else None,
        raw_data=cast("dict[str, Any]", json.loads(raw_data)) if raw_data is not None else None,
        callback_url=row["callback_url"],
        input_images=row["input_images"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        account_id=row["account_id"],
    )
