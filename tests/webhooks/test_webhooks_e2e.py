"""Webhooks end to end (issue 6): async submits carry `callback_url` over real HTTP against the simulator, the
watcher finishes the task, the app's sender POSTs the signed event to a real loopback receiver, and direct
polling keeps answering for the same task. Also: `callback_url` refused before anything is spent, refused on
the sync endpoints, part of the Idempotency-Key request, the delivery log, and delivery after a restart."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from standardwebhooks.webhooks import Webhook
from support import CN_TOKEN, AppFactory, FakeResolver, bearer, drive, json_of
from webhook_support import SECRET, Receiver, Reply

from jimeng_server.api.appkeys import STORE, WATCHER, WEBHOOKS
from jimeng_server.app import create_app
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config, SecurityConfig, WebhookConfig
from jimeng_server.mp4 import tiny_mp4
from jimeng_server.net.fetcher import SafeFetcher
from jimeng_server.net.policy import FetchPolicy
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.media import png
from jimeng_server.webhooks.signatures import parse_secret, sign

pytestmark = pytest.mark.wall_clock  # standardwebhooks checks the signed timestamp against the wall clock

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
Client = TestClient[Any, Any]

IMAGES = "/v1/async/images/generations"
COMPOSITIONS = "/v1/async/images/compositions"
VIDEOS = "/v1/async/videos/generations"
PNG = png(40, 30, (200, 10, 10))
CLIP = tiny_mp4(8000, tag=b"eight", width=640, height=360)
HOOKS = WebhookConfig(secret=SECRET, jitter=0.0)


@pytest.fixture
async def app_client(make_client: AppFactory) -> Client:
    """The server app with a webhook secret (loops off: the test ticks the watcher and drains the sender)."""
    return await make_client(webhooks=HOOKS)


async def submit(client: Client, path: str, clock: ManualClock, **kwargs: Any) -> str:
    """POST an async submit (JSON `json=` or form `data=`) and return its history id."""
    (resp,) = await drive(client.app, clock, client.post(path, headers=bearer(CN_TOKEN), **kwargs))
    body = await json_of(resp)
    assert resp.status == 200, body
    assert body["status"] == "submitted"
    return str(body["history_id"])


async def finish(client: Client, clock: ManualClock, history_id: str, *, limit: int = 180) -> None:
    """Tick the watcher once per virtual second until the task is final in the store."""
    store = client.app[STORE]
    for _ in range(limit):
        row = await store.get(history_id)
        if row is not None and row.final:
            return
        await clock.advance(1.0)
        await client.app[WATCHER].run_once()
    raise AssertionError(f"task {history_id} did not finish in {limit} s")


async def get_task(client: Client, history_id: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/async/tasks/{history_id}", headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 200, body
    return dict(body)


def verified(rec: Receiver, path: str, *, fresh: bool = True) -> dict[str, Any]:
    """The one event POSTed to `path`, its Standard Webhooks signature checked (with the library; by hand when
    the virtual clock ran far past the wall clock, `fresh=False`, as the library refuses such timestamps)."""
    (got,) = rec.on(path)
    assert got.headers["Content-Type"] == "application/json"
    if fresh:
        event = Webhook(SECRET).verify(got.body, got.headers)
    else:
        stamp = int(got.headers["webhook-timestamp"])
        expected = sign(parse_secret(SECRET), got.headers["webhook-id"], stamp, got.body)
        assert got.headers["webhook-signature"] == expected
        event = json.loads(got.body)
    assert isinstance(event, dict) and json.loads(got.body) == event
    return event


def without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


def nothing_spent(sim: Simulator) -> None:
    assert not sim.journal, "nothing reached the upstream (no credit check, upload or generate)"
    assert sim.generate_count == 0 and not sim.charges


# ------------------------------------------------------------------------------------------ deliveries


async def test_image_submit_with_callback_gets_one_signed_succeeded_event_and_polling_still_works(
    app_client: Client, clock: ManualClock, sim: Simulator, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    hook = str(server.make_url("/hooks/jimeng?tag=a"))
    hid = await submit(app_client, IMAGES, clock, json={"prompt": "a cat", "callback_url": hook})
    row = await app_client.app[STORE].get(hid)
    assert row is not None and row.callback_url == hook
    assert (await get_task(app_client, hid))["status"] == 20  # polling works while it runs

    await finish(app_client, clock, hid)
    assert await app_client.app[WEBHOOKS].drain() == 1
    event = verified(rec, "/hooks/jimeng")
    polled = await get_task(app_client, hid)
    assert polled["status"] == 10 and len(polled["results"]) == 4 and polled["raw_data"]["status"] == 10
    assert event["type"] == "task.succeeded"
    assert event["data"] == without(polled, "raw_data")
    got = rec.requests[0]
    assert got.headers["webhook-timestamp"] == str(int(clock.time()))
    assert got.headers["webhook-id"].startswith("msg_")

    # Exactly one: more ticks, more drains and more queries send nothing again.
    await clock.advance(3600)
    await app_client.app[WATCHER].run_once()
    assert await app_client.app[WEBHOOKS].drain() == 0
    resp = await app_client.post("/v1/async/tasks/query", json={"history_id": hid}, headers=bearer(CN_TOKEN))
    assert resp.status == 200 and await json_of(resp) == polled
    assert len(rec.requests) == 1 and sim.generate_count == 1

    resp = await app_client.get(f"/v1/async/tasks/{hid}/deliveries", headers=bearer(CN_TOKEN))
    listing = await json_of(resp)
    assert resp.status == 200
    assert listing["callback_url"] == hook
    (ev,) = listing["events"]
    assert (ev["webhook_id"], ev["type"], ev["state"], ev["attempts"]) == (
        got.headers["webhook-id"],
        "task.succeeded",
        "delivered",
        1,
    )
    (attempt,) = listing["deliveries"]
    assert (attempt["attempt"], attempt["status"], attempt["error"], attempt["next_attempt_at"]) == (1, 200, None, None)


async def test_failed_task_sends_task_failed_with_fail_code(
    app_client: Client, clock: ManualClock, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    hook = str(server.make_url("/failed"))
    hid = await submit(app_client, IMAGES, clock, json={"prompt": "bad [sim:fail]", "callback_url": hook})
    await finish(app_client, clock, hid)
    await app_client.app[WEBHOOKS].drain()
    event = verified(rec, "/failed")
    polled = await get_task(app_client, hid)
    assert event["type"] == "task.failed"
    data = event["data"]
    assert (data["status"], data["fail_code"], data["results"]) == (30, 2038, None)
    assert data["error"]["code"] == "CONTENT_REJECTED" and "2038" in data["error"]["message"]
    assert data["fail_message"] == "输入的文字不符合平台规则，请修改后重试" and data["queue"] is None
    assert data == without(polled, "raw_data")  # the webhook says what the query says


async def test_receiver_failing_once_then_succeeding_lists_two_attempts(
    app_client: Client, clock: ManualClock, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    rec.script("/flaky", Reply(500))
    hid = await submit(
        app_client, IMAGES, clock, json={"prompt": "a dog", "callback_url": str(server.make_url("/flaky"))}
    )
    await finish(app_client, clock, hid)
    sender = app_client.app[WEBHOOKS]
    await sender.drain()
    failed_at = clock.time()

    url = f"/v1/async/tasks/{hid}/deliveries"
    listing = await json_of(await app_client.get(url, headers=bearer(CN_TOKEN)))
    (ev,) = listing["events"]
    assert (ev["state"], ev["attempts"], ev["next_attempt_at"]) == ("pending", 1, failed_at + 5)
    (first,) = listing["deliveries"]
    assert (first["attempt"], first["status"], first["next_attempt_at"]) == (1, 500, failed_at + 5)
    assert "HTTP 500" in first["error"]

    await clock.advance(5)
    assert await sender.drain() == 1
    listing = await json_of(await app_client.get(url, headers=bearer(CN_TOKEN)))
    assert [(d["attempt"], d["status"], d["error"]) for d in listing["deliveries"]] == [
        (1, 500, first["error"]),
        (2, 200, None),
    ]
    assert listing["events"][0]["state"] == "delivered" and listing["events"][0]["attempts"] == 2
    ids = rec.ids("/flaky")
    assert len(ids) == 2 and ids[0] == ids[1], "a retry keeps its webhook-id"
    Webhook(SECRET).verify(rec.requests[1].body, rec.requests[1].headers)


async def test_multipart_composition_with_callback(
    app_client: Client, clock: ManualClock, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    form = aiohttp.FormData()
    form.add_field("prompt", "a cat, anime style")
    form.add_field("callback_url", str(server.make_url("/blend")))
    form.add_field("images", PNG, filename="cat.png", content_type="image/png")
    hid = await submit(app_client, COMPOSITIONS, clock, data=form)
    await finish(app_client, clock, hid)
    await app_client.app[WEBHOOKS].drain()
    event = verified(rec, "/blend")
    assert event["type"] == "task.succeeded"
    assert event["data"] == without(await get_task(app_client, hid), "raw_data")
    assert event["data"]["task_type"] == "image" and len(event["data"]["results"]) == 4  # a blend makes 4 (§19.6)


async def test_json_composition_with_callback_is_recorded(
    app_client: Client, clock: ManualClock, receiver: tuple[Receiver, TestServer]
) -> None:
    _, server = receiver
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    hook = str(server.make_url("/blend-json"))
    hid = await submit(app_client, COMPOSITIONS, clock, json={"prompt": "x", "images": [uri], "callback_url": hook})
    row = await app_client.app[STORE].get(hid)
    assert row is not None and row.callback_url == hook and row.input_images == 1


async def test_text_to_video_with_callback(
    app_client: Client, clock: ManualClock, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    body = {"prompt": "a lion running", "model": "jimeng-video-3.0", "callback_url": str(server.make_url("/video"))}
    hid = await submit(app_client, VIDEOS, clock, json=body)
    await finish(app_client, clock, hid)
    await app_client.app[WEBHOOKS].drain()
    event = verified(rec, "/video")
    assert event["type"] == "task.succeeded"
    assert event["data"] == without(await get_task(app_client, hid), "raw_data")
    (result,) = event["data"]["results"]
    assert event["data"]["task_type"] == "video" and "hq=1" in result["url"]


async def test_multipart_omni_video_with_callback(
    app_client: Client, clock: ManualClock, sim: Simulator, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    form = aiohttp.FormData()
    form.add_field("model", "jimeng-video-seedance-2.0-fast")
    form.add_field("functionMode", "omni_reference")
    form.add_field("prompt", "@clip.mp4 slower")
    form.add_field("callback_url", str(server.make_url("/omni")))
    form.add_field("video_file", CLIP, filename="clip.mp4", content_type="video/mp4")
    hid = await submit(app_client, VIDEOS, clock, data=form)
    assert sim.records[hid].extra["mode"] == "omni_reference"
    await finish(app_client, clock, hid)
    await app_client.app[WEBHOOKS].drain()
    event = verified(rec, "/omni")
    assert event["type"] == "task.succeeded" and event["data"]["task_type"] == "video"
    assert event["data"] == without(await get_task(app_client, hid), "raw_data")


# ------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "bad",
    [
        "http://127.0.0.1:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://2130706433/hook",  # 127.0.0.1 written as one number
        "http://10.0.0.5/hook",
        "ftp://203.0.113.9/hook",
        "hooks.example.com/jimeng",
        12345,
        ["http://203.0.113.9/a"],
    ],
)
async def test_bad_callback_url_is_400_before_anything_is_spent(
    make_client: AppFactory, sim: Simulator, bad: Any
) -> None:
    client = await make_client(security=SecurityConfig(allow_private_networks=False))
    resp = await client.post(IMAGES, json={"prompt": "a cat", "callback_url": bad}, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 400, body
    assert body["error"]["code"] == "INVALID_CALLBACK_URL" and "callback_url" in body["error"]["message"]
    nothing_spent(sim)


async def test_private_callback_refused_on_form_submits_before_any_upload(
    make_client: AppFactory, sim: Simulator
) -> None:
    client = await make_client(security=SecurityConfig(allow_private_networks=False))
    form = aiohttp.FormData()
    form.add_field("prompt", "a cat")
    form.add_field("callback_url", "http://169.254.169.254/latest/meta-data/")
    form.add_field("images", PNG, filename="cat.png", content_type="image/png")
    resp = await client.post(COMPOSITIONS, data=form, headers=bearer(CN_TOKEN))
    assert resp.status == 400 and (await json_of(resp))["error"]["code"] == "INVALID_CALLBACK_URL"

    fields = {"prompt": "a lion", "model": "jimeng-video-3.0", "callback_url": "http://127.0.0.1:9/hook"}
    resp = await client.post(VIDEOS, data=fields, headers=bearer(CN_TOKEN))  # application/x-www-form-urlencoded
    assert resp.status == 400 and (await json_of(resp))["error"]["code"] == "INVALID_CALLBACK_URL"

    form = aiohttp.FormData()
    form.add_field("prompt", "x")
    form.add_field("callback_url", "http://203.0.113.9/a")
    form.add_field("callback_url", "http://203.0.113.9/b")
    form.add_field("images", PNG, filename="cat.png", content_type="image/png")
    resp = await client.post(COMPOSITIONS, data=form, headers=bearer(CN_TOKEN))
    assert resp.status == 400 and (await json_of(resp))["error"]["code"] == "INVALID_CALLBACK_URL"
    nothing_spent(sim)


async def test_empty_callback_url_means_none(app_client: Client, clock: ManualClock) -> None:
    hid = await submit(app_client, IMAGES, clock, json={"prompt": "a cat", "callback_url": ""})
    row = await app_client.app[STORE].get(hid)
    assert row is not None and row.callback_url is None


async def test_callback_host_names_are_resolved_at_submit(
    aiohttp_client: Callable[..., Awaitable[Client]], config: Config, clock: ManualClock, sim: Simulator
) -> None:
    resolver = FakeResolver({"hooks.example": "93.184.216.34", "intranet.example": "10.0.0.5"})
    fetcher = SafeFetcher(FetchPolicy(allow_private_networks=False), resolver=resolver)
    cfg = dataclasses.replace(config, security=SecurityConfig(allow_private_networks=False))
    client = await aiohttp_client(
        create_app(cfg, clock=clock, background=False, identity_salt=b"test-salt", fetcher=fetcher)
    )
    for host in ("intranet.example", "nowhere.example"):
        body = {"prompt": "a cat", "callback_url": f"https://{host}/hook"}
        resp = await client.post(IMAGES, json=body, headers=bearer(CN_TOKEN))
        error = (await json_of(resp))["error"]
        assert resp.status == 400 and error["code"] == "INVALID_CALLBACK_URL", error
        assert host in error["message"]
    nothing_spent(sim)

    hid = await submit(client, IMAGES, clock, json={"prompt": "a cat", "callback_url": "https://hooks.example/h"})
    row = await client.app[STORE].get(hid)
    assert row is not None and row.callback_url == "https://hooks.example/h"
    assert resolver.asked == ["intranet.example", "nowhere.example", "hooks.example"]


@pytest.mark.parametrize(
    ("path", "twin", "multipart"),
    [
        ("/v1/images/generations", IMAGES, False),
        ("/v1/images/compositions", COMPOSITIONS, True),
        ("/v1/videos/generations", VIDEOS, False),
    ],
)
async def test_sync_endpoints_refuse_callback_url_naming_the_async_twin(
    client: Client, sim: Simulator, path: str, twin: str, multipart: bool
) -> None:
    hook = "https://hooks.example.com/jimeng"
    if multipart:
        form = aiohttp.FormData()
        form.add_field("prompt", "a cat")
        form.add_field("callback_url", hook)
        form.add_field("images", PNG, filename="cat.png", content_type="image/png")
        resp = await client.post(path, data=form, headers=bearer(CN_TOKEN))
    else:
        resp = await client.post(path, json={"prompt": "a cat", "callback_url": hook}, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 400, body
    assert body["error"]["code"] == "UNSUPPORTED_PARAMETER"
    assert f"POST {twin}" in body["error"]["message"] and "callback_url" in body["error"]["message"]
    nothing_spent(sim)


# ------------------------------------------------------------------------------------------ idempotency


async def test_callback_url_is_part_of_the_idempotent_request(
    app_client: Client, clock: ManualClock, sim: Simulator
) -> None:
    headers = {**bearer(CN_TOKEN), "Idempotency-Key": "cb-key-1"}
    first = {"prompt": "a cat", "callback_url": "http://203.0.113.9/a"}
    resp = await app_client.post(IMAGES, json=first, headers=headers)
    answer = await json_of(resp)
    assert resp.status == 200, answer
    resp = await app_client.post(IMAGES, json=first, headers=headers)
    assert resp.status == 200 and resp.headers.get("Idempotent-Replayed") == "true"
    assert await json_of(resp) == answer
    resp = await app_client.post(IMAGES, json={**first, "callback_url": "http://203.0.113.9/b"}, headers=headers)
    assert resp.status == 422 and (await json_of(resp))["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert sim.generate_count == 1
    row = await app_client.app[STORE].get(answer["history_id"])
    assert row is not None and row.callback_url == "http://203.0.113.9/a"


# ------------------------------------------------------------------------------------------ restarts


async def test_task_finished_by_the_next_app_on_the_same_database_is_delivered(
    make_client: AppFactory, clock: ManualClock, sim: Simulator, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    first = await make_client(webhooks=HOOKS)
    hook = str(server.make_url("/restart"))
    hid = await submit(first, IMAGES, clock, json={"prompt": "survives a restart", "callback_url": hook})
    await first.close()  # stopped with the task in flight: no poll, no event yet
    assert not sim.calls("/get_history_by_ids") and not rec.requests

    second = await make_client(webhooks=HOOKS)
    assert second.app[WATCHER].pending == 1
    await finish(second, clock, hid)
    await second.app[WEBHOOKS].drain()
    event = verified(rec, "/restart")
    assert event["type"] == "task.succeeded"
    assert event["data"] == without(await get_task(second, hid), "raw_data")
    assert sim.generate_count == 1


async def test_event_written_before_a_stop_is_sent_by_the_next_app(
    make_client: AppFactory, clock: ManualClock, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    first = await make_client(webhooks=HOOKS)
    hid = await submit(first, IMAGES, clock, json={"prompt": "a cat", "callback_url": str(server.make_url("/later"))})
    await finish(first, clock, hid)
    await first.close()  # the event is in the outbox, never sent
    assert not rec.requests

    second = await make_client(webhooks=HOOKS)
    assert await second.app[WEBHOOKS].drain() == 1
    assert verified(rec, "/later")["data"] == without(await get_task(second, hid), "raw_data")


async def test_info_lists_the_delivery_endpoints(client: Client) -> None:
    endpoints = set((await json_of(await client.get("/")))["endpoints"].values())
    assert "GET /v1/async/tasks/{history_id}/deliveries" in endpoints
    assert "POST /v1/async/tasks/{history_id}/deliveries/redeliver" in endpoints


async def test_task_the_watcher_gives_up_on_sends_task_failed_timeout(
    app_client: Client, clock: ManualClock, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    hid = await submit(
        app_client,
        IMAGES,
        clock,
        json={"prompt": "never ends [sim:stuck]", "callback_url": str(server.make_url("/stuck"))},
    )
    watcher = app_client.app[WATCHER]
    await clock.advance(1000.0)  # past the 900 s image deadline: still watched, just less often
    await watcher.run_once()
    assert watcher.is_watching(hid) and rec.requests == []
    assert (await get_task(app_client, hid))["status"] == 20
    for _ in range(100):  # settled at the 86,400 s horizon
        if not watcher.is_watching(hid):
            break
        await clock.advance(1000.0)
        await watcher.run_once()
    assert not watcher.is_watching(hid)
    await app_client.app[WEBHOOKS].drain()
    event = verified(rec, "/stuck", fresh=False)  # a day of virtual time has passed
    assert event["type"] == "task.failed"
    assert event["data"]["status"] == 30 and event["data"]["error"]["code"] == "TIMEOUT"
    polled = await get_task(app_client, hid)  # settled: the query says what the webhook said, from now on
    assert event["data"] == without(polled, "raw_data")
