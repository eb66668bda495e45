"""The embedded store backend (`base.Store`): one aiosqlite connection (WAL) holding task records,
idempotency keys and the webhook outbox.

The file is created 0600 (its `-wal`/`-shm` companions are tightened to match); the schema is versioned
with `PRAGMA user_version` through the ordered `MIGRATIONS` list (`schema.py`). The tables' statements are
shared with PostgreSQL (`tables.py` over `dialect.SqliteDb`). One process per file: for several replicas use
the PostgreSQL backend.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from ..clock import Clock
from ..concurrency import uncancellable
from ..config import SYNCHRONOUS_MODES
from ..metrics import timed_store
from . import schema
from .base import SchemaVersionError, StoreError
from .dialect import Db, Dialect, SqliteDb
from .tables import SharedTables

__all__ = ["MIGRATIONS", "Migration", "SqliteStore"]

log = logging.getLogger(__name__)
# aiosqlite logs every statement WITH its parameters at DEBUG, and task rows hold session tokens.
logging.getLogger("aiosqlite").setLevel(logging.INFO)

_T = TypeVar("_T")

Migration = str | Callable[[aiosqlite.Connection], Awaitable[None]]
"""One schema step: an SQL script (statements separated by `;`) or a coroutine function given the
connection. Either runs inside the migration's own transaction and must not COMMIT itself."""

MIGRATIONS: list[Migration] = list(schema.migrations(Dialect.SQLITE))
"""The schema history (`schema.HISTORY` as SQLite runs it), oldest first: entry i brings the file to
`user_version` i + 1."""


class SqliteStore(SharedTables):
    """The SQLite `base.Store`: task records, idempotency keys and the webhook outbox in one file.

    Writes run one at a time under one asyncio lock on the write connection (`BEGIN IMMEDIATE` transactions
    never interleave). Reads run on their own `read_connections` (WAL readers see the last committed state and
    never wait behind a write); with `read_connections=0` they share the write connection and its lock. Time
    stamps come from the injected clock. Build with `SqliteStore(path, clock=...)` and `await start()` (or
    `await SqliteStore.open(...)`), release with `close()` (or use `async with`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock,
        busy_timeout: float = 5.0,
        synchronous: str = "normal",
        read_connections: int = 2,
        shared: bool = False,
    ) -> None:
        """A store for the database at `path`; nothing is opened until `start()`. `synchronous` is one of
        `SYNCHRONOUS_MODES`. `shared`: other processes send webhooks from this file at the same time (a sender
        process of `[webhooks] processes`), so only expired delivery leases are released at start-up."""
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
        self._path = Path(path)
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._read_count = max(0, read_connections)
        self._shared = shared
        self._conn_: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._idle_readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path, *, clock: Clock, **options: Any) -> SqliteStore:
        """A started store: `SqliteStore(path, clock=clock, **options)` then `await start()`."""
        store = cls(path, clock=clock, **options)
        await store.start()
        return store

    async def start(self) -> None:
        """Open (creating if needed, mode 0600, parents included) and migrate the database.

        Raises `SchemaVersionError` if the file is newer than `MIGRATIONS`.
        """
        path = self._path
        await asyncio.to_thread(_create_private_file, path)
        conn = await self._connect()
        try:
            async with conn.execute("PRAGMA journal_mode = WAL") as cur:
                row = await cur.fetchone()
            wal = row is not None and str(row[0]).lower() == "wal"
            if not wal:
                log.warning("task store %s: WAL journal mode unavailable, using %s", path, row and row[0])
            await conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
            await _migrate(conn, MIGRATIONS)
            await asyncio.to_thread(_tighten_companions, path)
            for _ in range(self._read_count if wal else 0):  # without WAL a reader would block the writer
                reader = await self._connect()
                await reader.execute("PRAGMA query_only = ON")
                self._readers.append(reader)
                self._idle_readers.put_nowait(reader)
        except BaseException:
            for opened in (conn, *self._readers):
                await opened.close()
            self._readers.clear()
            raise
        self._conn_ = conn

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(str(self._path), isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            await conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            await conn.close()
            raise
        return conn

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._conn_ is None:
            raise RuntimeError("the task store is not started")
        return self._conn_

    async def close(self) -> None:
        """Wait for the operations in flight, then close the connections. Idempotent."""
        async with self._lock:
            if self._closed or self._conn_ is None:
                return
            self._closed = True
            for _ in self._readers:  # every reader back: no read in flight
                await self._idle_readers.get()
            for reader in self._readers:
                await reader.close()
            await self._conn_.close()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def schema_version(self) -> int:
        """The schema version this code writes (`len(MIGRATIONS)`)."""
        return len(MIGRATIONS)

    # ------------------------------------------------------------------ transactions

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Db]:
        """For reads only: an idle reader, or the write connection under its lock without readers."""
        with timed_store("read"):
            if not self._readers:
                async with self._lock:
                    yield SqliteDb(self._conn)
                return
            if self._closed:
                raise RuntimeError("the task store is closed")
            reader = await self._idle_readers.get()
            try:
                yield SqliteDb(reader)
            finally:
                self._idle_readers.put_nowait(reader)

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Db]:
        """One `BEGIN IMMEDIATE` transaction: committed if the body returns, rolled back if it raises
        (cancellation included); the commit or rollback itself always completes."""
        with timed_store("write"):
            async with self._lock:
                # The BEGIN and the writes wait for the first statement that answers, or the commit: one trip to
                # the thread for them all (`SqliteDb`).
                db = SqliteDb(self._conn, begin="BEGIN IMMEDIATE")
                try:
                    yield db
                    await uncancellable(db.commit())
                except BaseException:
                    if db.begun:  # else nothing reached the database
                        await uncancellable(_rollback(self._conn))
                    raise

    @asynccontextmanager
    async def _stmt(self) -> AsyncIterator[Db]:
        """The write connection for ONE statement that is its own transaction (autocommit): no BEGIN/COMMIT
        round trips."""
        with timed_store("write"):
            async with self._lock:
                yield SqliteDb(self._conn)


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
