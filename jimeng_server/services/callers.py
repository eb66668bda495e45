"""Who sent a request: the session tokens of its Authorization header, or an API key of the account pool.

A `Caller` decides which tasks a request may see (`owners`), under which owner an `Idempotency-Key` is
kept, and which accounts may pay for a submit (the header's tokens, or the key's pool accounts).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..errors import ServiceUnavailable
from ..store.pool import key_owner
from ..upstream.tokens import Account

ResolveAccount = Callable[[int], Awaitable[Account | None]]
"""A pool account by id (`AccountPool.resolve`): None when it was removed or its secret cannot be opened."""


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """An authenticated, unrevoked API key: its id and name, the pool accounts it may use (None: all) and its
    cap on tasks in flight."""

    id: int
    name: str
    accounts: tuple[int, ...] | None
    max_in_flight: int

    @property
    def owner(self) -> str:
        """The owner id of its tasks and idempotency keys."""
        return key_owner(self.id)


@dataclass(frozen=True, slots=True)
class Payer:
    """Who a generate is sent for: the task's owner id (`TaskRecord.account_fp`) and the pool account paying
    (None for a raw token, whose own fingerprint owns the task)."""

    owner: str
    account_id: int | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """A request's identity.

    Raw tokens: `accounts` are the header's tokens in order and each one owns its own tasks. API key:
    `key` is set, its tasks belong to the key, and `accounts` are the pool accounts it may use right now,
    best first (the submit itself picks live, see `AccountService.submit`).
    """

    accounts: tuple[Account, ...]
    key: KeyGrant | None = None

    @property
    def owners(self) -> frozenset[str]:
        """Owner ids whose tasks this caller may see."""
        if self.key is not None:
            return frozenset({self.key.owner})
        return frozenset(a.fingerprint for a in self.accounts)

    @property
    def idempotency_owner(self) -> str:
        """Whose `Idempotency-Key`s a request uses: the key's, or the first token's account's."""
        if self.key is not None:
            return self.key.owner
        return self.accounts[0].fingerprint

    @property
    def first(self) -> Account:
        """The preferred account: the one whose region checks the request before anything is spent and whose
        proxy fetches input URLs. 503 NO_ACCOUNT_AVAILABLE when a key has no usable pool account."""
        if not self.accounts:
            raise no_account_available()
        return self.accounts[0]

    def account_with(self, fingerprint: str) -> Account | None:
        """The header account with this fingerprint (raw tokens), or None."""
        return next((a for a in self.accounts if a.fingerprint == fingerprint), None)


def no_account_available() -> ServiceUnavailable:
    """503 for an API key none of whose pool accounts can take a submit now."""
    return ServiceUnavailable(
        "no account of the pool can take this request now (all disabled, cooling down after upstream refusals, "
        "out of credits or at capacity); try again later or ask the operator to add or check accounts",
        code="NO_ACCOUNT_AVAILABLE",
    )
