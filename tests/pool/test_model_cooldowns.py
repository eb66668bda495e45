"""Issue 26 item 1's gap: the (account, model) cool-downs of pool accounts live in the store.

- The store keeps them (SQLite and PostgreSQL): one per pair, the latest refusal wins, ended ones are never
  read and are swept on the next write, enabling the account ends them, they go with their account.
- Replicas share them: a refusal one app on a PostgreSQL database saw benches the pair on another app on the
  same database (no upstream call), and enabling the account on either ends it for both.
- A separate process sees them: `jimeng-server accounts list` shows the scoped cool-downs a running server
  stored; `accounts enable` ends them.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pool_support import ADMIN_KEY, POOL_SESSIONS, add_accounts, admin, create_key, key_auth, seed_sim
from store_backends import open_store
from support import AppFactory, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.config import AdminConfig, Config
from jimeng_server.simulator import Simulator
from jimeng_server.store.pool import Cooldown, NewAccount

Client = TestClient[Any, Any]
VIDEOS = "/v1/async/videos/generations"
IMAGES = "/v1/async/images/generations"
PAID = "jimeng-video-seedance-2.0-vip"
PAID_VIDEO = {"prompt": "a fox", "model": PAID, "duration": 4}
GENERATE = "/aigc_draft/generate"


def new_account(name: str) -> NewAccount:
    return NewAccount(name, "cn", f"fp-{name}", "sess…ff", b"secret", False, False, "")


def refusal(model: str | None, until: float, reason: str = "RISK_CONTROL_REJECTED") -> Cooldown:
    return Cooldown(model, until, reason, f"{model} refused ({reason})")


async def test_the_store_keeps_one_cool_down_per_account_and_model(store_url: str, clock: ManualClock) -> None:
    store = await open_store(store_url, clock)
    try:
        now = clock.time()
        a = (await store.add_account(new_account("a"), now=now)).id
        b = (await store.add_account(new_account("b"), now=now)).id
        assert await store.model_cooldowns(now=now) == {}

        await store.rest_model(a, refusal(PAID, now + 600), now=now)
        await store.rest_model(a, refusal("jimeng-video-3.5-pro", now + 60, "UPSTREAM_RISK_CONTROL"), now=now)
        await store.rest_model(b, refusal(PAID, now + 300), now=now)
        await store.rest_model(9999, refusal(PAID, now + 300), now=now)  # no such account: ignored
        assert await store.model_cooldowns(now=now) == {
            a: [refusal("jimeng-video-3.5-pro", now + 60, "UPSTREAM_RISK_CONTROL"), refusal(PAID, now + 600)],
            b: [refusal(PAID, now + 300)],
        }
        assert await store.model_cooldowns(now=now, model=PAID) == {
            a: [refusal(PAID, now + 600)],
            b: [refusal(PAID, now + 300)],
        }
        assert await store.model_cooldowns(now=now, model="jimeng-4.5") == {}

        # A later refusal of the same pair replaces the earlier one.
        await store.rest_model(b, refusal(PAID, now + 900, "UPSTREAM_RISK_CONTROL"), now=now)
        assert (await store.model_cooldowns(now=now, model=PAID))[b] == [
            refusal(PAID, now + 900, "UPSTREAM_RISK_CONTROL")
        ]

        # Ended cool-downs are not read; the next write sweeps them (an earlier `now` no longer finds them).
        later = now + 601
        assert await store.model_cooldowns(now=later) == {b: [refusal(PAID, now + 900, "UPSTREAM_RISK_CONTROL")]}
        await store.rest_model(b, refusal("jimeng-4.5", later + 10), now=later)
        assert a not in await store.model_cooldowns(now=now)

        # Disabling keeps them; enabling ends every one of the account's (and only its).
        await store.rest_model(a, refusal(PAID, later + 600), now=later)
        assert await store.set_account_enabled(a, False)
        assert a in await store.model_cooldowns(now=later)
        assert await store.set_account_enabled(a, True)
        assert a not in await store.model_cooldowns(now=later)
        assert len((await store.model_cooldowns(now=later))[b]) == 2

        # They go with their account.
        assert await store.delete_account(b)
        assert await store.model_cooldowns(now=later) == {}
        await store.rest_model(a, refusal(PAID, later + 600), now=later)
        assert await store.delete_account(a)
        assert await store.model_cooldowns(now=0) == {}
    finally:
        await store.close()


async def accounts_of(client: Client) -> dict[str, Any]:
    body = await json_of(await client.get("/admin/api/accounts", headers=admin()))
    return {a["name"]: a for a in body["data"]}


async def test_a_refusal_one_replica_saw_benches_the_pair_on_the_other(
    make_client: AppFactory, config: Config, pg_url: str, sim: Simulator, clock: ManualClock
) -> None:
    seed_sim(sim)
    for session in POOL_SESSIONS.values():
        sim.account(session).free = True  # 4013 for the paid model, on every account
    store = dataclasses.replace(config.store, url=pg_url)
    replica_a = await make_client(admin=AdminConfig(key=ADMIN_KEY), store=store)
    replica_b = await make_client(admin=AdminConfig(key=ADMIN_KEY), store=store)
    await add_accounts(replica_a)
    key = await create_key(replica_a)

    resp = await replica_a.post(VIDEOS, json=PAID_VIDEO, headers=key_auth(key))
    body = await json_of(resp)
    assert resp.status == 502 and body["error"]["code"] == "RISK_CONTROL_REJECTED", body
    assert len(sim.calls(GENERATE)) == 3

    # Replica B never saw the refusal, yet asks nobody for the paid model and names why.
    resp = await replica_b.post(VIDEOS, json=PAID_VIDEO, headers=key_auth(key))
    body = await json_of(resp)
    assert resp.status == 503 and body["error"]["code"] == "NO_ACCOUNT_AVAILABLE", body
    assert PAID in body["error"]["message"] and "other models still work" in body["error"]["message"]
    assert len(sim.calls(GENERATE)) == 3
    # Other models still work through B, and B's admin API shows the pairs A benched.
    resp = await replica_b.post(IMAGES, json={"prompt": "a cat"}, headers=key_auth(key))
    assert resp.status == 200, await resp.text()
    for account in (await accounts_of(replica_b)).values():
        health = account["health"]
        assert health["cooldown_until"] is None and health["state"] != "cooling_down", health
        [scoped] = health["model_cooldowns"]
        assert scoped == {"model": PAID, "until": clock.time() + 600, "reason": "RISK_CONTROL_REJECTED"}

    # Enabling an account on B ends its pair on A too: A asks the upstream again, on that account only.
    sim.account(POOL_SESSIONS["pb"]).free = False
    resp = await replica_b.post("/admin/api/accounts/pb/enable", headers=admin())
    assert resp.status == 200 and (await json_of(resp))["health"]["model_cooldowns"] == []
    before = len(sim.calls(GENERATE))
    resp = await replica_a.post(VIDEOS, json=PAID_VIDEO, headers=key_auth(key))
    assert resp.status == 200, await resp.text()
    [paid] = sim.calls(GENERATE)[before:]
    assert paid.sessionid == POOL_SESSIONS["pb"]
    listed = await accounts_of(replica_a)
    assert listed["pb"]["health"]["model_cooldowns"] == [] and listed["pa"]["health"]["model_cooldowns"]


@pytest.fixture
def clock() -> ManualClock:
    """Virtual time starting at the wall clock's: the CLI (another process) reads the cool-downs on real time."""
    return ManualClock(start=time.time())


def cli(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jimeng_server", "--config", str(config_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
        check=False,
    )


async def test_accounts_list_shows_the_model_cool_downs_a_running_server_stored(
    make_client: AppFactory, config: Config, sim: Simulator, tmp_path: Path
) -> None:
    seed_sim(sim)
    sim.account(POOL_SESSIONS["pa"]).free = True
    server = await make_client(admin=AdminConfig(key=ADMIN_KEY))
    await add_accounts(server, "pa", "pb")
    key = await create_key(server, accounts=["pa"])
    resp = await server.post(VIDEOS, json=PAID_VIDEO, headers=key_auth(key))
    assert resp.status == 502, await resp.text()
    [scoped] = (await accounts_of(server))["pa"]["health"]["model_cooldowns"]

    cfg = tmp_path / "cli.toml"
    cfg.write_text(f'[store]\npath = "{config.store.path}"\n', encoding="utf-8")
    listed = cli(cfg, "accounts", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert "MODEL COOL-DOWNS" in header
    pa = next(r for r in rows if " pa " in r)
    pb = next(r for r in rows if " pb " in r)
    until = time.strftime("%Y-%m-%d %H:%M", time.gmtime(scoped["until"]))
    assert f"{PAID} until {until} (RISK_CONTROL_REJECTED)" in pa
    assert PAID not in pb
    assert all(session not in listed.stdout for session in POOL_SESSIONS.values())

    assert cli(cfg, "accounts", "enable", "pa").returncode == 0
    assert PAID not in cli(cfg, "accounts", "list").stdout
    assert (await accounts_of(server))["pa"]["health"]["model_cooldowns"] == []  # the server sees it too
