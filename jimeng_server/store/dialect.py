"""The narrow dialect adapter under the queries written once (`tables.py`).

Every shared statement is written in PostgreSQL's text (`$n` parameters, `col = ANY($n::text[])` list
membership, `FOR UPDATE [OF t] [SKIP LOCKED]`, `GREATEST` / `LEAST`, `::type` casts, `ON CONFLICT ...`,
`RETURNING`); `render(query, Dialect.SQLITE)` rewrites exactly those constructs for SQLite (`?n`,
`IN (SELECT value FROM json_each(?n))`, no row locks: SQLite has one writer, `MAX` / `MIN`, no casts), and a
list parameter is bound there as its JSON text. Anything else in a shared statement must mean the same in both.

`Db` is one connection inside one store operation (a transaction, or a lone autocommit read); each backend
makes its own (`SqliteDb` here, `postgres.PgDb`). Pure text functions plus a thin aiosqlite wrapper.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from functools import cache
from typing import Any, Final, Protocol, TypeVar, cast

import aiosqlite

from .rows import Row

__all__ = ["Db", "Dialect", "SqliteDb", "UniqueViolation", "render", "render_schema"]

_T = TypeVar("_T")


class Dialect(StrEnum):
    """The SQL dialects the store runs on."""

    SQLITE = "sqlite"
    POSTGRES = "postgres"


_SQLITE_REWRITES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"=\s*ANY\(\$(\d+)::\w+\[\]\)"), r"IN (SELECT value FROM json_each($\1))"),
    (re.compile(r"\s+FOR UPDATE(?: OF \w+)?(?: SKIP LOCKED)?"), ""),
    (re.compile(r"\bGREATEST\("), "MAX("),
    (re.compile(r"\bLEAST\("), "MIN("),
    (re.compile(r"::[a-z]+(?: precision)?(?:\[\])?"), ""),
    (re.compile(r"\$(\d+)"), r"?\1"),
)


@cache
def render(query: str, dialect: Dialect) -> str:
    """`query` (PostgreSQL text, see the module docstring) as `dialect` runs it; computed once per statement."""
    if dialect is Dialect.POSTGRES:
        return query
    for pattern, replacement in _SQLITE_REWRITES:
        query = pattern.sub(replacement, query)
    return query


_SQLITE_TYPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bDOUBLE PRECISION\b"), "REAL"),
    (re.compile(r"\bBIGINT\b"), "INTEGER"),
    (re.compile(r"\bBYTEA\b"), "BLOB"),
)


def render_schema(ddl: str, dialect: Dialect) -> str:
    """A shared schema script (PostgreSQL DDL; a table that SQLite should store `WITHOUT ROWID` says so) as
    `dialect` runs it: SQLite's type names (`REAL`, `INTEGER`, `BLOB`); PostgreSQL without `WITHOUT ROWID`."""
    if dialect is Dialect.POSTGRES:
        return ddl.replace(") WITHOUT ROWID;", ");")
    for pattern, replacement in _SQLITE_TYPES:
        ddl = pattern.sub(replacement, ddl)
    return ddl


class UniqueViolation(Exception):
    """A write broke a unique constraint. `constraint` names it (SQLite `table.column`, PostgreSQL the
    constraint's name, e.g. `accounts_name_key`); never a value."""

    def __init__(self, constraint: str) -> None:
        super().__init__(f"unique constraint violated: {constraint}")
        self.constraint = constraint


class Db(Protocol):
    """One connection for one store operation; statements are shared PostgreSQL text (`render` applies)."""

    dialect: Dialect

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        """Every row of `query`."""

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        """The first row of `query`, or None."""

    async def fetchval(self, query: str, *args: Any) -> Any:
        """The first column of the first row of `query`, or None."""

    async def execute(self, query: str, *args: Any) -> int:
        """Run `query`; the number of rows it changed. Every method raises `UniqueViolation` for a duplicate."""

    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None:
        """Run `query` once per parameter tuple."""

    async def fetch_each(self, *queries: tuple[str, Sequence[Any]]) -> list[list[Row]]:
        """Every row of each `(query, args)`, run in order: on SQLite in ONE trip to the connection's thread (each
        statement still its own, unless inside a transaction)."""


_LIST_OPERAND: Final = "json_each("
"""What `render` makes of a `= ANY($n)` operand for SQLite: the only place a shared statement binds a list."""


@cache
def _binds_lists(text: str) -> bool:
    """Whether a rendered SQLite statement has a list operand (`json_each(?n)`); computed once per statement."""
    return _LIST_OPERAND in text


def _sqlite_args(text: str, args: Sequence[Any]) -> tuple[Any, ...]:
    """Parameters as SQLite binds them for the rendered statement `text`: a list (a `= ANY($n)` operand) as its
    JSON text. The statement decides: one without a list operand binds its parameters as given (most of them;
    no parameter is looked at), one with a list operand has every list among its parameters encoded."""
    if not _binds_lists(text):
        return args if type(args) is tuple else tuple(args)
    return tuple([json.dumps(a) if isinstance(a, list) else a for a in args])


_Deferred = tuple[str, list[tuple[Any, ...]] | None]
"""A statement waiting to run: its SQLite text and, for an `executemany`, its parameter tuples (None: the text
alone, e.g. BEGIN)."""


class SqliteDb:
    """`Db` over an aiosqlite connection (the caller owns its transaction).

    Every statement is a trip to aiosqlite's thread (a queue put, a thread switch, a wake-up of the event loop),
    which costs more than most statements do. A transaction's Db is built with `begin` (`SqliteStore._tx`):
    the BEGIN and every `executemany` (it answers nothing) then wait and run on that thread together with the
    next statement that answers (`fetch*`, `execute`) or with `commit()`, in the order they were given: a
    transaction of writes is ONE trip, a read-then-write one two. An error of a waiting statement is raised by
    the call that runs it, inside the same transaction (the store then rolls it back)."""

    dialect = Dialect.SQLITE

    def __init__(self, conn: aiosqlite.Connection, *, begin: str | None = None) -> None:
        self._conn = conn
        self._waiting: list[_Deferred] | None = [(begin, None)] if begin is not None else None
        self.begun = begin is None  # a transaction's BEGIN was sent to the thread (a rollback is due on failure)

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        text = render(query, self.dialect)
        values = _sqlite_args(text, args)
        if self._waiting:
            return await self._run(lambda conn: conn.execute(text, values).fetchall())
        with _unique_violation():
            return list(await self._conn.execute_fetchall(text, values))

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        rows = await self.fetch(query, *args)  # one trip to aiosqlite's thread (a cursor would take three)
        return rows[0] if rows else None

    async def fetchval(self, query: str, *args: Any) -> Any:
        row = await self.fetchrow(query, *args)
        return row[0] if row is not None else None

    async def execute(self, query: str, *args: Any) -> int:
        text = render(query, self.dialect)
        values = _sqlite_args(text, args)
        if self._waiting:
            return await self._run(lambda conn: conn.execute(text, values).rowcount)
        with _unique_violation():
            cur = await self._conn.execute(text, values)
        return cur.rowcount  # not closed: closing is another trip, and a write's cursor holds nothing

    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None:
        text = render(query, self.dialect)
        rows = [_sqlite_args(text, a) for a in args]
        if self._waiting is not None:
            self._waiting.append((text, rows))
            return
        with _unique_violation():
            await self._conn.executemany(text, rows)

    async def fetch_each(self, *queries: tuple[str, Sequence[Any]]) -> list[list[Row]]:
        rendered = [(render(query, self.dialect), args) for query, args in queries]
        texts = [(text, _sqlite_args(text, args)) for text, args in rendered]
        return await self._run(lambda conn: [conn.execute(text, values).fetchall() for text, values in texts])

    async def commit(self) -> None:
        """COMMIT, after the statements still waiting (one trip)."""
        await self._run(lambda conn: conn.execute("COMMIT"))

    async def _run(self, last: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run the waiting statements, then `last`, in one trip to the connection's thread."""
        waiting, self._waiting = self._waiting or [], []
        self.begun = True  # from here on the thread runs the BEGIN even if this call is cancelled

        def run(conn: sqlite3.Connection) -> _T:
            for text, rows in waiting:
                if rows is None:
                    conn.execute(text)
                else:
                    conn.executemany(text, rows)
            return last(conn)

        with _unique_violation():
            # aiosqlite's own way to run a callable on its thread (what its execute* methods use): one trip.
            return cast("_T", await self._conn._execute(lambda: run(self._conn._conn)))  # type: ignore[no-untyped-call]


@contextmanager
def _unique_violation() -> Iterator[None]:
    """SQLite's `UNIQUE constraint failed: table.column` as `UniqueViolation("table.column")`."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        prefix = "UNIQUE constraint failed: "
        if str(exc).startswith(prefix):
            raise UniqueViolation(str(exc).removeprefix(prefix)) from None
        raise
