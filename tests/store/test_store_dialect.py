"""The dialect adapter under the store's shared statements (jimeng_server/store/dialect.py): what SQLite is
given for each PostgreSQL construct the shared text may use, and that the rendered text runs on real SQLite."""

from __future__ import annotations

import sqlite3

import pytest

from jimeng_server.store.dialect import Dialect, render


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
