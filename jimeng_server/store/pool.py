"""The account pool's and API keys' data (tables `accounts` and `api_keys`): frozen records, backend-neutral
(their row mapping is in `rows.py`). Both backends store them behind `base.PoolStore` (`tables.Pool`);
an account's `secret` is the stored blob (sealed or not; `store.secretbox` opens it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


class DuplicateError(Exception):
    """A name (or session) that must be unique is taken; the message says which, never a secret."""


@dataclass(frozen=True, slots=True)
class AccountRow:
    """One pool account as stored. `secret` is the (possibly sealed) credential blob: never log it."""

    id: int
    name: str
    region: str
    fingerprint: str
    masked: str
    secret: bytes = field(repr=False)
    sealed: bool
    has_proxy: bool
    enabled: bool
    note: str
    last_check_at: float | None
    last_error_code: str | None
    last_error: str | None
    cooldown_until: float | None
    credits: int | None
    credits_at: float | None
    created_at: float

    def cooling(self, now: float) -> bool:
        """True while the account rests after a refusal."""
        return self.cooldown_until is not None and self.cooldown_until > now


@dataclass(frozen=True, slots=True)
class Cooldown:
    """An account (`model` None) or one model on it resting until `until` because of `reason` (an error code,
    `message` the upstream's words). The store keeps pool accounts' model cool-downs (`ModelCooldownStore`, where
    `model` is always set); `services.refusals.Cooldowns` keeps raw tokens' in memory."""

    model: str | None
    until: float
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class NewAccount:
    """What `PoolStore.add_account` stores."""

    name: str
    region: str
    fingerprint: str
    masked: str
    secret: bytes = field(repr=False)
    sealed: bool
    has_proxy: bool
    note: str


@dataclass(frozen=True, slots=True)
class AccountHealth:
    """What `PoolStore.record_account_health` stores after a use or a check: the last error (None clears it), the
    cool-down end, whether it was a check (stamps `last_check_at`), and a balance reading when one was made."""

    error_code: str | None
    error: str | None
    cooldown_until: float | None
    checked: bool = False
    credits: int | None = None


@dataclass(frozen=True, slots=True)
class NewKey:
    """What `PoolStore.add_key` stores: the key's SHA-256 (never the key), its display prefix, the accounts it may
    use (None: every one) and its limits."""

    name: str
    digest: str = field(repr=False)
    prefix: str
    accounts: tuple[int, ...] | None
    rate_per_minute: int
    max_in_flight: int

    @property
    def accounts_json(self) -> str | None:
        """The `accounts` column: a JSON array, or NULL for every account."""
        return json.dumps(list(self.accounts)) if self.accounts is not None else None


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One API key as stored (its hash, never the key). `accounts` None means every pool account."""

    id: int
    name: str
    hash: str = field(repr=False)
    prefix: str
    accounts: tuple[int, ...] | None
    rate_per_minute: int
    max_in_flight: int
    revoked_at: float | None
    submits: int
    credits_spent: int
    last_used_at: float | None
    created_at: float

    @property
    def owner(self) -> str:
        """The owner id its tasks and idempotency keys are stored under."""
        return key_owner(self.id)


def key_owner(key_id: int) -> str:
    """`key:<id>`: the task owner id of an API key (never equal to an account fingerprint, which is hex)."""
    return f"key:{key_id}"
