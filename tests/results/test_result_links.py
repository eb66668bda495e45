"""Results that outlive the upstream's links (`[results] keep = "resign"`, issue 21), over real HTTP against the
simulator: with a 2 s link lifetime (`[sim:ttl=2]`), a query and a webhook redelivery 3 s later carry working URLs
(re-signed with one `get_image_by_uri` / `get_local_item_list` call per task, on the task's own account), a
webhook retried after a receiver outage too (API-key tasks, both store backends), and `expires_at` / `kept` say
how long each link lives. The clock is virtual; the simulator's CDN judges the links by the same clock."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pool_support import ADMIN_KEY, POOL_SESSIONS, add_accounts, create_key, key_auth, seed_sim
from store_backends import execute_sql, open_store
from support import CN_TOKEN, CN_TOKEN_2, AppFactory, bearer, json_of
from support import finish_task as finish
from support import submit_task as submit
from webhook_support import SECRET, Receiver, Reply, done_outcome, make_task

from jimeng_server.api.appkeys import STORE, WEBHOOKS
from jimeng_server.clock import ManualClock
from jimeng_server.config import AdminConfig, Config, ResultsConfig, WebhookConfig
from jimeng_server.metrics import RESULT_RESIGNS
from jimeng_server.services.settlement import TaskSettler
from jimeng_server.simulator import Simulator
from jimeng_server.upstream.links import ResultRef
from jimeng_server.webhooks.signatures import parse_secret, sign

Client = TestClient[Any, Any]
IMAGES = "/v1/async/images/generations"
VIDEOS = "/v1/async/videos/generations"
RESIGN = "/mweb/v1/get_image_by_uri"
LOCAL_ITEMS = "/mweb/v1/get_local_item_list"
HOOKS = WebhookConfig(secret=SECRET, jitter=0.0)
SHORT = ResultsConfig(resign_margin=1.0)  # links of 2 s count as fresh for their first second


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=float(int(time.time())))


async def query(client: Client, history_id: str, auth: dict[str, str]) -> dict[str, Any]:
    resp = await client.get(f"/v1/async/tasks/{history_id}", headers=auth)
    body = await json_of(resp)
    assert resp.status == 200, body
    return dict(body)


async def fetch(url: str) -> tuple[int, str]:
    """GET a result URL as a caller would (a real client over loopback)."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        await resp.read()
        return resp.status, resp.content_type


def event_of(rec: Receiver, path: str, n: int) -> dict[str, Any]:
    """The n-th event POSTed to `path`, its signature checked against the exact bytes received."""
    got = rec.on(path)[n]
    expected = sign(parse_secret(SECRET), got.headers["webhook-id"], int(got.headers["webhook-timestamp"]), got.body)
    assert got.headers["webhook-signature"] == expected
    event: dict[str, Any] = json.loads(got.body)
    return event


def urls(results: list[dict[str, Any]]) -> list[str]:
    return [r["url"] for r in results]


def resigns(outcome: str) -> float:
    return RESULT_RESIGNS.labels(outcome)._value.get()  # type: ignore[no-any-return]


async def test_query_and_redelivery_3s_later_carry_working_links(
    make_client: AppFactory, clock: ManualClock, sim: Simulator, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    client = await make_client(webhooks=HOOKS, results=SHORT)
    hook = str(server.make_url("/hooks/a"))
    hid = await submit(client, IMAGES, clock, {"prompt": "a cat [sim:ttl=2]", "callback_url": hook}, bearer(CN_TOKEN))
    await finish(client, clock, hid)
    assert await client.app[WEBHOOKS].drain() == 1
    first = event_of(rec, "/hooks/a", 0)["data"]
    stored = urls(first["results"])
    assert len(stored) == 4
    assert all(r["kept"] is False and r["expires_at"] >= clock.time() + 1 for r in first["results"])
    assert [await fetch(u) for u in stored] == [(200, "image/png")] * 4
    assert not sim.calls(RESIGN)  # fresh links were sent as they were

    await clock.advance(3)
    assert {(await fetch(u))[0] for u in stored} == {403}  # the upstream's links are dead now
    body = await query(client, hid, bearer(CN_TOKEN))
    fresh = urls(body["results"])
    assert len(fresh) == 4 and not set(fresh) & set(stored)
    assert [r["expires_at"] for r in body["results"]] == [int(clock.time()) + 2] * 4
    assert [await fetch(u) for u in fresh] == [(200, "image/png")] * 4
    (call,) = sim.calls(RESIGN)
    assert call.sessionid == CN_TOKEN and len(call.body["uris"]) == 4  # the task's own account, one call
    assert body["raw_data"]["status"] == 10  # the upstream record stays untouched
    assert await query(client, hid, bearer(CN_TOKEN)) == body and len(sim.calls(RESIGN)) == 1  # cached meanwhile

    await clock.advance(3)  # the re-signed links died too: the redelivery gets new ones
    resp = await client.post(f"/v1/async/tasks/{hid}/deliveries/redeliver", headers=bearer(CN_TOKEN))
    assert resp.status == 202, await json_of(resp)
    assert await client.app[WEBHOOKS].drain() == 1
    again = event_of(rec, "/hooks/a", 1)
    assert again["type"] == "task.succeeded"
    redelivered = urls(again["data"]["results"])
    assert [await fetch(u) for u in redelivered] == [(200, "image/png")] * 4
    assert len(sim.calls(RESIGN)) == 2
    # One truth: the query now answers the same links as the webhook just carried.
    assert urls((await query(client, hid, bearer(CN_TOKEN)))["results"]) == redelivered
    assert len(sim.calls(RESIGN)) == 2


async def test_concurrent_queries_share_one_resign_and_another_account_sees_nothing(
    make_client: AppFactory, clock: ManualClock, sim: Simulator
) -> None:
    client = await make_client(results=SHORT)
    hid = await submit(client, IMAGES, clock, {"prompt": "cats [sim:ttl=2]"}, bearer(CN_TOKEN))
    await finish(client, clock, hid)
    await clock.advance(5)
    bodies = await asyncio.gather(*(query(client, hid, bearer(CN_TOKEN_2, CN_TOKEN)) for _ in range(5)))
    assert len(sim.calls(RESIGN)) == 1 and sim.calls(RESIGN)[0].sessionid == CN_TOKEN
    assert all(b["results"] == bodies[0]["results"] for b in bodies)
    resp = await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN_2))
    assert resp.status == 404 and len(sim.calls(RESIGN)) == 1


async def test_keep_none_answers_the_links_as_stored(
    make_client: AppFactory, clock: ManualClock, sim: Simulator
) -> None:
    client = await make_client(results=ResultsConfig(keep="none"))
    hid = await submit(client, IMAGES, clock, {"prompt": "old [sim:ttl=2]"}, bearer(CN_TOKEN))
    await finish(client, clock, hid)
    before = (await query(client, hid, bearer(CN_TOKEN)))["results"]
    await clock.advance(5)
    after = (await query(client, hid, bearer(CN_TOKEN)))["results"]
    assert after == before and not sim.calls(RESIGN)
    assert {(await fetch(u))[0] for u in urls(after)} == {403}
    assert all(r["expires_at"] is not None and r["expires_at"] < clock.time() for r in after)  # and says so


async def test_a_failed_resign_answers_the_stored_links_instead_of_an_error(
    make_client: AppFactory, clock: ManualClock, sim: Simulator
) -> None:
    client = await make_client(results=SHORT)
    hid = await submit(client, IMAGES, clock, {"prompt": "cats [sim:ttl=2]"}, bearer(CN_TOKEN))
    await finish(client, clock, hid)
    stored = (await query(client, hid, bearer(CN_TOKEN)))["results"]
    await clock.advance(5)
    sim.expire_session(CN_TOKEN)  # the re-sign call is refused (ret 1015)
    failed = resigns("failed")
    body = await query(client, hid, bearer(CN_TOKEN))
    assert body["status"] == 10 and body["results"] == stored
    assert resigns("failed") == failed + 1
    calls = len(sim.calls(RESIGN))
    assert (await query(client, hid, bearer(CN_TOKEN)))["results"] == stored
    assert len(sim.calls(RESIGN)) == calls  # not asked again at once
    await clock.advance(61)
    await query(client, hid, bearer(CN_TOKEN))
    assert len(sim.calls(RESIGN)) == calls + 1 and resigns("failed") == failed + 2


async def test_video_links_are_re_signed_with_get_local_item_list(
    make_client: AppFactory, clock: ManualClock, sim: Simulator
) -> None:
    client = await make_client(results=SHORT)
    hid = await submit(client, VIDEOS, clock, {"prompt": "a wave [sim:ttl=2]", "duration": 5}, bearer(CN_TOKEN))
    await finish(client, clock, hid)
    calls = len(sim.calls(LOCAL_ITEMS))  # the settle's own download-quality lookup
    (stored,) = urls((await query(client, hid, bearer(CN_TOKEN)))["results"])
    assert await fetch(stored) == (200, "video/mp4")
    await clock.advance(3)
    assert (await fetch(stored))[0] == 403
    (result,) = (await query(client, hid, bearer(CN_TOKEN)))["results"]
    assert result["url"] != stored and result["expires_at"] == int(clock.time()) + 2
    assert await fetch(result["url"]) == (200, "video/mp4")
    assert len(sim.calls(LOCAL_ITEMS)) == calls + 1 and sim.calls(LOCAL_ITEMS)[-1].sessionid == CN_TOKEN


async def test_key_task_webhook_retried_after_an_outage_carries_working_links(
    make_client: AppFactory,
    clock: ManualClock,
    sim: Simulator,
    config: Config,
    store_url: str,
    receiver: tuple[Receiver, TestServer],
) -> None:
    rec, server = receiver
    seed_sim(sim)
    client = await make_client(
        admin=AdminConfig(key=ADMIN_KEY),
        webhooks=HOOKS,
        results=SHORT,
        store=dataclasses.replace(config.store, url=store_url),
    )
    await add_accounts(client, "pa")
    key = await create_key(client)
    rec.script("/hooks/k", Reply(status=503))
    hook = str(server.make_url("/hooks/k"))
    hid = await submit(client, IMAGES, clock, {"prompt": "pool cat [sim:ttl=2]", "callback_url": hook}, key_auth(key))
    await finish(client, clock, hid)
    assert await client.app[WEBHOOKS].drain() == 1  # the receiver is down: 503
    await clock.advance(HOOKS.schedule[1] + 1)  # the retry is due; the links of the first attempt are dead
    assert await client.app[WEBHOOKS].drain() == 1
    first, retried = event_of(rec, "/hooks/k", 0), event_of(rec, "/hooks/k", 1)
    assert {(await fetch(u))[0] for u in urls(first["data"]["results"])} == {403}
    assert [await fetch(u) for u in urls(retried["data"]["results"])] == [(200, "image/png")] * 4
    (call,) = sim.calls(RESIGN)
    assert call.sessionid == POOL_SESSIONS["pa"]  # the task's paying pool account
    assert without_links(retried["data"]) == without_links(first["data"])  # only the links changed


async def test_a_webhook_retried_after_a_query_re_signed_the_links_carries_the_fresh_ones(
    make_client: AppFactory, clock: ManualClock, sim: Simulator, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    client = await make_client(webhooks=HOOKS, results=SHORT)
    rec.script("/hooks/q", Reply(status=503))
    hook = str(server.make_url("/hooks/q"))
    hid = await submit(client, IMAGES, clock, {"prompt": "a cat [sim:ttl=2]", "callback_url": hook}, bearer(CN_TOKEN))
    await finish(client, clock, hid)
    assert await client.app[WEBHOOKS].drain() == 1  # the receiver is down: 503
    await clock.advance(HOOKS.schedule[1] + 1)  # the retry is due; the stored links are dead
    queried = urls((await query(client, hid, bearer(CN_TOKEN)))["results"])  # re-signs: fresh for 2 s
    assert await client.app[WEBHOOKS].drain() == 1
    first, retried = event_of(rec, "/hooks/q", 0), event_of(rec, "/hooks/q", 1)
    assert {(await fetch(u))[0] for u in urls(first["data"]["results"])} == {403}
    assert urls(retried["data"]["results"]) == queried  # one truth: the links the query just answered
    assert [await fetch(u) for u in queried] == [(200, "image/png")] * 4
    assert len(sim.calls(RESIGN)) == 1


async def test_an_event_stored_without_its_links_expiry_is_re_signed_as_before(
    make_client: AppFactory,
    clock: ManualClock,
    sim: Simulator,
    config: Config,
    store_url: str,
    receiver: tuple[Receiver, TestServer],
) -> None:
    """An event is stored with the earliest expiry of its links, so the sender need not read its body to know
    they still live; an event an older server stored without it (NULL) is read as before: its retry after an
    outage carries re-signed, working links too."""
    rec, server = receiver
    client = await make_client(webhooks=HOOKS, results=SHORT, store=dataclasses.replace(config.store, url=store_url))
    rec.script("/hooks/o", Reply(status=503))
    hook = str(server.make_url("/hooks/o"))
    hid = await submit(client, IMAGES, clock, {"prompt": "old cat [sim:ttl=2]", "callback_url": hook}, bearer(CN_TOKEN))
    await finish(client, clock, hid)
    (stored,) = await client.app[STORE].events_of(hid)
    expiries = [r["expires_at"] for r in json.loads(stored.body)["data"]["results"]]
    assert len(expiries) == 4 and stored.links_expire_at == min(expiries) == clock.time() + 2
    await execute_sql(store_url, "UPDATE webhook_events SET links_expire_at = NULL")  # as an older server stored it
    assert await client.app[WEBHOOKS].drain() == 1  # the receiver is down: 503
    assert rec.on("/hooks/o")[0].body == stored.body.encode()  # the links still live: sent as stored
    await clock.advance(HOOKS.schedule[1] + 1)
    assert await client.app[WEBHOOKS].drain() == 1
    retried = event_of(rec, "/hooks/o", 1)
    assert [await fetch(u) for u in urls(retried["data"]["results"])] == [(200, "image/png")] * 4
    assert {c.sessionid for c in sim.calls(RESIGN)} == {CN_TOKEN}


def without_links(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "results"}


async def test_raw_token_task_webhook_retried_after_an_outage_carries_working_links(
    make_client: AppFactory, clock: ManualClock, sim: Simulator, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    client = await make_client(webhooks=HOOKS, results=SHORT)
    rec.script("/hooks/r", Reply(status=500), Reply(status=500))
    hook = str(server.make_url("/hooks/r"))
    hid = await submit(client, IMAGES, clock, {"prompt": "raw cat [sim:ttl=2]", "callback_url": hook}, bearer(CN_TOKEN))
    await finish(client, clock, hid)
    row = await client.app[STORE].get(hid)
    assert row is not None and row.token is None  # the settled task keeps no token
    assert await client.app[WEBHOOKS].drain() == 1
    await clock.advance(HOOKS.schedule[1] + 1)
    assert await client.app[WEBHOOKS].drain() == 1
    await clock.advance(HOOKS.schedule[2] + 1)
    assert await client.app[WEBHOOKS].drain() == 1
    assert [g.path for g in rec.requests] == ["/hooks/r"] * 3
    last = event_of(rec, "/hooks/r", 2)["data"]
    assert [await fetch(u) for u in urls(last["results"])] == [(200, "image/png")] * 4
    assert {c.sessionid for c in sim.calls(RESIGN)} == {CN_TOKEN}


# ------------------------------------------------------------------------------------------ the store's refs


async def test_refs_are_stored_per_task_on_both_backends_and_go_with_the_task(
    store_url: str, clock: ManualClock
) -> None:
    store = await open_store(store_url, clock)
    try:
        await store.insert(make_task("h1", None, created_at=clock.time()))
        refs = (ResultRef("image", "tos-cn-i-x/a"), None, ResultRef("video", "7605524120645700874"))
        settler = TaskSettler(store, clock)
        settler.result_refs = lambda _outcome: refs  # what the settle stores with each task
        urls = ["https://cdn.example/a.png"]
        await settler.settle([done_outcome("h1", urls), done_outcome("unknown", urls)])  # a task not stored gets none
        assert await store.result_refs_of(["h1", "unknown"]) == {"h1": refs}
        settler.result_refs = lambda _outcome: refs[:1]
        await settler.settle([done_outcome("h1", urls)])  # the first refs stay
        assert await store.result_refs_of(["h1"]) == {"h1": refs}
        await clock.advance(3600)
        assert await store.purge_finished(older_than=60) == 1
        assert await store.result_refs_of(["h1"]) == {}
    finally:
        await store.close()


async def test_a_task_whose_refs_cannot_be_read_still_settles_with_its_event(
    store_url: str, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The refs are read before the settle's transaction; a failure there is logged and the task settles without
    them (nothing the caller paid for is lost): its state and its webhook event are stored."""
    store = await open_store(store_url, clock)
    try:
        await store.insert(make_task("h1", "https://hooks.example/cb", created_at=clock.time()))
        settler = TaskSettler(store, clock)

        def broken(_outcome: object) -> None:
            raise RuntimeError("unreadable record")

        settler.result_refs = broken
        await settler.settle([done_outcome("h1", ["https://cdn.example/a.png"])])
        row = await store.get("h1")
        assert row is not None and row.final and row.results == ("https://cdn.example/a.png",)
        assert [e.type for e in await store.events_of("h1")] == ["task.succeeded"]
        assert await store.result_refs_of(["h1"]) == {}
        assert "could not be read" in caplog.text
    finally:
        await store.close()


async def test_the_settler_stores_the_refs_the_upstream_record_names(
    make_client: AppFactory, clock: ManualClock, sim: Simulator
) -> None:
    client = await make_client(results=SHORT)
    hid = await submit(client, IMAGES, clock, {"prompt": "four cats"}, bearer(CN_TOKEN))
    await finish(client, clock, hid)
    refs = (await client.app[STORE].result_refs_of([hid]))[hid]
    assert refs == tuple(ResultRef("image", f"tos-cn-i-sim/{hid}-{n}") for n in range(4))


async def test_a_batch_query_re_signs_every_expired_task_with_one_call_per_account(
    make_client: AppFactory, clock: ManualClock, sim: Simulator
) -> None:
    client = await make_client(results=SHORT)
    ids = [await submit(client, IMAGES, clock, {"prompt": f"cat {n} [sim:ttl=2]"}, bearer(CN_TOKEN)) for n in range(3)]
    for hid in ids:
        await finish(client, clock, hid)
    await clock.advance(5)
    resp = await client.post("/v1/async/tasks/query", json={"history_ids": ids}, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 200 and [t["history_id"] for t in body["data"]] == ids
    (call,) = sim.calls(RESIGN)  # one call for the three tasks of the account
    assert len(call.body["uris"]) == 12 and call.sessionid == CN_TOKEN
    for task in body["data"]:
        assert [(await fetch(r["url"]))[0] for r in task["results"]] == [200] * 4


async def test_video_links_that_do_not_say_when_they_expire_are_re_signed_after_an_hour(
    make_client: AppFactory, clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.video_url_expires = False  # like the real CDN's video URLs (§18.4)
    client = await make_client(results=SHORT)
    hid = await submit(client, VIDEOS, clock, {"prompt": "a quiet wave", "duration": 5}, bearer(CN_TOKEN))
    await finish(client, clock, hid)
    calls = len(sim.calls(LOCAL_ITEMS))
    (result,) = (await query(client, hid, bearer(CN_TOKEN)))["results"]
    assert result["expires_at"] is None and "x-expires" not in result["url"]
    await clock.advance(1800)
    await query(client, hid, bearer(CN_TOKEN))
    assert len(sim.calls(LOCAL_ITEMS)) == calls  # within the hour: not re-signed
    await clock.advance(1800)
    (result,) = (await query(client, hid, bearer(CN_TOKEN)))["results"]
    assert len(sim.calls(LOCAL_ITEMS)) == calls + 1 and sim.calls(LOCAL_ITEMS)[-1].sessionid == CN_TOKEN
    assert await fetch(result["url"]) == (200, "video/mp4")
    await clock.advance(600)
    await query(client, hid, bearer(CN_TOKEN))
    assert len(sim.calls(LOCAL_ITEMS)) == calls + 1  # the re-signed link counts from its own signing
