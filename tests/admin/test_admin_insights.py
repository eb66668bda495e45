"""The dashboard's read side over real HTTP (issue 24): totals and breakdowns that match the tasks submitted,
a task's detail with its error code and webhook attempts, every account's credits read at once, and the log
tail with secrets masked; all behind the admin key. On SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pool_support import ADMIN_KEY, add_accounts, admin, create_key, key_auth, seed_sim
from support import CN_TOKEN, AppFactory, bearer, json_of
from webhook_support import SECRET, Receiver

from jimeng_server.api.appkeys import STORE, TASK_COSTS, WATCHER, WEBHOOKS
from jimeng_server.clock import ManualClock
from jimeng_server.config import AdminConfig, Config, WebhookConfig
from jimeng_server.services.insights import utc_day
from jimeng_server.simulator import Simulator
from jimeng_server.tasks.cost import CostSource, TaskCost

Client = TestClient[Any, Any]
IMAGES = "/v1/async/images/generations"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=float(int(time.time())))  # webhook signatures are checked against the wall clock


@pytest.fixture
async def pool_client(make_client: AppFactory, sim: Simulator, config: Config, store_url: str) -> Client:
    seed_sim(sim)
    client = await make_client(
        admin=AdminConfig(key=ADMIN_KEY),
        webhooks=WebhookConfig(secret=SECRET, jitter=0.0),
        store=dataclasses.replace(config.store, url=store_url),
    )
    await add_accounts(client)
    return client


async def finish_all(client: Client, clock: ManualClock) -> None:
    for _ in range(120):
        if not client.app[WATCHER].pending:
            return
        await clock.advance(1.0)
        await client.app[WATCHER].run_once()
    raise AssertionError("tasks did not finish")


async def submit(client: Client, headers: dict[str, str], **body: Any) -> str:
    resp = await client.post(IMAGES, json={"prompt": "a cat", **body}, headers=headers)
    answer = await json_of(resp)
    assert resp.status == 200, answer
    return str(answer["history_id"])


async def test_stats_count_the_tasks_by_day_model_key_account_and_failure(
    pool_client: Client, clock: ManualClock
) -> None:
    key = await create_key(pool_client, "team-a")
    await submit(pool_client, key_auth(key), model="jimeng-4.5")
    failed = await submit(pool_client, key_auth(key), prompt="a cat [sim:fail]", model="jimeng-4.5")
    await submit(pool_client, bearer(CN_TOKEN), model="jimeng-4.0")
    await finish_all(pool_client, clock)
    resp = await pool_client.get("/admin/api/stats", headers=admin())
    stats = await json_of(resp)
    assert resp.status == 200, stats
    totals = stats["totals"]
    assert (totals["tasks"], totals["done"], totals["failed"], totals["processing"]) == (3, 2, 1, 0)
    assert totals["items"] == 8 and totals["accounts"] == 3 and totals["keys_active"] == 1
    assert stats["per_day"] == [{"name": utc_day(clock.time()), "tasks": 3, "done": 2, "failed": 1, "processing": 0}]
    assert {r["name"]: r["tasks"] for r in stats["per_key"]} == {"team-a": 2, "(session token)": 1}
    per_account = {r["name"]: r["tasks"] for r in stats["per_account"]}
    assert per_account.pop("(caller's own)") == 1 and sum(per_account.values()) == 2
    assert stats["per_model"] == [
        {"name": "jimeng-4.5", "tasks": 2, "done": 1, "failed": 1, "processing": 0},
        {"name": "jimeng-4.0", "tasks": 1, "done": 1, "failed": 0, "processing": 0},
    ]
    assert stats["failure_codes"] == [{"code": "CONTENT_REJECTED", "tasks": 1}]
    spent = {r["name"]: r["credits_spent"] for r in stats["credits"]["per_key"]}
    assert spent["team-a"] > 0 and totals["credits_spent"] == spent["team-a"]
    # The failed task's detail says why, as the task query does.
    detail = await json_of(await pool_client.get(f"/admin/api/tasks/{failed}", headers=admin()))
    query = await json_of(await pool_client.get(f"/v1/async/tasks/{failed}", headers=key_auth(key)))
    assert detail["error"]["code"] == query["error"]["code"] == "CONTENT_REJECTED"
    assert detail["status_name"] == "failed" and detail["key"] == "team-a" and detail["account"]
    assert [step["status"] for step in detail["status_history"]] == ["submitted", "failed"]


async def test_stats_add_up_the_stored_task_costs_per_day(
    pool_client: Client, clock: ManualClock, sim: Simulator
) -> None:
    """Credits per day come from each task's stored cost (tasks/cost.py), by the day the task was created:
    the estimate each pooled submit stored, or the measurement that replaced it."""
    sim.settings.spend_settle_seconds = 10 * 86_400  # no spending record settles here: estimates stay
    key = await create_key(pool_client, "team-a")
    first = await submit(pool_client, key_auth(key))
    second = await submit(pool_client, key_auth(key), prompt="a dog")
    await clock.advance(86_400)
    third = await submit(pool_client, key_auth(key), prompt="a bird")
    fourth = await submit(pool_client, key_auth(key), prompt="a fish")
    await finish_all(pool_client, clock)
    await pool_client.app[TASK_COSTS].drain()
    store = pool_client.app[STORE]
    assert await store.record_cost(first, TaskCost(3, CostSource.MEASURED))  # its spending record settled
    assert await store.record_cost(third, TaskCost(70, CostSource.MEASURED))
    assert not await store.record_cost(third, TaskCost(5, CostSource.ESTIMATED))  # a measurement is final
    costs = await store.costs_of([first, second, third, fourth])
    assert costs[second].source is costs[fourth].source is CostSource.ESTIMATED
    two, four = costs[second].credits, costs[fourth].credits
    assert two > 0 and four > 0  # the balance drops the pooled submits measured
    stats = await json_of(await pool_client.get("/admin/api/stats", headers=admin()))
    day1, day2 = utc_day(clock.time() - 86_400), utc_day(clock.time())
    assert stats["credits_per_day"] == [
        {"day": day1, "credits": 3 + two, "measured": 3, "estimated": two, "tasks": 2},
        {"day": day2, "credits": 70 + four, "measured": 70, "estimated": four, "tasks": 2},
    ]
    # The window is the same as every other figure's: the latest two tasks.
    latest = await json_of(await pool_client.get("/admin/api/stats?limit=2", headers=admin()))
    assert latest["credits_per_day"] == [stats["credits_per_day"][1]]


async def test_task_detail_shows_parameters_results_and_webhook_attempts(
    pool_client: Client, clock: ManualClock, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    key = await create_key(pool_client)
    hook = str(server.make_url("/hook"))
    hid = await submit(pool_client, key_auth(key), callback_url=hook, model="jimeng-4.5")
    await finish_all(pool_client, clock)
    assert await pool_client.app[WEBHOOKS].drain() == 1
    assert len(rec.on("/hook")) == 1
    resp = await pool_client.get(f"/admin/api/tasks/{hid}", headers=admin())
    detail = await json_of(resp)
    assert resp.status == 200, detail
    assert detail["parameters"]["model"] == "jimeng-4.5" and detail["parameters"]["callback_url"] == hook
    assert detail["error"] is None and len(detail["results"]) == 4
    async with pool_client.session.get(detail["results"][0]["url"]) as image:
        assert image.status == 200 and (await image.read())[:4] == b"\x89PNG"
    assert detail["webhook"]["callback_url"] == hook
    assert [e["state"] for e in detail["webhook"]["events"]] == ["delivered"]
    (attempt,) = detail["webhook"]["deliveries"]
    assert attempt["status"] == 200 and attempt["error"] is None
    missing = await pool_client.get("/admin/api/tasks/999999", headers=admin())
    assert missing.status == 404 and (await json_of(missing))["error"]["code"] == "TASK_NOT_FOUND"


async def test_checking_every_account_reads_all_balances(pool_client: Client, sim: Simulator) -> None:
    resp = await pool_client.post("/admin/api/accounts/check", headers=admin())
    body = await json_of(resp)
    assert resp.status == 200, body
    assert [a["credits"] for a in body["data"]] == [1000, 1000, 1000]
    assert all(a["health"]["last_check_at"] is not None for a in body["data"])


async def test_log_tail_masks_secrets_and_pages_by_sequence(pool_client: Client) -> None:
    first = await json_of(await pool_client.get("/admin/api/logs", headers=admin()))
    logging.getLogger("jimeng_server.test").warning(
        "upstream said no to Authorization: Bearer sess-not-a-real-one-0123456789 and key jk_abcdefghijklmnop"
    )
    resp = await pool_client.get(f"/admin/api/logs?after={first['last']}", headers=admin())
    tail = await json_of(resp)
    assert resp.status == 200 and tail["last"] > first["last"]
    (line,) = [entry for entry in tail["data"] if "said no" in entry["line"]]
    assert line["level"] == "WARNING" and "Bearer ***" in line["line"] and "jk_abcde***" in line["line"]
    assert "sess-not-a-real-one" not in line["line"] and "jk_abcdefghijklmnop" not in line["line"]
    refused = await pool_client.get("/admin/api/logs?after=-1", headers=admin())
    assert refused.status == 400


async def test_the_read_side_needs_the_admin_key(pool_client: Client) -> None:
    for method, path in (
        ("GET", "/admin/api/stats"),
        ("GET", "/admin/api/logs"),
        ("GET", "/admin/api/tasks/1"),
        ("POST", "/admin/api/accounts/check"),
    ):
        resp = await pool_client.request(method, path, headers={"Authorization": "Bearer wrong"})
        assert resp.status == 401, path
        assert (await json_of(resp))["error"]["code"] == "INVALID_ADMIN_KEY"
