"""The dialect adapter under the store's shared statements (jimeng_server/store/dialect.py): what SQLite is
given for each PostgreSQL construct the shared text may use, and that the rendered text runs on real SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from jimeng_server.store.dialect import Dialect, SqliteDb, render


@pytest.mark.parametrize(
    ("query", "sqlite"),
    [
        ("SELECT a FROM t WHERE k = $1 AND v = $2", "SELECT a FROM t WHERE k = ?1 AND v = ?2"),
        ("SELECT a FROM t WHERE id = ANY($2::text[])", "SELECT a FROM t WHERE id IN (SELECT value FROM json_each(?2))"),
        ("SELECT a FROM t WHERE k = $1 FOR UPDATE", "SELECT a FROM t WHERE k = ?1"),
        ("SELECT a FROM t e LIMIT $3\n    FOR UPDATE OF e SKIP LOCKED\n)", "SELECT a FROM t e LIMIT ?3\n)"),
        ("SET n = GREATEST(n, $2), m = LEAST(COALESCE(m, $1), $1)", "SET n = MAX(n, ?2), m = MIN(COALESCE(m, ?1), ?1)"),
        ("WHEN 'video' THEN $1::double precision ELSE $2::int END", "WHEN 'video' THEN ?1 ELSE ?2 END"),
    ],
)
def test_render_sqlite(query: str, sqlite: str) -> None:
    assert render(query, Dialect.SQLITE) == sqlite
    assert render(query, Dialect.POSTGRES) == query  # PostgreSQL runs the shared text as written


def test_rendered_text_runs_on_sqlite() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [("a", 1), ("b", 2), ("c", 3)])
    query = render("SELECT k, GREATEST(n, $2) FROM t WHERE k = ANY($1::text[]) ORDER BY k FOR UPDATE", Dialect.SQLITE)
    assert conn.execute(query, ('["a", "c", "x"]', 2)).fetchall() == [("a", 2), ("c", 3)]


async def test_a_list_is_bound_as_json_only_where_the_statement_takes_a_list(tmp_path: Path) -> None:
    """`SqliteDb` encodes list parameters for statements with a `= ANY($n)` operand (the rows named in the list
    come back); every other statement's parameters reach SQLite as given, a text that looks like a JSON list
    included, in both the direct and the held (`begin`) path and in `executemany`."""
    async with aiosqlite.connect(tmp_path / "t.db", isolation_level=None) as conn:
        db = SqliteDb(conn)
        await db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER, note TEXT)")
        await db.executemany("INSERT INTO t VALUES ($1, $2, $3)", [("a", 1, '["a"]'), ["b", 2, None], ("c", 3, "x")])
        held = SqliteDb(conn, begin="BEGIN")
        await held.executemany("UPDATE t SET n = n + $2 WHERE k = ANY($1::text[])", [(["a", "b"], 10)])
        assert await held.execute("UPDATE t SET note = $1 WHERE k = $2", "[1, 2]", "c") == 1
        await held.commit()
        rows = await db.fetch("SELECT k, n, note FROM t WHERE k = ANY($1::text[]) ORDER BY k", ["a", "c", "zz"])
        assert [tuple(r) for r in rows] == [("a", 11, '["a"]'), ("c", 3, "[1, 2]")]
        assert await db.fetchval("SELECT note FROM t WHERE note = $1", '["a"]') == '["a"]'
        assert [[tuple(r) for r in rs] for rs in await db.fetch_each(
            ("SELECT k FROM t WHERE n = $1", (12,)), ("SELECT count(*) FROM t WHERE k = ANY($1::text[])", (["b"],))
        )] == [[("b",)], [(1,)]]
