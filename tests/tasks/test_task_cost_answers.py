"""A task's cost in its query answer and its webhook (issue 20 item 8) over real HTTP against the simulator, on
SQLite and PostgreSQL: a pooled task is first `estimated` (the balance drop its submit measured), the webhook's
data carries the very cost the query shows, the key's spent credits follow the stored cost, and once the
upstream's spending record of its submit_id settles the cost becomes `measured`; a failed spending read keeps
the estimate."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pool_support import ADMIN_KEY, add_accounts, admin, create_key, key_auth, seed_sim
from support import AppFactory, json_of
from webhook_support import SECRET, Receiver

from jimeng_server.api.appkeys import STORE, TASK_COSTS, WATCHER, WEBHOOKS
from jimeng_server.clock import ManualClock
from jimeng_server.config import AdminConfig, Config, WebhookConfig
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.faults import Fault, FaultKind
from jimeng_server.tasks.cost import CostSource, TaskCost
from jimeng_server.upstream.spending import CREDIT_HISTORY_PATH

Client = TestClient[Any, Any]
SETTLE = 600.0  # the simulator's spending records settle this long after a task finished


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=float(int(time.time())))  # webhook signatures are checked against the wall clock


@pytest.fixture
async def pool_client(make_client: AppFactory, sim: Simulator, config: Config, store_url: str) -> Client:
    seed_sim(sim)
    sim.settings.spend_settle_seconds = SETTLE
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
            await client.app[TASK_COSTS].drain()
            return
        await clock.advance(1.0)
        await client.app[WATCHER].run_once()
    raise AssertionError("tasks did not finish")


async def submit_with_hook(client: Client, key: str, hook: str) -> str:
    body = {"prompt": "a cat", "model": "jimeng-4.5", "callback_url": hook}
    resp = await client.post("/v1/async/images/generations", json=body, headers=key_auth(key))
    answer = await json_of(resp)
    assert resp.status == 200, answer
    return str(answer["history_id"])


async def query(client: Client, key: str, hid: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/async/tasks/{hid}", headers=key_auth(key))
    body = await json_of(resp)
    assert resp.status == 200, body
    return dict(body)


async def key_spent(client: Client) -> int:
    body = await json_of(await client.get("/admin/api/keys", headers=admin()))
    (key,) = body["data"]
    return int(key["usage"]["credits_spent"])


def history_reads(sim: Simulator) -> int:
    return sum(1 for entry in sim.journal if entry.path.endswith(CREDIT_HISTORY_PATH))


async def test_the_webhook_carries_the_cost_the_query_shows_then_the_settled_record_measures_it(
    pool_client: Client, sim: Simulator, clock: ManualClock, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    key = await create_key(pool_client, "team-a")
    hid = await submit_with_hook(pool_client, key, str(server.make_url("/hook")))
    await finish_all(pool_client, clock)
    assert await pool_client.app[WEBHOOKS].drain() == 1
    (delivery,) = rec.on("/hook")
    data = json.loads(delivery.body)["data"]
    charged = sim.records[hid].charged
    assert charged > 0
    estimated = {"credits": charged, "source": "estimated"}  # the balance drop the pooled submit measured
    assert data["cost"] == estimated
    answer = await query(pool_client, key, hid)
    assert answer["cost"] == estimated
    assert {k: v for k, v in answer.items() if k != "raw_data"} == data  # one truth
    reads = history_reads(sim)
    assert reads >= 1  # the settle looked already: the record had not settled, the estimate stays
    # Queried again at once: no second read (a task is looked at again only after a while).
    await query(pool_client, key, hid)
    await pool_client.app[TASK_COSTS].drain()
    assert history_reads(sim) == reads
    assert await key_spent(pool_client) == charged  # the key counted the task's estimate
    # A newer estimate moves the key's spend with it; the measurement below brings it back to the charge.
    assert await pool_client.app[STORE].record_cost(hid, TaskCost(charged + 5, CostSource.ESTIMATED))
    assert await key_spent(pool_client) == charged + 5
    # The record settles; a query after the retry interval measures it, and the next query carries it.
    await clock.advance(SETTLE + 1)
    await query(pool_client, key, hid)
    await pool_client.app[TASK_COSTS].drain()
    assert history_reads(sim) == reads + 1
    assert (await query(pool_client, key, hid))["cost"] == {"credits": charged, "source": "measured"}
    assert await key_spent(pool_client) == charged
    spent = await json_of(await pool_client.get("/admin/api/stats", headers=admin()))
    assert spent["credits_per_day"][0]["measured"] == charged


async def test_a_failed_spending_read_keeps_the_estimate(
    pool_client: Client, sim: Simulator, clock: ManualClock, receiver: tuple[Receiver, TestServer]
) -> None:
    _, server = receiver
    key = await create_key(pool_client, "team-a")
    hid = await submit_with_hook(pool_client, key, str(server.make_url("/hook")))
    await finish_all(pool_client, clock)
    await clock.advance(SETTLE + 1)
    sim.inject(CREDIT_HISTORY_PATH, Fault(FaultKind.RET, ret="1015", errmsg="login error"), times=5)
    before = history_reads(sim)
    answer = await query(pool_client, key, hid)
    await pool_client.app[TASK_COSTS].drain()
    assert history_reads(sim) > before  # it was asked, and refused
    estimate = {"credits": sim.records[hid].charged, "source": "estimated"}
    assert answer["cost"] == estimate
    assert (await query(pool_client, key, hid))["cost"] == estimate
