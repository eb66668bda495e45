"""The PostgreSQL-only SQL of `postgres.PostgresStore`: the version table and migration lock, the replicas'
watch leases and LISTEN/NOTIFY. The tables every backend has are in `tables.py`, the schema in `schema.py`.

Pure text, no I/O. `$n` are asyncpg parameters.
"""

from __future__ import annotations

from typing import Final

from . import schema
from .dialect import Dialect

MIGRATION_LOCK: Final = 0x4A494D454E47  # pg_advisory_xact_lock key: one replica migrates at a time

VERSION_TABLE: Final = """
CREATE TABLE IF NOT EXISTS jimeng_schema (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    version  INTEGER NOT NULL
)
"""
READ_VERSION: Final = "SELECT version FROM jimeng_schema"
WRITE_VERSION: Final = (
    "INSERT INTO jimeng_schema (only_row, version) VALUES (TRUE, $1) "
    "ON CONFLICT (only_row) DO UPDATE SET version = excluded.version"
)

MIGRATIONS: list[str] = list(schema.migrations(Dialect.POSTGRES))
"""The schema history (`schema.HISTORY` as PostgreSQL runs it): entry i brings the database to version i + 1."""


# ------------------------------------------------------------------------------------------------ replicas

CHANNEL: Final = "jimeng"
"""The LISTEN/NOTIFY channel; payloads are `<NoticeKind>:<history_id>`."""
NOTIFY: Final = f"SELECT pg_notify('{CHANNEL}', $1)"

UPSERT_REPLICA: Final = (
    "INSERT INTO watch_replicas (owner, seen_until) VALUES ($1, $2) "
    "ON CONFLICT (owner) DO UPDATE SET seen_until = excluded.seen_until"
)
FORGET_DEAD_REPLICAS: Final = "DELETE FROM watch_replicas WHERE seen_until <= $1"
LIVE_REPLICAS: Final = "SELECT COUNT(*) FROM watch_replicas WHERE seen_until > $1"
RENEW_LEASES: Final = "UPDATE watch_leases SET lease_until = $3 WHERE owner = $1 AND lease_until > $2 RETURNING shard"
GIVE_UP_LEASES: Final = "UPDATE watch_leases SET owner = NULL WHERE owner = $1 AND shard = ANY($2::int[])"
TAKE_LEASES: Final = """
WITH free AS (
    SELECT shard FROM watch_leases WHERE lease_until <= $2 ORDER BY shard LIMIT $4 FOR UPDATE SKIP LOCKED
)
UPDATE watch_leases w SET owner = $1, lease_until = $3 FROM free WHERE w.shard = free.shard
RETURNING w.shard
"""
RELEASE_ALL_LEASES: Final = "UPDATE watch_leases SET owner = NULL, lease_until = 0 WHERE owner = $1"
UNREGISTER_REPLICA: Final = "DELETE FROM watch_replicas WHERE owner = $1"
