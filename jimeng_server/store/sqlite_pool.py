"""The SQLite backend's SQL of the account pool and its API keys (tables `accounts` and `api_keys`, sqlite
migration 4). Private to `sqlite.SqliteStore`: every function takes the connection of one of its transactions
or reads. The records are in `pool.py`.
"""

from __future__ import annotations

import sqlite3

import aiosqlite

from .pool import AccountHealth, AccountRow, DuplicateError, KeyRow, NewAccount, NewKey
from .rows import ACCOUNT_COLUMNS, KEY_COLUMNS, account_from_row, key_from_row

# ---------------------------------------------------------------------------------------------- accounts


async def insert_account(conn: aiosqlite.Connection, new: NewAccount, *, now: float) -> int:
    """Add an account; raises DuplicateError when its name or its session is already in the pool."""
    try:
        cur = await conn.execute(
            "INSERT INTO accounts (name, region, fingerprint, masked, secret, sealed, has_proxy, note, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (new.name, new.region, new.fingerprint, new.masked, new.secret, new.sealed, new.has_proxy, new.note, now),
        )
    except sqlite3.IntegrityError as exc:
        what = "name" if "accounts.name" in str(exc) else "session"
        shown = repr(new.name) if what == "name" else new.masked
        raise DuplicateError(f"an account with this {what} ({shown}) is already in the pool") from None
    assert cur.lastrowid is not None
    return cur.lastrowid


async def accounts(conn: aiosqlite.Connection) -> list[AccountRow]:
    """Every account, by id."""
    async with conn.execute(f"SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id") as cur:
        return [account_from_row(row) for row in await cur.fetchall()]


async def account_by_id(conn: aiosqlite.Connection, account_id: int) -> AccountRow | None:
    """One account, or None."""
    async with conn.execute(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,)) as cur:
        row = await cur.fetchone()
    return account_from_row(row) if row is not None else None


async def account_by_name(conn: aiosqlite.Connection, name: str) -> AccountRow | None:
    """One account by its name, or None."""
    async with conn.execute(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = ?", (name,)) as cur:
        row = await cur.fetchone()
    return account_from_row(row) if row is not None else None


async def set_enabled(conn: aiosqlite.Connection, account_id: int, enabled: bool) -> bool:
    """Enable or disable an account (enabling also ends its cool-down); False when there is no such id."""
    cur = await conn.execute(
        "UPDATE accounts SET enabled = ?, cooldown_until = CASE WHEN ? THEN NULL ELSE cooldown_until END WHERE id = ?",
        (enabled, enabled, account_id),
    )
    return cur.rowcount > 0


async def update_secret(conn: aiosqlite.Connection, account_id: int, secret: bytes, sealed: bool) -> None:
    """Replace an account's credential blob (a refreshed cookie jar)."""
    await conn.execute("UPDATE accounts SET secret = ?, sealed = ? WHERE id = ?", (secret, sealed, account_id))


async def delete_account(conn: aiosqlite.Connection, account_id: int) -> bool:
    """Remove an account; False when there is no such id. Its tasks keep their `account_id` (queries of them
    then answer from the store only)."""
    cur = await conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
    return cur.rowcount > 0


async def record_health(conn: aiosqlite.Connection, account_id: int, health: AccountHealth, *, now: float) -> None:
    """Store the outcome of a use or a check (the balance is `record_credits`)."""
    await conn.execute(
        "UPDATE accounts SET last_error_code = ?, last_error = ?, cooldown_until = ?, "
        "last_check_at = CASE WHEN ? THEN ? ELSE last_check_at END WHERE id = ?",
        (health.error_code, health.error, health.cooldown_until, health.checked, now, account_id),
    )


async def record_credits(conn: aiosqlite.Connection, account_id: int, credits: int, *, now: float) -> None:
    """Store a balance reading."""
    await conn.execute("UPDATE accounts SET credits = ?, credits_at = ? WHERE id = ?", (credits, now, account_id))


async def tasks_in_flight(
    conn: aiosqlite.Connection, *, image_since: float, video_since: float
) -> list[tuple[int, str, int]]:
    """`(account_id, owner, count)` of the processing tasks paid by pool accounts and submitted after the
    cut-off of their kind."""
    async with conn.execute(
        "SELECT account_id, account_fp, COUNT(*) AS n FROM tasks WHERE status = 20 AND account_id IS NOT NULL "
        "AND created_at > CASE kind WHEN 'video' THEN ? ELSE ? END GROUP BY account_id, account_fp",
        (video_since, image_since),
    ) as cur:
        return [(row["account_id"], row["account_fp"], row["n"]) for row in await cur.fetchall()]


# ---------------------------------------------------------------------------------------------- keys


async def insert_key(conn: aiosqlite.Connection, new: NewKey, *, now: float) -> int:
    """Add a key; raises DuplicateError when its name is taken."""
    try:
        cur = await conn.execute(
            "INSERT INTO api_keys (name, hash, prefix, accounts, rate_per_minute, max_in_flight, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (new.name, new.digest, new.prefix, new.accounts_json, new.rate_per_minute, new.max_in_flight, now),
        )
    except sqlite3.IntegrityError:
        raise DuplicateError(f"an API key named {new.name!r} already exists") from None
    assert cur.lastrowid is not None
    return cur.lastrowid


async def keys(conn: aiosqlite.Connection) -> list[KeyRow]:
    """Every key, by id."""
    async with conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id") as cur:
        return [key_from_row(row) for row in await cur.fetchall()]


async def key_by_hash(conn: aiosqlite.Connection, digest: str) -> KeyRow | None:
    """The key whose SHA-256 is `digest`, or None."""
    async with conn.execute(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ?", (digest,)) as cur:
        row = await cur.fetchone()
    return key_from_row(row) if row is not None else None


async def revoke_key(conn: aiosqlite.Connection, key_id: int, *, now: float) -> bool:
    """Revoke a key (once); False when there is no such id."""
    cur = await conn.execute("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", (now, key_id))
    return cur.rowcount > 0


async def record_key_use(conn: aiosqlite.Connection, key_id: int, *, credits_spent: int, now: float) -> None:
    """Count one accepted submit of a key and the credits it spent."""
    await conn.execute(
        "UPDATE api_keys SET submits = submits + 1, credits_spent = credits_spent + ?, last_used_at = ? WHERE id = ?",
        (credits_spent, now, key_id),
    )
