"""Webhooks through the app: the task service's final hook writes the outbox row, the app's sender delivers
it, and the owner lists the attempts (`GET .../deliveries`) and asks for a redelivery (`POST .../redeliver`).
Every test runs the app on both store backends (`[store] url` SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from standardwebhooks.webhooks import Webhook
from support import CN_TOKEN, CN_TOKEN_2, AppFactory, bearer, json_of
from webhook_support import SECRET, Receiver, Reply, done_outcome, failed_outcome, make_task

from jimeng_server.api.appkeys import SETTLER, STORE, WEBHOOKS
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config, WebhookConfig
from jimeng_server.tasks.records import Reason, TaskStatus
from jimeng_server.upstream.tokens import parse_token

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
OWNER_FP = parse_token(CN_TOKEN).fingerprint


@pytest.fixture
def clock() -> ManualClock:
    # Real "now": standardwebhooks checks the signed timestamp against the wall clock.
    return ManualClock(start=float(int(time.time())))


@pytest.fixture
async def app_client(make_client: AppFactory, config: Config, store_url: str) -> TestClient[Any, Any]:
    store = dataclasses.replace(config.store, url=store_url)
    return await make_client(webhooks=WebhookConfig(secret=SECRET, jitter=0.0), store=store)


async def add_task(client: TestClient[Any, Any], history_id: str, url: str | None, clock: ManualClock) -> None:
    store = client.app[STORE]
    await store.insert(make_task(history_id, url, created_at=clock.time(), account_fp=OWNER_FP))


async def test_final_hook_event_is_delivered_and_listed_for_the_owner_only(
    app_client: TestClient[Any, Any], receiver: tuple[Receiver, TestServer], clock: ManualClock
) -> None:
    rec, server = receiver
    rec.script("/hook", Reply(503))
    await add_task(app_client, "h1", str(server.make_url("/hook")), clock)
    await app_client.app[SETTLER].settle([done_outcome("h1", ["https://cdn.example/a.webp"])])
    sender = app_client.app[WEBHOOKS]
    await sender.drain()
    await clock.advance(5)
    await sender.drain()

    assert len(rec.requests) == 2
    body = Webhook(SECRET).verify(rec.requests[1].body, rec.requests[1].headers)
    assert body["type"] == "task.succeeded"
    assert body["data"]["results"] == [{"url": "https://cdn.example/a.webp", "expires_at": None, "kept": False}]
    record = await app_client.app[STORE].get("h1")
    assert record is not None and record.status is TaskStatus.DONE and record.token is None

    resp = await app_client.get("/v1/async/tasks/h1/deliveries", headers=bearer(CN_TOKEN_2, CN_TOKEN))
    assert resp.status == 200
    listing = await json_of(resp)
    webhook_id = rec.requests[0].headers["webhook-id"]
    assert listing["history_id"] == "h1"
    assert listing["events"] == [
        {
            "webhook_id": webhook_id,
            "type": "task.succeeded",
            "state": "delivered",
            "attempts": 2,
            "next_attempt_at": None,
            "created_at": clock.time() - 5,
        }
    ]
    first, second = listing["deliveries"]
    assert (first["attempt"], first["status"], first["next_attempt_at"]) == (1, 503, clock.time())
    assert "HTTP 503" in first["error"]
    assert (second["attempt"], second["status"], second["error"], second["next_attempt_at"]) == (2, 200, None, None)
    assert isinstance(second["latency_ms"], int)

    for headers in (bearer(CN_TOKEN_2), {}):
        resp = await app_client.get("/v1/async/tasks/h1/deliveries", headers=headers)
        assert resp.status in (401, 404)
        if resp.status == 404:
            assert (await json_of(resp))["error"]["code"] == "TASK_NOT_FOUND"
    resp = await app_client.post("/v1/async/tasks/h1/deliveries/redeliver", headers=bearer(CN_TOKEN_2))
    assert resp.status == 404


async def test_redeliver_queues_the_same_event_again(
    app_client: TestClient[Any, Any], receiver: tuple[Receiver, TestServer], clock: ManualClock
) -> None:
    rec, server = receiver
    await add_task(app_client, "h1", str(server.make_url("/hook")), clock)
    await app_client.app[SETTLER].settle([done_outcome("h1", ["https://cdn.example/a.webp"])])
    await app_client.app[WEBHOOKS].drain()

    resp = await app_client.post("/v1/async/tasks/h1/deliveries/redeliver", headers=bearer(CN_TOKEN))
    assert resp.status == 202
    answer = await json_of(resp)
    assert answer == {
        "history_id": "h1",
        "webhook_id": rec.ids()[0],
        "state": "pending",
        "next_attempt_at": clock.time(),
    }
    await app_client.app[WEBHOOKS].drain()
    assert rec.ids() == [answer["webhook_id"]] * 2


async def test_redeliver_refusals(
    app_client: TestClient[Any, Any], receiver: tuple[Receiver, TestServer], clock: ManualClock
) -> None:
    _, server = receiver
    await add_task(app_client, "plain", None, clock)
    await add_task(app_client, "running", str(server.make_url("/hook")), clock)
    await app_client.app[SETTLER].settle([done_outcome("plain", ["https://cdn.example/a.webp"])])
    for hid, code in (("plain", "NO_CALLBACK_URL"), ("running", "TASK_NOT_FINISHED")):
        resp = await app_client.post(f"/v1/async/tasks/{hid}/deliveries/redeliver", headers=bearer(CN_TOKEN))
        assert resp.status == 409
        assert (await json_of(resp))["error"]["code"] == code
    resp = await app_client.get("/v1/async/tasks/plain/deliveries", headers=bearer(CN_TOKEN))
    assert (await json_of(resp))["events"] == []
    resp = await app_client.get("/v1/async/tasks/nope/deliveries", headers=bearer(CN_TOKEN))
    assert resp.status == 404


async def test_a_watch_given_up_sends_task_failed(
    app_client: TestClient[Any, Any], receiver: tuple[Receiver, TestServer], clock: ManualClock
) -> None:
    rec, server = receiver
    await add_task(app_client, "h1", str(server.make_url("/hook")), clock)
    await app_client.app[SETTLER].settle([failed_outcome("h1", Reason.TIMEOUT, detail="no final status within 900 s")])
    await app_client.app[WEBHOOKS].drain()
    (got,) = rec.requests
    body = Webhook(SECRET).verify(got.body, got.headers)
    assert body["type"] == "task.failed"
    assert body["data"]["status"] == 30
    assert body["data"]["error"] == {
        "code": "TIMEOUT",
        "message": "the task did not reach a final status in time (no final status within 900 s)",
    }


async def test_upstream_failure_event_from_the_final_hook(
    app_client: TestClient[Any, Any], receiver: tuple[Receiver, TestServer], clock: ManualClock
) -> None:
    rec, server = receiver
    await add_task(app_client, "h1", str(server.make_url("/hook")), clock)
    await app_client.app[SETTLER].settle([failed_outcome("h1", Reason.UPSTREAM_FAILED, fail_code="2038")])
    await app_client.app[WEBHOOKS].drain()
    body = Webhook(SECRET).verify(rec.requests[0].body, rec.requests[0].headers)
    assert (body["type"], body["data"]["fail_code"], body["data"]["error"]["code"]) == (
        "task.failed",
        2038,
        "CONTENT_REJECTED",
    )
