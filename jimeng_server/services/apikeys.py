"""API keys for callers of the pool: `jk_` + 32 random bytes (base64url), stored as SHA-256 hex and shown
once at creation.

`authenticate` turns `Bearer jk_...` into a `KeyGrant`: 401 for an unknown or revoked key, 429 with
`Retry-After` over the key's per-minute request limit (a sliding 60 s window, in memory). The cap on tasks in
flight is enforced where the account is reserved (`AccountPool.choose`).
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections import deque
from collections.abc import Sequence
from typing import Any

from ..clock import Clock
from ..errors import BadRequest, Conflict, NotFound, TooManyRequests, Unauthorized
from ..integers import NumberError, parse_int
from ..store.base import Store
from ..store.pool import DuplicateError, KeyRow, NewKey
from .account_registry import check_name
from .callers import KeyGrant
from .pool import AccountPool

KEY_PREFIX = "jk_"
WINDOW = 60.0
DEFAULT_RATE_PER_MINUTE = 60
DEFAULT_MAX_IN_FLIGHT = 20
MAX_LIMIT = 1_000_000
"""The largest `rate_per_minute` and `max_in_flight` a key may have."""


def key_digest(key: str) -> str:
    """The stored form of a key: SHA-256 hex of its text."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def looks_like_key(token: str) -> bool:
    """True for a bearer value in the API-key form (`jk_...`)."""
    return token.startswith(KEY_PREFIX)


def _limit(value: Any, field: str, default: int) -> int:
    if value is None:
        return default
    try:
        return parse_int(value, field, low=1, high=MAX_LIMIT, strings=False)
    except NumberError as exc:
        raise BadRequest(str(exc), code="INVALID_PARAMETER") from None


class ApiKeys:
    """Creates, lists, revokes and checks API keys; keeps each key's request window."""

    def __init__(self, store: Store, pool: AccountPool, clock: Clock) -> None:
        self._store = store
        self.pool = pool
        self.clock = clock
        self._windows: dict[int, deque[float]] = {}

    async def create(
        self,
        name: str,
        *,
        accounts: Sequence[str | int] | None = None,
        rate_per_minute: Any = None,
        max_in_flight: Any = None,
    ) -> tuple[str, KeyRow]:
        """A new key and its row; the key text exists only in this answer. `accounts` (names or ids) limits the
        pool accounts it may use (None: all). 400 for bad values or unknown accounts, 409 for a taken name;
        nothing is written on any error."""
        check_name(name, "key")
        rate = _limit(rate_per_minute, "rate_per_minute", DEFAULT_RATE_PER_MINUTE)
        cap = _limit(max_in_flight, "max_in_flight", DEFAULT_MAX_IN_FLIGHT)
        ids: list[int] | None = None
        if accounts is not None:
            if not accounts:
                raise BadRequest(
                    "'accounts' must name at least one account, or be left out for all", code="INVALID_PARAMETER"
                )
            ids = []
            for ref in accounts:
                try:
                    ids.append((await self.pool.find(ref)).id)
                except NotFound:
                    raise BadRequest(f"no account {str(ref)[:80]!r} in the pool", code="UNKNOWN_ACCOUNT") from None
            ids = list(dict.fromkeys(ids))
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        try:
            new = NewKey(name, key_digest(key), key[:8], tuple(ids) if ids is not None else None, rate, cap)
            key_id = await self._store.add_key(new, now=self.clock.time())
        except DuplicateError as exc:
            raise Conflict(str(exc), code="DUPLICATE_KEY") from None
        return key, await self.find(key_id)

    async def rows(self) -> list[KeyRow]:
        """Every key (revoked ones too), after a fresh count of tasks in flight (`AccountPool.owner_in_flight`)."""
        await self.pool.count_in_flight()
        return await self._store.keys()

    async def find(self, ref: str | int) -> KeyRow:
        """The key with this id or name; 404 KEY_NOT_FOUND otherwise."""
        for row in await self._store.keys():
            if (isinstance(ref, int) and row.id == ref) or (isinstance(ref, str) and ref in (row.name, str(row.id))):
                return row
        raise NotFound(f"no API key {str(ref)[:80]!r}; list them with GET /admin/api/keys", code="KEY_NOT_FOUND")

    async def revoke(self, ref: str | int) -> KeyRow:
        """Revoke a key at once: its next request is 401. Tasks it submitted go on."""
        row = await self.find(ref)
        await self._store.revoke_key(row.id, now=self.clock.time())
        self._windows.pop(row.id, None)
        return await self.find(row.id)

    async def authenticate(self, key: str) -> KeyGrant:
        """The grant of a valid key; 401 INVALID_API_KEY / API_KEY_REVOKED, 429 RATE_LIMITED (with retry_after)."""
        row = await self._store.key_by_hash(key_digest(key))
        if row is None:
            raise Unauthorized(
                "the API key is not known; check it or ask the operator for a key", code="INVALID_API_KEY"
            )
        if row.revoked_at is not None:
            raise Unauthorized("the API key was revoked; ask the operator for a new one", code="API_KEY_REVOKED")
        self._take(row)
        return KeyGrant(id=row.id, name=row.name, accounts=row.accounts, max_in_flight=row.max_in_flight)

    def _take(self, row: KeyRow) -> None:
        now = self.clock.time()
        window = self._windows.setdefault(row.id, deque())
        while window and window[0] <= now - WINDOW:
            window.popleft()
        if len(window) >= row.rate_per_minute:
            wait = max(1, math.ceil(window[0] + WINDOW - now))
            raise TooManyRequests(
                f"this API key is limited to {row.rate_per_minute} request(s) per minute; retry in {wait} s",
                code="RATE_LIMITED",
                retry_after=wait,
            )
        window.append(now)

    async def record_use(self, key_id: int, *, credits_spent: int) -> None:
        """Count an accepted submit and the credits it spent."""
        await self._store.record_key_use(key_id, credits_spent=credits_spent, now=self.clock.time())
