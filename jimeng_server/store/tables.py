"""The store's tables written once: each table's statements (PostgreSQL text, rendered per dialect by
`dialect.render`) and the `base.Store` methods over them, as mixins both backends inherit.

A backend supplies `_clock` and three ways to get a `dialect.Db`: `_tx()` (one transaction; on PostgreSQL the
rows it selects `FOR UPDATE` stay locked until it ends), `_read()` (reads only) and `_stmt()` (one statement
that is its own transaction). To add a table: its migration (both schemas), a Protocol in `base.py` that
`Store` extends, and a mixin here that both backends list.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Final

from ..clock import Clock
from ..tasks.claims import ClaimState, IdempotencyClaim, decide_claim
from .dialect import Db

__all__ = ["IdempotencyKeys", "TableBase"]


class TableBase:
    """What a backend gives the table mixins (see the module docstring)."""

    _clock: Clock

    def _tx(self) -> AbstractAsyncContextManager[Db]:
        raise NotImplementedError

    def _read_db(self) -> AbstractAsyncContextManager[Db]:
        raise NotImplementedError

    def _stmt(self) -> AbstractAsyncContextManager[Db]:
        raise NotImplementedError


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
        other; `tasks.claims.decide_claim` decides."""
        now = self._clock.time()
        async with self._tx() as db:
            while True:
                if await db.fetchval(INSERT_KEY, account_fp, key, request_hash, now, now + ttl) is not None:
                    return IdempotencyClaim(ClaimState.NEW)
                row = await db.fetchrow(LOCK_KEY, account_fp, key)
                if row is not None:
                    break  # else the row was released meanwhile: try inserting again
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
