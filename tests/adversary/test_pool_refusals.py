"""Issue 26, findings 1 and 2: one request cannot bench the pool.

- A model refusal (4013: a paid model on free accounts; 1019) that every account gives ends the request with the
  upstream's reason and rests only (account, model): every key still gets every other model. The admin API (the
  dashboard's source) shows the scoped cool-downs.
- An account whose balance read fails (HTTP error, dead proxy) is marked unhealthy and cooled down with the
  reason; the request moves on (nothing spent); a re-check brings it back.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pool_support import ADMIN_KEY, POOL_SESSIONS, add_accounts, admin, create_key, key_auth, seed_sim
from support import CN_TOKEN, CN_TOKEN_2, AppFactory, bearer, drive, json_of

from jimeng_server.api.appkeys import ACCOUNTS
from jimeng_server.app import create_app
from jimeng_server.clock import ManualClock
from jimeng_server.config import AccountsConfig, AdminConfig, Config
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.faults import Fault, FaultKind

Client = TestClient[Any, Any]
IMAGES = "/v1/async/images/generations"
VIDEOS = "/v1/async/videos/generations"
PAID_VIDEO = {"prompt": "a fox", "model": "jimeng-video-seedance-2.0-vip", "duration": 4}


@pytest.fixture
async def pool_client(make_client: AppFactory, sim: Simulator, config: Config, store_url: str) -> Client:
    seed_sim(sim)
    client = await make_client(admin=AdminConfig(key=ADMIN_KEY), store=dataclasses.replace(config.store, url=store_url))
    await add_accounts(client)
    return client


async def post(client: Client, clock: ManualClock, path: str, body: dict[str, Any], key: str) -> Any:
    """POST on virtual time (the client's read retries back off on the clock)."""
    [resp] = await drive(client.app, clock, client.post(path, json=body, headers=key_auth(key)))
    return resp


async def accounts_of(client: Client) -> dict[str, Any]:
    body = await json_of(await client.get("/admin/api/accounts", headers=admin()))
    return {a["name"]: a for a in body["data"]}


async def test_a_paid_model_every_account_refuses_benches_nobody_for_other_models(
    pool_client: Client, sim: Simulator, clock: ManualClock
) -> None:
    for session in POOL_SESSIONS.values():
        sim.account(session).free = True  # 4013 for the paid model, on every account
    attacker, other = await create_key(pool_client, "mallory"), await create_key(pool_client, "alice")
    resp = await pool_client.post(VIDEOS, json=PAID_VIDEO, headers=key_auth(attacker))
    body = await json_of(resp)
    assert resp.status == 502 and body["error"]["code"] == "RISK_CONTROL_REJECTED", body  # the upstream's reason
    assert len(sim.calls("/aigc_draft/generate")) == 3 and not sim.charges
    # Repeating it asks nobody: the three (account, paid model) pairs rest.
    resp = await pool_client.post(VIDEOS, json=PAID_VIDEO, headers=key_auth(attacker))
    body = await json_of(resp)
    assert resp.status == 503 and "jimeng-video-seedance-2.0-vip" in body["error"]["message"], body
    assert len(sim.calls("/aigc_draft/generate")) == 3
    # Every key still gets every other model, on every account.
    for i in range(3):
        resp = await pool_client.post(IMAGES, json={"prompt": f"cat {i}"}, headers=key_auth(other))
        assert resp.status == 200, await resp.text()
    resp = await pool_client.post(VIDEOS, json={"prompt": "a fox", "duration": 5}, headers=key_auth(attacker))
    assert resp.status == 200, await resp.text()
    accounts = await accounts_of(pool_client)
    for account in accounts.values():
        health = account["health"]
        assert health["state"] != "cooling_down" and health["cooldown_until"] is None, health
        [scoped] = health["model_cooldowns"]
        assert scoped["model"] == PAID_VIDEO["model"] and scoped["reason"] == "RISK_CONTROL_REJECTED"
        assert scoped["until"] == pytest.approx(clock.time() + 600, abs=5)
    # The scoped cool-down ends like any other: the paid model is tried again.
    await clock.advance(601)
    resp = await pool_client.post(VIDEOS, json=PAID_VIDEO, headers=key_auth(attacker))
    assert resp.status == 502 and len(sim.calls("/aigc_draft/generate")) == 3 + 3 + 1 + 3


async def test_enabling_an_account_ends_its_model_cool_downs(pool_client: Client, sim: Simulator) -> None:
    sim.account(POOL_SESSIONS["pa"]).free = True
    key = await create_key(pool_client, accounts=["pa"])
    assert (await pool_client.post(VIDEOS, json=PAID_VIDEO, headers=key_auth(key))).status == 502
    assert (await accounts_of(pool_client))["pa"]["health"]["model_cooldowns"]
    sim.account(POOL_SESSIONS["pa"]).free = False
    await pool_client.post("/admin/api/accounts/pa/enable", headers=admin())
    assert (await accounts_of(pool_client))["pa"]["health"]["model_cooldowns"] == []
    resp = await pool_client.post(VIDEOS, json=PAID_VIDEO, headers=key_auth(key))
    assert resp.status == 200, await resp.text()


async def test_raw_tokens_follow_the_same_policy(client: Client, sim: Simulator) -> None:
    sim.account(CN_TOKEN).free = True
    resp = await client.post(VIDEOS, json=PAID_VIDEO, headers=bearer(CN_TOKEN))
    assert resp.status == 502
    # The refused token is tried first again for another model (it is not benched for it) ...
    resp = await client.post(IMAGES, json={"prompt": "cat"}, headers=bearer(CN_TOKEN, CN_TOKEN_2))
    assert resp.status == 200 and sim.calls("/aigc_draft/generate")[-1].sessionid == CN_TOKEN
    # ... and last for the model it was refused.
    resp = await client.post(VIDEOS, json=PAID_VIDEO, headers=bearer(CN_TOKEN, CN_TOKEN_2))
    assert resp.status == 200 and sim.calls("/aigc_draft/generate")[-1].sessionid == CN_TOKEN_2


@pytest.mark.parametrize("fault", [FaultKind.HTTP_500, FaultKind.RESET])
async def test_a_failed_balance_read_skips_and_cools_the_account(
    pool_client: Client, sim: Simulator, clock: ManualClock, fault: FaultKind
) -> None:
    key = await create_key(pool_client)
    pa = POOL_SESSIONS["pa"]
    sim.inject("/user_credit", Fault(fault), times=3)  # pa is asked first; 3 = its read and 2 retries
    for i in range(6):
        resp = await post(pool_client, clock, IMAGES, {"prompt": f"cat {i}"}, key)
        assert resp.status == 200, await resp.text()
    assert pa not in {c.sessionid for c in sim.calls("/aigc_draft/generate")}  # nothing spent on pa
    health = (await accounts_of(pool_client))["pa"]["health"]
    assert health["state"] == "cooling_down" and health["last_error_code"], health
    assert health["cooldown_until"] == pytest.approx(clock.time() + 600, abs=30)
    asked = len([c for c in sim.calls("/user_credit") if c.sessionid == pa])
    # The re-check (run by the background loop every [accounts] recheck_seconds) brings it back once it reads.
    sim.faults.rules.clear()
    assert await pool_client.app[ACCOUNTS].recheck_unhealthy() == 1
    health = (await accounts_of(pool_client))["pa"]["health"]
    assert health["state"] == "ok" and health["cooldown_until"] is None, health
    assert len([c for c in sim.calls("/user_credit") if c.sessionid == pa]) == asked + 1
    assert await pool_client.app[ACCOUNTS].recheck_unhealthy() == 0


async def test_a_dead_proxy_is_skipped(make_client: AppFactory, sim: Simulator, clock: ManualClock) -> None:
    seed_sim(sim)
    client = await make_client(admin=AdminConfig(key=ADMIN_KEY))
    resp = await client.post(  # first in the pool: the one picked first
        "/admin/api/accounts",
        json={"name": "dead", "token": "sess0deadproxyaaaabbbbccccdddd", "proxy": "http://127.0.0.1:9"},
        headers=admin(),
    )
    assert resp.status == 201, await resp.text()
    await add_accounts(client, "pb")
    key = await create_key(client)
    for i in range(3):
        resp = await post(client, clock, IMAGES, {"prompt": f"cat {i}"}, key)
        assert resp.status == 200, await resp.text()
    health = (await accounts_of(client))["dead"]["health"]
    assert health["state"] == "cooling_down" and health["last_error_code"] == "UPSTREAM_UNAVAILABLE", health
    assert "proxy" in health["last_error"] or "reached" in health["last_error"], health


async def test_the_background_recheck_brings_an_account_back(
    aiohttp_client: Callable[..., Awaitable[Client]], config: Config, sim: Simulator, clock: ManualClock
) -> None:
    seed_sim(sim)
    cfg = dataclasses.replace(
        config,
        admin=AdminConfig(key=ADMIN_KEY),
        accounts=AccountsConfig(recheck_seconds=60),
        upstream=dataclasses.replace(config.upstream, read_retries=0),  # no back-off sleeps: the clock stays put
    )
    client = await aiohttp_client(create_app(cfg, clock=clock, background=True, identity_salt=b"test-salt"))
    await add_accounts(client, "pa", "pb")
    key = await create_key(client)
    sim.inject("/user_credit", Fault(FaultKind.HTTP_500), times=1)
    resp = await client.post(IMAGES, json={"prompt": "a cat"}, headers=key_auth(key))
    assert resp.status == 200, await resp.text()
    assert (await accounts_of(client))["pa"]["health"]["state"] == "cooling_down"
    await clock.advance(61)  # the re-check loop wakes on the clock
    for _ in range(1000):
        if (await accounts_of(client))["pa"]["health"]["state"] == "ok":
            break
        await asyncio.sleep(0)
    assert (await accounts_of(client))["pa"]["health"]["state"] == "ok"
