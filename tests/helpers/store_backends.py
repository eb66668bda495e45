"""Store backends for tests (a pytest plugin loaded by conftest): a real PostgreSQL server per test session
and a fresh database per test, and `store_url`, parametrized over both backends.

`JIMENG_TEST_POSTGRES` (a `postgresql://` URL of a server where the user may CREATE DATABASE) uses that
server; unset, the session starts its own from Debian's `postgresql` package (`/usr/lib/postgresql/*/bin`) in
a temporary directory, as the `postgres` user when running as root (initdb refuses root). When no server
can be had, PostgreSQL tests are skipped outside CI (env `CI` unset) with the reason, and fail in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import importlib.util
import os
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from simulate_proc import free_port

from jimeng_server.clock import Clock
from jimeng_server.store.base import Store
from jimeng_server.store.sqlite import SqliteStore

BACKENDS = ("sqlite", "postgresql")
ENV_URL = "JIMENG_TEST_POSTGRES"


@dataclass(frozen=True, slots=True)
class PgServer:
    """A reachable PostgreSQL server: `url(db)` is the URL of database `db` on it."""

    base: str  # URL without the database name, e.g. postgresql://postgres@127.0.0.1:5433

    def url(self, database: str) -> str:
        return f"{self.base}/{database}"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class _LocalServer:
    """A throw-away cluster in a temporary directory, trust auth, loopback only."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="jimeng-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=60)

    def start(self) -> PgServer:
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "server.log")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", log, "-w", "-o", options, "start")
        return PgServer(f"postgresql://postgres@127.0.0.1:{self.port}")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def local_server() -> Iterator[PgServer]:
    """A throw-away local server for the duration of the block (benches); RuntimeError when there is none."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise RuntimeError("no /usr/lib/postgresql/*/bin/initdb: apt-get install postgresql")
    server = _LocalServer(bin_dir)
    try:
        yield server.start()
    finally:
        server.stop()


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL half of the store tests not run: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run it: install Debian's postgresql)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (see the module docstring)."""
    if importlib.util.find_spec("asyncpg") is None:
        _unavailable("asyncpg is not installed (pip install -e '.[test]')")
    url = os.environ.get(ENV_URL)
    if url:
        yield PgServer(url.rstrip("/").rsplit("/", 1)[0] if url.count("/") > 2 else url)
        return
    bin_dir = _bin_dir()
    if bin_dir is None:
        _unavailable("no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql) and JIMENG_TEST_POSTGRES unset")
    assert bin_dir is not None
    server = _LocalServer(bin_dir)
    try:
        started = server.start()
    except (subprocess.SubprocessError, OSError, LookupError) as exc:
        server.stop()
        _unavailable(f"could not start a local server ({exc})")
        raise
    yield started
    server.stop()


async def _admin(server: PgServer, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server.url("postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def pg_url(pg_server: PgServer) -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    await _admin(pg_server, f"CREATE DATABASE {name}")
    yield pg_server.url(name)
    await _admin(pg_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A `[store] url` for a fresh, empty store: `sqlite:///...` or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'tasks.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


async def open_store(url: str, clock: Clock) -> Store:
    """A started store for `url` (either backend)."""
    if url.startswith("sqlite:///"):
        return await SqliteStore.open(url.removeprefix("sqlite:///"), clock=clock)
    from jimeng_server.store.postgres import PostgresStore

    return await PostgresStore.open(url, clock=clock, pool_size=4)


async def execute_sql(url: str, sql: str, *args: object) -> None:
    """Run one statement on the store's database directly (test set-up that no API offers). Placeholders
    are `?` for SQLite and `$n` for PostgreSQL."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")

        def run() -> None:
            conn = sqlite3.connect(path)
            try:
                conn.execute(sql, args)
                conn.commit()
            finally:
                conn.close()

        await asyncio.to_thread(run)
        return
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


def sqlite_schema(path: str | Path) -> dict[str, object]:
    """The structure of an SQLite store file, comparable across migration paths: per table its columns
    (name, type, not null, default, primary-key position), WITHOUT ROWID or not, indexes (columns, unique,
    partial condition) and foreign keys; plus `user_version`."""
    conn = sqlite3.connect(path)
    try:
        tables: dict[str, object] = {}
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in names:
            columns = [list(r[1:]) for r in conn.execute(f"PRAGMA table_info({table})")]
            (without_rowid,) = conn.execute("SELECT wr FROM pragma_table_list WHERE name = ?", (table,)).fetchone()
            indexes = {}
            for _seq, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
                cols = [r[2] for r in conn.execute(f"PRAGMA index_info({name})")]
                where = None
                if partial:
                    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()
                    where = " ".join(sql.split(" WHERE ", 1)[1].split())
                indexes[name if origin == "c" else f"{origin}:{','.join(cols)}"] = [cols, unique, where]
            foreign = [list(r[2:]) for r in conn.execute(f"PRAGMA foreign_key_list({table})")]
            tables[table] = {"columns": columns, "without_rowid": without_rowid, "indexes": indexes, "fks": foreign}
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        return {"user_version": version, "tables": tables}
    finally:
        conn.close()


async def pg_schema(url: str) -> dict[str, object]:
    """The structure of a PostgreSQL store database: columns (type, nullable, default, identity), index
    definitions, constraint definitions and the schema version."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity, identity_generation "
            "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        )
        indexes = await conn.fetch("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname")
        constraints = await conn.fetch(
            "SELECT conrelid::regclass::text AS t, conname, pg_get_constraintdef(oid) AS d FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace ORDER BY t, conname"
        )
        version = await conn.fetchval("SELECT version FROM jimeng_schema")
        return {
            "version": version,
            "columns": [list(r.values()) for r in columns],
            "indexes": [r["indexdef"] for r in indexes],
            "constraints": [list(r.values()) for r in constraints],
        }
    finally:
        await conn.close()
