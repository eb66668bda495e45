"""Account pool and API keys over real HTTP against the simulator (issue 12): submits with `Bearer jk_...` pick
the least busy healthy pool account, fail over on refusals that spent nothing, and everything that works with
a raw token works with a key (sync, async, batch query, Idempotency-Key, webhooks, deliveries); tasks belong
to the key; keys are rate-limited, capped, revocable; raw tokens can be turned off."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pool_support import (
    ADMIN_KEY,
    POOL_SESSIONS,
    add_accounts,
    admin,
    create_key,
    key_auth,
    pool_secrets_absent,
    seed_sim,
)
from support import CN_TOKEN, AppFactory, bearer, drive, json_of
from webhook_support import SECRET, Receiver

from jimeng_server.api.appkeys import ACCOUNT_POOL, STORE, WATCHER, WEBHOOKS
from jimeng_server.clock import ManualClock
from jimeng_server.config import AccountsConfig, AdminConfig, AuthConfig, Config, WebhookConfig
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.faults import Fault, FaultKind

Client = TestClient[Any, Any]
IMAGES = "/v1/async/images/generations"


@pytest.fixture
def clock() -> ManualClock:
    # Real "now" (webhook signatures are checked against the wall clock).
    return ManualClock(start=float(int(time.time())))


@pytest.fixture
async def pool_client(make_client: AppFactory, sim: Simulator, config: Config, store_url: str) -> Client:
    """The app with an admin key and the three pool accounts (1000 credits each) added over the admin API, on
    each store backend."""
    seed_sim(sim)
    client = await make_client(
        admin=AdminConfig(key=ADMIN_KEY),
        webhooks=WebhookConfig(secret=SECRET, jitter=0.0),
        store=dataclasses.replace(config.store, url=store_url),
    )
    await add_accounts(client)
    return client


async def submit(client: Client, key: str, prompt: str = "a cat", **headers: str) -> tuple[int, dict[str, Any]]:
    resp = await client.post(IMAGES, json={"prompt": prompt}, headers={**key_auth(key), **headers})
    return resp.status, await json_of(resp)


def charged_sessions(sim: Simulator) -> Counter[str]:
    return Counter(session for session, _, _ in sim.charges)


async def finish_all(client: Client, clock: ManualClock, limit: int = 120) -> None:
    """Tick the watcher until nothing is watched."""
    for _ in range(limit):
        if not client.app[WATCHER].pending:
            return
        await clock.advance(1.0)
        await client.app[WATCHER].run_once()
    raise AssertionError("tasks did not finish")


# ------------------------------------------------------------------------------------------ choosing an account


async def test_key_submits_spread_over_the_pool_by_fewest_tasks_in_flight(pool_client: Client, sim: Simulator) -> None:
    key = await create_key(pool_client)
    for i in range(6):
        status, body = await submit(pool_client, key, f"cat {i}")
        assert status == 200, body
    charged = charged_sessions(sim)
    assert charged == Counter({s: 2 for s in POOL_SESSIONS.values()})
    accounts = (await json_of(await pool_client.get("/admin/api/accounts", headers=admin())))["data"]
    assert [a["in_flight"] for a in accounts] == [2, 2, 2]
    assert [a["credits"] for a in accounts] == [992, 992, 992]  # read again after each submit (4 per image)
    keys = (await json_of(await pool_client.get("/admin/api/keys", headers=admin())))["data"]
    assert keys[0]["usage"]["submits"] == 6 and keys[0]["usage"]["credits_spent"] == 24
    assert keys[0]["usage"]["in_flight"] == 6 and keys[0]["usage"]["last_used_at"] is not None


async def test_finished_tasks_stop_counting_in_flight(pool_client: Client, sim: Simulator, clock: ManualClock) -> None:
    key = await create_key(pool_client)
    await submit(pool_client, key)
    await finish_all(pool_client, clock)
    accounts = (await json_of(await pool_client.get("/admin/api/accounts", headers=admin())))["data"]
    assert [a["in_flight"] for a in accounts] == [0, 0, 0]


async def test_a_task_nobody_asks_about_stops_counting_after_its_kinds_deadline(
    pool_client: Client, clock: ManualClock
) -> None:
    key = await create_key(pool_client, max_in_flight=1)
    assert (await submit(pool_client, key))[0] == 200
    assert (await submit(pool_client, key))[0] == 429
    await clock.advance(901)  # past the image deadline (900 s); the task was never polled nor asked about
    accounts = (await json_of(await pool_client.get("/admin/api/accounts", headers=admin())))["data"]
    assert [a["in_flight"] for a in accounts] == [0, 0, 0]
    assert (await submit(pool_client, key))[0] == 200


async def test_expired_session_fails_over_and_cools_the_account_down_with_the_reason(
    pool_client: Client, sim: Simulator, clock: ManualClock
) -> None:
    key = await create_key(pool_client)
    sim.expire_session(POOL_SESSIONS["pa"])
    for i in range(4):
        status, body = await submit(pool_client, key, f"dog {i}")
        assert status == 200, body
    charged = charged_sessions(sim)
    assert POOL_SESSIONS["pa"] not in charged and sum(charged.values()) == 4
    accounts = {
        a["name"]: a for a in (await json_of(await pool_client.get("/admin/api/accounts", headers=admin())))["data"]
    }
    health = accounts["pa"]["health"]
    assert health["state"] == "cooling_down" and health["last_error_code"] == "TOKEN_EXPIRED"
    assert "refused the session" in health["last_error"]
    assert health["cooldown_until"] == pytest.approx(clock.time() + 600, abs=1)
    # The refused account was asked once (then skipped while it cools down).
    assert len([c for c in sim.calls("/user_credit") if c.sessionid == POOL_SESSIONS["pa"]]) == 1


async def test_risk_control_refusal_fails_over_without_charging(pool_client: Client, sim: Simulator) -> None:
    key = await create_key(pool_client)
    sim.inject("/aigc_draft/generate", Fault(FaultKind.RET, ret="1019", errmsg="shark not pass"))
    status, body = await submit(pool_client, key)
    assert status == 200, body
    assert len(sim.calls("/aigc_draft/generate")) == 2 and sum(charged_sessions(sim).values()) == 1
    accounts = (await json_of(await pool_client.get("/admin/api/accounts", headers=admin())))["data"]
    refused = [a for a in accounts if a["health"]["last_error_code"]]
    assert [a["health"]["last_error_code"] for a in refused] == ["UPSTREAM_RISK_CONTROL"]


async def test_account_without_credits_is_skipped_and_daily_claim_is_optional(
    make_client: AppFactory, sim: Simulator
) -> None:
    sim.add_account(POOL_SESSIONS["pa"], vip=0, gift=0, purchase=0)
    client = await make_client(admin=AdminConfig(key=ADMIN_KEY))
    await add_accounts(client, "pa")
    key = await create_key(client)
    status, body = await submit(client, key)
    assert status == 402 and body["error"]["code"] == "INSUFFICIENT_CREDITS", body
    assert not sim.calls("/credit_receive") and not sim.charges
    # With claim_daily the claim is made (the simulator grants daily credits) and the submit goes through.
    claiming = await make_client(admin=AdminConfig(key=ADMIN_KEY), accounts=AccountsConfig(claim_daily=True))
    await claiming.post("/admin/api/accounts/pa/enable", headers=admin())  # ends the cool-down
    key2 = await create_key(claiming, "bob")
    status, body = await submit(claiming, key2)
    assert status == 200, body
    assert len(sim.calls("/credit_receive")) == 1 and len(sim.charges) == 1


async def test_an_account_short_of_the_known_cost_is_skipped(make_client: AppFactory, sim: Simulator) -> None:
    sim.add_account(POOL_SESSIONS["pa"], vip=5)  # an image costs 4 in the simulator: one fits
    sim.add_account(POOL_SESSIONS["pb"], vip=1000)
    client = await make_client(admin=AdminConfig(key=ADMIN_KEY))
    await add_accounts(client, "pa", "pb")
    key = await create_key(client)
    for i in range(3):  # pa (cost 4 measured, 1 left), pb, then pb again: pa cannot pay 4 any more
        status, body = await submit(client, key, f"owl {i}")
        assert status == 200, body
    assert charged_sessions(sim) == Counter({POOL_SESSIONS["pa"]: 1, POOL_SESSIONS["pb"]: 2})
    refused = [e for e in sim.calls("/aigc_draft/generate") if e.ret != "0"]
    assert not refused  # pa was never even tried: no 5000 refusal, no cool-down
    accounts = {a["name"]: a for a in (await json_of(await client.get("/admin/api/accounts", headers=admin())))["data"]}
    assert accounts["pa"]["credits"] == 1 and accounts["pa"]["health"]["state"] == "ok"


async def test_no_usable_account_is_503_and_a_key_limited_to_accounts_uses_only_those(
    pool_client: Client, sim: Simulator
) -> None:
    only_pb = await create_key(pool_client, "only-pb", accounts=["pb"])
    for _ in range(2):
        assert (await submit(pool_client, only_pb))[0] == 200
    assert charged_sessions(sim) == Counter({POOL_SESSIONS["pb"]: 2})
    await pool_client.post("/admin/api/accounts/pb/disable", headers=admin())
    status, body = await submit(pool_client, only_pb)
    assert status == 503 and body["error"]["code"] == "NO_ACCOUNT_AVAILABLE"
    assert len(sim.charges) == 2


# ------------------------------------------------------------------------------------------ keys


async def test_unknown_and_revoked_keys_are_401(pool_client: Client, sim: Simulator) -> None:
    status, body = await submit(pool_client, "jk_not-a-key")
    assert status == 401 and body["error"]["code"] == "INVALID_API_KEY"
    key = await create_key(pool_client)
    assert (await submit(pool_client, key))[0] == 200
    resp = await pool_client.post("/admin/api/keys/alice/revoke", headers=admin())
    assert resp.status == 200 and (await json_of(resp))["revoked"] is True
    status, body = await submit(pool_client, key)
    assert status == 401 and body["error"]["code"] == "API_KEY_REVOKED"
    resp = await pool_client.get("/v1/async/tasks/1", headers=key_auth(key))
    assert resp.status == 401
    assert len(sim.charges) == 1


async def test_rate_limit_is_429_with_retry_after(pool_client: Client, clock: ManualClock) -> None:
    key = await create_key(pool_client, rate_per_minute=2)
    assert (await submit(pool_client, key))[0] == 200
    await clock.advance(10)
    assert (await pool_client.get("/v1/async/tasks/123", headers=key_auth(key))).status == 404  # counts too
    resp = await pool_client.post(IMAGES, json={"prompt": "x"}, headers=key_auth(key))
    body = await json_of(resp)
    assert resp.status == 429 and body["error"]["code"] == "RATE_LIMITED"
    assert resp.headers["Retry-After"] == "50"
    await clock.advance(50)
    assert (await submit(pool_client, key))[0] == 200


async def test_in_flight_cap_is_429_and_frees_up_when_tasks_finish(
    pool_client: Client, sim: Simulator, clock: ManualClock
) -> None:
    key = await create_key(pool_client, max_in_flight=2)
    assert (await submit(pool_client, key))[0] == 200
    assert (await submit(pool_client, key))[0] == 200
    status, body = await submit(pool_client, key)
    assert status == 429 and body["error"]["code"] == "TOO_MANY_IN_FLIGHT"
    assert len(sim.charges) == 2
    await finish_all(pool_client, clock)
    assert (await submit(pool_client, key))[0] == 200


async def test_raw_tokens_can_be_turned_off(make_client: AppFactory, sim: Simulator) -> None:
    seed_sim(sim)
    client = await make_client(admin=AdminConfig(key=ADMIN_KEY), auth=AuthConfig(allow_raw_tokens=False))
    await add_accounts(client, "pa")
    resp = await client.post(IMAGES, json={"prompt": "x"}, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 401 and body["error"]["code"] == "API_KEY_REQUIRED"
    resp = await client.post("/token/points", headers=bearer(CN_TOKEN))
    assert resp.status == 401
    assert (await submit(client, await create_key(client)))[0] == 200
    assert not [c for c in sim.charges if c[0] == CN_TOKEN]


async def test_a_key_on_token_endpoints_is_refused(pool_client: Client) -> None:
    key = await create_key(pool_client)
    resp = await pool_client.post("/token/points", headers=key_auth(key))
    assert resp.status == 401 and (await json_of(resp))["error"]["code"] == "SESSION_TOKEN_REQUIRED"


# ------------------------------------------------------------------------------------------ same features as raw tokens


async def test_tasks_belong_to_the_key(pool_client: Client, sim: Simulator, clock: ManualClock) -> None:
    alice, bob = await create_key(pool_client, "alice"), await create_key(pool_client, "bob")
    _, body = await submit(pool_client, alice)
    hid = body["history_id"]
    resp = await pool_client.get(f"/v1/async/tasks/{hid}", headers=key_auth(alice))
    assert resp.status == 200 and (await json_of(resp))["status"] == 20
    for other in (key_auth(bob), bearer(POOL_SESSIONS["pa"]), bearer(POOL_SESSIONS["pb"])):
        resp = await pool_client.get(f"/v1/async/tasks/{hid}", headers=other)
        assert resp.status == 404 and (await json_of(resp))["error"]["code"] == "TASK_NOT_FOUND"
        resp = await pool_client.get(f"/v1/async/tasks/{hid}/deliveries", headers=other)
        assert resp.status == 404
    # The key's task is stored without a token; the pool account pays.
    row = await pool_client.app[STORE].get(hid)
    assert row is not None and row.token is None and row.account_id is not None and row.account_fp.startswith("key:")
    await finish_all(pool_client, clock)
    resp = await pool_client.post("/v1/async/tasks/query", json={"history_ids": [hid, "999"]}, headers=key_auth(alice))
    batch = await json_of(resp)
    assert resp.status == 200 and [b["status"] for b in batch["data"]] == [10] and batch["not_found"] == ["999"]
    assert all(c.sessionid in POOL_SESSIONS.values() for c in sim.calls("/get_history_by_ids"))


async def test_query_of_an_unwatched_key_task_asks_its_pool_account(
    pool_client: Client, sim: Simulator, clock: ManualClock
) -> None:
    key = await create_key(pool_client)
    _, body = await submit(pool_client, key)
    hid = body["history_id"]
    await clock.advance(60)  # the watcher has not polled for a minute: a query asks the upstream itself
    before = len(sim.calls("/get_history_by_ids"))
    resp = await pool_client.post("/v1/async/tasks/query", json={"history_id": hid}, headers=key_auth(key))
    assert resp.status == 200 and (await json_of(resp))["history_id"] == hid
    (asked,) = sim.calls("/get_history_by_ids")[before:]
    row = await pool_client.app[STORE].get(hid)
    assert row is not None and row.account_id is not None
    paying = (await json_of(await pool_client.get("/admin/api/accounts", headers=admin())))["data"][row.account_id - 1]
    assert asked.sessionid == POOL_SESSIONS[paying["name"]]


async def test_sync_generation_with_a_key(pool_client: Client, sim: Simulator, clock: ManualClock) -> None:
    key = await create_key(pool_client)
    (resp,) = await drive(
        pool_client.app,
        clock,
        pool_client.post("/v1/images/generations", json={"prompt": "a fox"}, headers=key_auth(key)),
    )
    body = await json_of(resp)
    assert resp.status == 200, body
    assert len(body["data"]) == 4 and all(d["url"].startswith("http") for d in body["data"])
    assert sum(charged_sessions(sim).values()) == 1


async def test_idempotency_key_is_scoped_to_the_api_key(pool_client: Client, sim: Simulator) -> None:
    alice, bob = await create_key(pool_client, "alice"), await create_key(pool_client, "bob")
    first = await pool_client.post(IMAGES, json={"prompt": "p"}, headers={**key_auth(alice), "Idempotency-Key": "k1"})
    again = await pool_client.post(IMAGES, json={"prompt": "p"}, headers={**key_auth(alice), "Idempotency-Key": "k1"})
    assert first.status == again.status == 200
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert (await json_of(first))["history_id"] == (await json_of(again))["history_id"]
    other = await pool_client.post(IMAGES, json={"prompt": "p"}, headers={**key_auth(bob), "Idempotency-Key": "k1"})
    assert other.status == 200 and "Idempotent-Replayed" not in other.headers
    assert (await json_of(other))["history_id"] != (await json_of(first))["history_id"]
    assert len(sim.charges) == 2


async def test_webhooks_and_deliveries_with_a_key(
    pool_client: Client, clock: ManualClock, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    key = await create_key(pool_client)
    hook = str(server.make_url("/hooks/pool"))
    resp = await pool_client.post(IMAGES, json={"prompt": "a cat", "callback_url": hook}, headers=key_auth(key))
    hid = (await json_of(resp))["history_id"]
    await finish_all(pool_client, clock)
    assert await pool_client.app[WEBHOOKS].drain() == 1
    (got,) = rec.on("/hooks/pool")
    assert b'"task.succeeded"' in got.body and hid.encode() in got.body
    resp = await pool_client.get(f"/v1/async/tasks/{hid}/deliveries", headers=key_auth(key))
    body = await json_of(resp)
    assert resp.status == 200 and body["events"][0]["state"] == "delivered"
    tasks = (await json_of(await pool_client.get("/admin/api/tasks", headers=admin())))["data"]
    assert tasks[0]["history_id"] == hid and tasks[0]["webhook"] == "delivered" and tasks[0]["key"] == "alice"


async def test_pool_tasks_resume_after_a_restart(make_client: AppFactory, sim: Simulator, clock: ManualClock) -> None:
    seed_sim(sim)
    first = await make_client(admin=AdminConfig(key=ADMIN_KEY))
    await add_accounts(first, "pa")
    key = await create_key(first)
    _, body = await submit(first, key)
    hid = body["history_id"]
    await first.close()
    second = await make_client(admin=AdminConfig(key=ADMIN_KEY))
    assert second.app[WATCHER].is_watching(hid)
    assert second.app[ACCOUNT_POOL].in_flight(1) == 1
    await finish_all(second, clock)
    resp = await second.get(f"/v1/async/tasks/{hid}", headers=key_auth(key))
    assert resp.status == 200 and (await json_of(resp))["status"] == 10


async def test_no_pool_secret_in_logs_or_admin_answers(
    pool_client: Client, caplog: pytest.LogCaptureFixture, sim: Simulator
) -> None:
    key = await create_key(pool_client)
    sim.expire_session(POOL_SESSIONS["pa"])
    for _ in range(3):
        await submit(pool_client, key)
    for path in ("accounts", "keys", "tasks"):
        text = await (await pool_client.get(f"/admin/api/{path}", headers=admin())).text()
        pool_secrets_absent(text)
        assert key not in text
    records = [r for when in ("setup", "call") for r in caplog.get_records(when)]
    logged = "\n".join(r.getMessage() for r in records)
    pool_secrets_absent(logged)
    assert key not in logged
    assert any(r.levelno == logging.INFO and "refused" in r.getMessage() for r in records)
