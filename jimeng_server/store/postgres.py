"""The shared store backend (`base.Store`) on PostgreSQL through an asyncpg pool: several server processes
(replicas) may use one database at once.

Every write that must be atomic runs in one transaction; row locks make concurrent replicas safe:
idempotency claims lock their key row, outbox claims take due events with `FOR UPDATE SKIP LOCKED` (a
webhook is sent by one replica at a time), settling only moves tasks still processing. The schema is
versioned in table `jimeng_schema` through `postgres_sql.MIGRATIONS` (`schema.py`), migrated under an
advisory lock (one replica at a time); a database newer than this code is refused. The tables' statements
are shared with SQLite (`tables.py`); the PostgreSQL-only SQL is in `postgres_sql.py`.

For replicas (`base.ReplicaStore`): shard watch leases, and LISTEN/NOTIFY on one channel: a stored task, a
settled task and new due events notify from inside their transaction (delivered on commit).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg

from ..clock import Clock
from . import postgres_sql as sql
from .base import WATCH_SHARDS, Notice, NoticeKind, SchemaVersionError, StoreError
from .dialect import Db, Dialect, UniqueViolation
from .rows import Row
from .tables import SharedTables

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)


class PostgresStore(SharedTables):
    """The PostgreSQL `base.Store`. Build with `PostgresStore(url, clock=..., pool_size=...)`, `await start()`
    (connects, migrates), `close()`. `url` is a libpq URL (`postgresql://user:password@host:port/db`); it is
    never logged."""

    def __init__(self, url: str, *, clock: Clock, pool_size: int = 10) -> None:
        """A store for the database at `url`; nothing is opened until `start()`."""
        self._url = url
        self._clock = clock
        self._pool_size = pool_size
        self._pool_: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._on_notice: Callable[[Notice], None] | None = None

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, url: str, *, clock: Clock, pool_size: int = 10) -> PostgresStore:
        """A started store: `PostgresStore(url, ...)` then `await start()`."""
        store = cls(url, clock=clock, pool_size=pool_size)
        await store.start()
        return store

    async def start(self) -> None:
        """Connect the pool and migrate. Raises `SchemaVersionError` on a database newer than `MIGRATIONS`,
        `StoreError` when the server cannot be reached (the message never holds the URL)."""
        try:
            pool = await asyncpg.create_pool(self._url, min_size=1, max_size=self._pool_size)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to the PostgreSQL store: {type(exc).__name__}: {exc}") from None
        try:
            async with pool.acquire() as conn:
                await _migrate(conn, sql.MIGRATIONS)
        except BaseException:
            await pool.close()
            raise
        self._pool_ = pool

    @property
    def _pool(self) -> asyncpg.Pool:
        if self._pool_ is None:
            raise RuntimeError("the task store is not started")
        return self._pool_

    async def close(self) -> None:
        """Wait for the connections in use to be released, then close them. Idempotent."""
        await self.unlisten()
        pool, self._pool_ = self._pool_, None
        if pool is not None:
            await pool.close()

    @property
    def schema_version(self) -> int:
        """The schema version this code writes (`len(postgres_sql.MIGRATIONS)`)."""
        return len(sql.MIGRATIONS)

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Db]:
        """One transaction on one pooled connection (`tables.TableBase`)."""
        async with self._pool.acquire() as conn, conn.transaction():
            yield PgDb(conn)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Db]:
        """The pool: each statement on any free connection."""
        yield PgDb(self._pool)

    _stmt = _read
    _shared = True

    async def _notify(self, db: Db, notices: Sequence[Notice]) -> None:
        """NOTIFY every listening replica, on commit of `db`'s transaction."""
        await db.executemany(sql.NOTIFY, [(_payload(n),) for n in notices])

    # ------------------------------------------------------------------ replicas (base.ReplicaStore)

    async def renew_watch_leases(self, owner: str, *, now: float, lease_seconds: float) -> frozenset[int]:
        """See `base.ReplicaStore.renew_watch_leases` (one transaction)."""
        until = now + lease_seconds
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(sql.UPSERT_REPLICA, owner, until)
            await conn.execute(sql.FORGET_DEAD_REPLICAS, now)
            share = math.ceil(WATCH_SHARDS / max(1, int(await conn.fetchval(sql.LIVE_REPLICAS, now))))
            held = sorted(int(row["shard"]) for row in await conn.fetch(sql.RENEW_LEASES, owner, now, until))
            if len(held) > share:
                extra = held[share:]
                await conn.execute(sql.GIVE_UP_LEASES, owner, extra)
                held = held[:share]
            elif len(held) < share:
                taken = await conn.fetch(sql.TAKE_LEASES, owner, now, until, share - len(held))
                held += [int(row["shard"]) for row in taken]
        return frozenset(held)

    async def release_watch_leases(self, owner: str) -> None:
        """See `base.ReplicaStore.release_watch_leases`."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(sql.RELEASE_ALL_LEASES, owner)
            await conn.execute(sql.UNREGISTER_REPLICA, owner)

    async def listen(self, on_notice: Callable[[Notice], None]) -> None:
        """See `base.ReplicaStore.listen`: one connection of its own (outside the pool) LISTENs."""
        await self.unlisten()
        try:
            conn = await asyncpg.connect(self._url)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to the PostgreSQL store: {type(exc).__name__}: {exc}") from None
        self._on_notice = on_notice
        self._listener = conn
        await conn.add_listener(sql.CHANNEL, self._deliver)

    async def unlisten(self) -> None:
        """See `base.ReplicaStore.unlisten`."""
        conn, self._listener = self._listener, None
        self._on_notice = None
        if conn is not None and not conn.is_closed():
            await conn.close()

    @property
    def listening(self) -> bool:
        """See `base.ReplicaStore.listening`."""
        return self._listener is not None and not self._listener.is_closed()

    def _deliver(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        kind, _, history_id = str(payload).partition(":")
        on_notice = self._on_notice
        if on_notice is None:
            return
        try:
            notice = Notice(NoticeKind(kind), history_id)
        except ValueError:
            log.warning("unknown store notification %r ignored", kind)
            return
        on_notice(notice)


# ---------------------------------------------------------------------- helpers


def _payload(notice: Notice) -> str:
    """A notice as the NOTIFY payload `kind:history_id`."""
    return f"{notice.kind.value}:{notice.history_id}"


async def _migrate(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], migrations: Sequence[str]) -> None:
    """Apply the migrations past the database's version, each in its own transaction under the advisory lock
    (replicas starting together migrate one at a time; the others then find the work done)."""
    target = len(migrations)
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", sql.MIGRATION_LOCK)
            await conn.execute(sql.VERSION_TABLE)
            current = int(await conn.fetchval(sql.READ_VERSION) or 0)
            if current > target:
                raise SchemaVersionError(f"database schema version {current} is newer than this server's ({target})")
            if current == target:
                return
            await conn.execute(migrations[current])
            await conn.execute(sql.WRITE_VERSION, current + 1)
        log.info("task store schema migrated to version %d", current + 1)


def _count(status: str) -> int:
    """The row count of a command status (`UPDATE 3`, `INSERT 0 1`, `DELETE 0`)."""
    return int(status.rsplit(" ", 1)[-1])


class PgDb:
    """`dialect.Db` over an asyncpg connection or the pool."""

    dialect = Dialect.POSTGRES

    def __init__(self, conn: asyncpg.Pool | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> None:
        self._conn = conn

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        with _unique_violation():
            return list(await self._conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        with _unique_violation():
            row: Row | None = await self._conn.fetchrow(query, *args)
            return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        with _unique_violation():
            return await self._conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> int:
        with _unique_violation():
            return _count(await self._conn.execute(query, *args))

    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None:
        with _unique_violation():
            await self._conn.executemany(query, args)

    async def fetch_each(self, *queries: tuple[str, Sequence[Any]]) -> list[list[Row]]:
        if isinstance(self._conn, asyncpg.Pool):  # one connection for them all, not one checkout each
            async with self._conn.acquire() as conn:
                return await PgDb(conn).fetch_each(*queries)
        return [await self.fetch(query, *args) for query, args in queries]


@contextmanager
def _unique_violation() -> Iterator[None]:
    """asyncpg's unique violation as `dialect.UniqueViolation(constraint name)`."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise UniqueViolation(exc.constraint_name or "") from None
