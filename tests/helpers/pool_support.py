"""Helpers for the account-pool tests: pool session ids, the admin key, and adding accounts and keys over the
admin API."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from support import json_of

from jimeng_server.simulator import Simulator
from jimeng_server.upstream.regions import Region

ADMIN_KEY = "admin-test-key-0123456789"
# Session ids of the pool's accounts (never real ones); distinct from the raw-token ones of support.py.
POOL_SESSIONS = {
    "pa": "sess0poolAaaaabbbbccccddddeeeeff",
    "pb": "sess0poolBaaaabbbbccccddddeeeeff",
    "pc": "sess0poolCaaaabbbbccccddddeeeeff",
}

Client = TestClient[Any, Any]


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def key_auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def seed_sim(sim: Simulator, credits: int = 1000) -> None:
    """The pool's sessions as simulator accounts with `credits` VIP credits each."""
    for session in POOL_SESSIONS.values():
        sim.add_account(session, region=Region.CN, vip=credits)


async def add_accounts(client: Client, *names: str) -> dict[str, int]:
    """Add the named POOL_SESSIONS over the admin API; their ids by name."""
    ids = {}
    for name in names or tuple(POOL_SESSIONS):
        resp = await client.post(
            "/admin/api/accounts", json={"name": name, "token": POOL_SESSIONS[name]}, headers=admin()
        )
        body = await json_of(resp)
        assert resp.status == 201, body
        ids[name] = body["id"]
    return ids


async def create_key(client: Client, name: str = "alice", **fields: Any) -> str:
    """Create an API key over the admin API; its text."""
    resp = await client.post("/admin/api/keys", json={"name": name, **fields}, headers=admin())
    body = await json_of(resp)
    assert resp.status == 201, body
    assert body["key"].startswith("jk_")
    return str(body["key"])


def pool_secrets_absent(text: str) -> None:
    for session in POOL_SESSIONS.values():
        assert session not in text, "a pool session id leaked"
