"""The JSON views of pool accounts and API keys, as the admin API and the `accounts` / `keys` commands show
them: never a secret (the masked session, a key's first characters only). The services return records; the
shape is decided here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..services.account_registry import health_state
from ..services.pool import AccountPool
from ..services.refusals import Cooldown
from ..store.pool import AccountRow, KeyRow


async def account_views(pool: AccountPool, rows: Sequence[AccountRow]) -> list[dict[str, Any]]:
    """`account_view` of each row, with the model cool-downs the store holds now (one read for all)."""
    resting = await pool.model_cooldowns() if rows else {}
    return [_account_view(pool, row, resting.get(row.id, ())) for row in rows]


async def account_view(pool: AccountPool, row: AccountRow) -> dict[str, Any]:
    """An account: name, region, masked session, credential kind and transport, credits, in flight, and its
    health: state, last error, whole-account cool-down, and `model_cooldowns` (`[{"model", "until", "reason"}]`,
    soonest end first: the models it rests for, as every replica sees them)."""
    [view] = await account_views(pool, [row])
    return view


def _account_view(pool: AccountPool, row: AccountRow, resting: Sequence[Cooldown]) -> dict[str, Any]:
    now = pool.clock.time()
    credential, transport = pool.identity(row)
    return {
        "id": row.id,
        "name": row.name,
        "region": row.region,
        "session": row.masked,
        "proxy": row.has_proxy,
        "credential": credential,
        "transport": transport,
        "enabled": row.enabled,
        "note": row.note,
        "credits": row.credits,
        "credits_at": row.credits_at,
        "in_flight": pool.in_flight(row.id),
        "health": {
            "state": health_state(row, now),
            "last_check_at": row.last_check_at,
            "last_error_code": row.last_error_code,
            "last_error": row.last_error,
            "cooldown_until": row.cooldown_until if row.cooling(now) else None,
            "model_cooldowns": [_model_view(c) for c in resting],
        },
        "created_at": row.created_at,
    }


def key_view(pool: AccountPool, row: KeyRow) -> dict[str, Any]:
    """A key: never its text or hash, only its first characters; its limits and usage."""
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "accounts": list(row.accounts) if row.accounts is not None else None,
        "rate_per_minute": row.rate_per_minute,
        "max_in_flight": row.max_in_flight,
        "revoked": row.revoked_at is not None,
        "revoked_at": row.revoked_at,
        "usage": {
            "submits": row.submits,
            "credits_spent": row.credits_spent,
            "last_used_at": row.last_used_at,
            "in_flight": pool.owner_in_flight(row.owner),
        },
        "created_at": row.created_at,
    }


def _model_view(cool: Cooldown) -> dict[str, Any]:
    return {"model": cool.model, "until": cool.until, "reason": cool.reason}
