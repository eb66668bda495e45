"""`[results] keep = "local"` over real HTTP (issue 21): results downloaded from the simulator's CDN into a
content-addressed directory, answered as signed `/v1/files/{id}` links that outlive the upstream's 2 s links, the
webhook held until the results are kept, Range requests, link and owner checks, a failing CDN given up (and said
so), a result on a host that is not the upstream's never fetched, and jobs a dead keeper left finished after a
restart. The keeper and the sender are driven by hand on a virtual clock."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from support import CN_TOKEN, CN_TOKEN_2, bearer, drive, json_of
from support import finish_task as finish
from support import submit_task as submit
from webhook_support import SECRET, Receiver

from jimeng_server.api.appkeys import KEEPER, SETTLER, STORE, WEBHOOKS
from jimeng_server.app import create_app
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config, ConfigError, ResultsConfig, SecurityConfig, WebhookConfig, parse_config
from jimeng_server.metrics import KEEP_FAILURES
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.faults import Fault, FaultKind
from jimeng_server.store.keeping import KeepState
from jimeng_server.store.outbox import OutboxEvent
from jimeng_server.tasks.records import Outcome, Reason, TaskKind, TaskStatus
from jimeng_server.upstream.history import parse_record
from jimeng_server.webhooks.sender import HoldEvent
from jimeng_server.webhooks.signatures import parse_secret, sign

pytestmark = pytest.mark.wall_clock  # kept files' signed links are checked against the wall clock

Client = TestClient[Any, Any]
IMAGES = "/v1/async/images/generations"
VIDEOS = "/v1/async/videos/generations"
HOOKS = WebhookConfig(secret=SECRET, jitter=0.0)
ClientFactory = Callable[..., Awaitable[Client]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def local_client(
    aiohttp_client: Callable[..., Awaitable[Client]], config: Config, clock: ManualClock, tmp_path: Path
) -> ClientFactory:
    """The app keeping results under tmp_path/kept, its links based on its own loopback port (loops off)."""

    async def factory(*, security: SecurityConfig | None = None, **results: Any) -> Client:
        port = free_port()
        settings = {
            "keep": "local",
            "path": str(tmp_path / "kept"),
            "public_base_url": f"http://127.0.0.1:{port}",
            "link_secret": "test-link-secret",
            "resign_margin": 1.0,
            "lease_seconds": 30.0,
            "retries": (5.0, 30.0),
            **results,
        }
        cfg = dataclasses.replace(
            config, webhooks=HOOKS, results=ResultsConfig(**settings), security=security or config.security
        )
        app: web.Application = create_app(cfg, clock=clock, background=False, identity_salt=b"test-salt")
        return await aiohttp_client(app, server_kwargs={"port": port})

    return factory


async def query(client: Client, history_id: str, token: str = CN_TOKEN) -> dict[str, Any]:
    resp = await client.get(f"/v1/async/tasks/{history_id}", headers=bearer(token))
    body = await json_of(resp)
    assert resp.status == 200, body
    return dict(body)


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers or {}) as resp:
        return resp.status, await resp.read(), resp.headers


def event_of(rec: Receiver, path: str, n: int = 0) -> dict[str, Any]:
    got = rec.on(path)[n]
    expected = sign(parse_secret(SECRET), got.headers["webhook-id"], int(got.headers["webhook-timestamp"]), got.body)
    assert got.headers["webhook-signature"] == expected
    event: dict[str, Any] = json.loads(got.body)
    return event


def cdn_bodies(sim: Simulator, hid: str) -> int:
    return len([e for e in sim.journal if e.vhost == "cdn" and f"/{hid}/" in e.path and e.status == 200])


async def test_results_are_kept_and_outlive_the_upstream_links(
    local_client: ClientFactory,
    clock: ManualClock,
    sim: Simulator,
    receiver: tuple[Receiver, TestServer],
    tmp_path: Path,
) -> None:
    rec, server = receiver
    client = await local_client()
    hook = str(server.make_url("/hooks/kept"))
    hid = await submit(client, IMAGES, clock, {"prompt": "keep me [sim:ttl=2]", "callback_url": hook})
    await finish(client, clock, hid)
    before = await query(client, hid)
    assert [r["kept"] for r in before["results"]] == [False] * 4  # not kept yet: the upstream's links

    assert await client.app[WEBHOOKS].drain() == 1 and not rec.requests  # held while keeping
    assert await client.app[KEEPER].drain() == 4
    assert cdn_bodies(sim, hid) == 4  # each result fetched once
    assert await client.app[WEBHOOKS].drain() == 1
    event = event_of(rec, "/hooks/kept")
    results = event["data"]["results"]
    assert [r["kept"] for r in results] == [True] * 4
    base = str(client.make_url("")).rstrip("/")
    assert all(r["url"].startswith(f"{base}/v1/files/") for r in results)
    assert all(r["expires_at"] >= clock.time() + 3.5 * 86400 for r in results)
    assert (await query(client, hid))["results"] == results  # one truth

    await clock.advance(3)  # the upstream's links are dead; the kept ones are not
    for r in results:
        status, body, headers = await get(r["url"])
        assert status == 200 and headers["Content-Type"] == "image/png"
        file_id = r["url"].split("/v1/files/")[1].split("?")[0]
        assert file_id == hashlib.sha256(body).hexdigest() + ".png"
        assert (tmp_path / "kept" / file_id[:2] / file_id).read_bytes() == body
    assert (await query(client, hid))["results"] == results
    assert not sim.calls("/get_image_by_uri")  # kept links need no re-signing
    metrics = await (await client.get("/metrics")).text()
    counters = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("jimeng_results_kept")
    }
    assert counters["jimeng_results_kept_total"] >= 4
    assert counters["jimeng_results_kept_bytes_total"] >= sum(
        f.stat().st_size for f in (tmp_path / "kept").glob("*/*.png")
    )


async def test_keeping_that_ends_while_the_held_event_is_claimed_still_sends_it_at_once(
    local_client: ClientFactory, clock: ManualClock, receiver: tuple[Receiver, TestServer]
) -> None:
    """The keeper's wake of held events finds nothing while the event is claimed; the hold then asks whether it
    still holds, so the event goes at once instead of after the hold's recheck time (60 s)."""
    rec, server = receiver
    client = await local_client()
    sender = client.app[WEBHOOKS]
    hid = await submit(client, IMAGES, clock, {"prompt": "race me", "callback_url": str(server.make_url("/hooks/r"))})
    await finish(client, clock, hid)
    hook = sender.body_hook
    assert hook is not None
    kept: list[int] = []

    async def keeper_ends_meanwhile(event: OutboxEvent) -> str:
        try:
            return await hook(event)
        except HoldEvent:
            if not kept:
                kept.append(await client.app[KEEPER].drain())  # every job ends, its wake finds the event claimed
            raise

    sender.body_hook = keeper_ends_meanwhile
    assert await sender.drain() == 2  # held, then due again at once (the clock has not moved) and sent
    assert kept == [4] and len(rec.on("/hooks/r")) == 1
    assert [r["kept"] for r in event_of(rec, "/hooks/r")["data"]["results"]] == [True] * 4


async def test_range_requests_link_checks_and_owner_access(
    local_client: ClientFactory, clock: ManualClock, sim: Simulator
) -> None:
    client = await local_client(link_seconds=3600.0)
    hid = await submit(client, IMAGES, clock, {"prompt": "ranges"})
    await finish(client, clock, hid)
    assert await client.app[KEEPER].drain() == 4
    url = (await query(client, hid))["results"][1]["url"]
    status, whole, _ = await get(url)
    assert status == 200 and len(whole) > 20
    status, part, headers = await get(url, {"Range": "bytes=5-14"})
    assert status == 206 and part == whole[5:15]
    assert headers["Content-Range"] == f"bytes 5-14/{len(whole)}"

    bare = url.split("?")[0]
    forged = url.replace("sig=", "sig=0")
    status, body, _ = await get(forged)
    assert status == 403 and json.loads(body)["error"]["code"] == "LINK_INVALID"
    status, body, _ = await get(bare)
    assert status == 401 and json.loads(body)["error"]["code"] == "MISSING_AUTHORIZATION"
    status, body, _ = await get(bare, bearer(CN_TOKEN))
    assert status == 200 and body == whole  # the owner's Authorization opens it
    status, body, _ = await get(bare, bearer(CN_TOKEN_2))
    assert status == 404 and json.loads(body)["error"]["code"] == "FILE_NOT_FOUND"
    for other in (bare[:-10] + "000000.png", bare.rsplit("/", 1)[0] + "/not-a-file"):
        status, body, _ = await get(other, bearer(CN_TOKEN))
        assert status == 404 and json.loads(body)["error"]["code"] == "FILE_NOT_FOUND"

    await clock.advance(3601)
    status, body, _ = await get(url)
    assert status == 403 and json.loads(body)["error"]["code"] == "LINK_EXPIRED"
    fresh = (await query(client, hid))["results"][1]["url"]
    assert fresh != url and (await get(fresh))[1] == whole


async def test_a_result_that_cannot_be_fetched_is_given_up_and_the_webhook_says_so(
    local_client: ClientFactory, clock: ManualClock, sim: Simulator, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    client = await local_client()
    hook = str(server.make_url("/hooks/broken"))
    hid = await submit(client, IMAGES, clock, {"prompt": "broken cdn", "callback_url": hook})
    await finish(client, clock, hid)
    sim.faults.add(f"/cdn/img/{hid}/2.png", Fault(FaultKind.HTTP_500), times=3)
    gave_up = KEEP_FAILURES.labels("gave_up")._value.get()
    keeper = client.app[KEEPER]
    assert await keeper.drain() == 4  # three kept, one failed (retry in 5 s)
    assert await client.app[WEBHOOKS].drain() == 1 and not rec.requests  # still held
    await clock.advance(5)
    assert await keeper.drain() == 1
    await clock.advance(30)
    assert await keeper.drain() == 1  # the third failure: given up
    assert KEEP_FAILURES.labels("gave_up")._value.get() == gave_up + 1
    jobs = (await client.app[STORE].keep_jobs_of([hid]))[hid]
    assert [j.state for j in jobs] == [KeepState.KEPT, KeepState.KEPT, KeepState.FAILED, KeepState.KEPT]
    assert await client.app[WEBHOOKS].drain() == 1
    results = event_of(rec, "/hooks/broken")["data"]["results"]
    assert [r["kept"] for r in results] == [True, True, False, True]
    assert "500" in results[2]["keep_error"] and "keep_error" not in results[0]
    assert (await get(results[2]["url"]))[0] == 200  # the upstream's link, still alive


async def test_a_result_on_a_host_that_is_not_the_upstreams_is_never_fetched(
    local_client: ClientFactory, clock: ManualClock, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    client = await local_client()
    hid = await submit(client, IMAGES, clock, {"prompt": "elsewhere [sim:stuck]"})
    elsewhere = str(server.make_url("/steal/me.png"))  # loopback too, but not the upstream's host:port
    record = parse_record({"status": 50, "item_list": [{"image": {"large_images": [{"image_url": elsewhere}]}}]})
    await client.app[SETTLER].settle([Outcome(hid, TaskKind.IMAGE, TaskStatus.DONE, Reason.DONE, record)])
    assert await client.app[KEEPER].drain() == 1
    (job,) = (await client.app[STORE].keep_jobs_of([hid]))[hid]
    assert job.state is KeepState.FAILED and "not one of the upstream's hosts" in (job.error or "")
    assert not rec.requests  # nothing was fetched
    (result,) = (await query(client, hid))["results"]
    assert result["kept"] is False and result["url"] == elsewhere


async def test_jobs_a_dead_keeper_claimed_are_kept_after_a_restart(
    local_client: ClientFactory, clock: ManualClock, sim: Simulator
) -> None:
    first = await local_client()
    hid = await submit(first, VIDEOS, clock, {"prompt": "a wave", "duration": 5})
    await finish(first, clock, hid)
    claimed = await first.app[STORE].claim_keep_jobs(now=clock.time(), lease_seconds=30, limit=10)
    assert [j.history_id for j in claimed] == [hid]  # claimed, then the process died before keeping it
    await first.close()
    second = await local_client()
    assert await second.app[KEEPER].drain() == 0  # still leased to the dead keeper
    await clock.advance(31)
    assert await second.app[KEEPER].drain() == 1
    (result,) = (await query(second, hid))["results"]
    assert result["kept"] is True
    status, body, headers = await get(result["url"])
    assert status == 200 and headers["Content-Type"] == "video/mp4" and body[4:8] == b"ftyp"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"keep": "disk"}, "results.keep: must be one of resign, local, s3, none, got 'disk'"),
        ({"public_base_url": "files.example.com"}, "results.public_base_url: must be an http(s) URL"),
        ({"concurrency": 0}, "results.concurrency: must be at least 1, got 0"),
        ({"retries": ["soon"]}, "results.retries[0]: expected a number"),
    ],
)
def test_bad_results_settings_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"results": table})
    assert str(caught.value).startswith(message)


async def test_retention_removes_old_files_and_the_query_says_so(
    local_client: ClientFactory, clock: ManualClock, sim: Simulator, tmp_path: Path
) -> None:
    client = await local_client(keep_days=1.0)
    hid = await submit(client, IMAGES, clock, {"prompt": "short-lived"})
    await finish(client, clock, hid)
    keeper = client.app[KEEPER]
    assert await keeper.drain() == 4
    kept = (await query(client, hid))["results"]
    assert await keeper.sweep() == 0  # not old yet
    await clock.advance(2 * 86400)
    assert await keeper.sweep() == 4
    assert not list((tmp_path / "kept").glob("*/*.png"))
    assert (await get(kept[0]["url"]))[0] == 404
    results = (await query(client, hid))["results"]  # not the cached answer: it changed
    assert [r["kept"] for r in results] == [False] * 4
    assert all(r["keep_error"].startswith("expired") for r in results)
    assert len(sim.calls("/get_image_by_uri")) == 1  # the upstream's links of 2 days ago were re-signed
    assert [(await get(r["url"]))[0] for r in results] == [200] * 4


async def test_the_quota_removes_the_least_recently_kept_files_first(
    local_client: ClientFactory, clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.item_image_bytes = 1024 * 1024
    client = await local_client(max_total_mb=2, keep_days=0.0)
    keeper = client.app[KEEPER]
    old = await submit(client, IMAGES, clock, {"prompt": "older"})
    await finish(client, clock, old)
    assert await keeper.drain() == 4
    await clock.advance(60)
    new = await submit(client, IMAGES, clock, {"prompt": "newer"})
    await finish(client, clock, new)
    assert await keeper.drain() == 4
    assert await keeper.sweep() == 6  # 8 MiB kept, 2 MiB allowed: the 4 older files, then 2 of the newer
    states = await client.app[STORE].keep_jobs_of([old, new])
    assert [j.state for j in states[old]] == [KeepState.EXPIRED] * 4
    assert sorted(j.state for j in states[new]) == [KeepState.EXPIRED] * 2 + [KeepState.KEPT] * 2
    assert sum(f.size for f in await client.app[STORE].kept_files()) <= 2 * 1024 * 1024


async def test_a_cdn_host_at_a_private_address_is_refused_by_the_guard(
    local_client: ClientFactory, clock: ManualClock, config: Config, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    # "localhost" counts as a CDN host here, but the address guard refuses loopback for CDN downloads.
    secure = dataclasses.replace(config.security, allow_private_networks=False)  # the production default
    client = await local_client(cdn_hosts=("localhost",), security=secure)
    hid = await submit(client, IMAGES, clock, {"prompt": "private [sim:stuck]"})
    private = f"https://localhost:{server.port}/steal/me.png"
    record = parse_record({"status": 50, "item_list": [{"image": {"large_images": [{"image_url": private}]}}]})
    await client.app[SETTLER].settle([Outcome(hid, TaskKind.IMAGE, TaskStatus.DONE, Reason.DONE, record)])
    assert await client.app[KEEPER].drain() == 1
    (job,) = (await client.app[STORE].keep_jobs_of([hid]))[hid]
    assert job.state is KeepState.FAILED and "not allowed" in (job.error or "")
    assert not rec.requests


async def test_without_webhook_after_keep_the_event_goes_at_once_and_a_redelivery_carries_kept_links(
    local_client: ClientFactory, clock: ManualClock, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    client = await local_client(webhook_after_keep=False)
    hid = await submit(client, IMAGES, clock, {"prompt": "no wait", "callback_url": str(server.make_url("/h"))})
    await finish(client, clock, hid)
    assert await client.app[WEBHOOKS].drain() == 1
    assert [r["kept"] for r in event_of(rec, "/h", 0)["data"]["results"]] == [False] * 4
    assert await client.app[KEEPER].drain() == 4
    resp = await client.post(f"/v1/async/tasks/{hid}/deliveries/redeliver", headers=bearer(CN_TOKEN))
    assert resp.status == 202
    assert await client.app[WEBHOOKS].drain() == 1
    assert [r["kept"] for r in event_of(rec, "/h", 1)["data"]["results"]] == [True] * 4


async def test_a_sync_url_answer_carries_the_kept_links(
    local_client: ClientFactory, clock: ManualClock, sim: Simulator
) -> None:
    client = await local_client(sync_wait=1e6)  # drive() runs the virtual clock while the keeper works for real
    keeper = client.app[KEEPER]
    await keeper.start()  # its loop keeps the results while the sync request waits
    try:
        (resp,) = await drive(
            client.app, clock, client.post("/v1/images/generations", json={"prompt": "sync"}, headers=bearer(CN_TOKEN))
        )
        body = await json_of(resp)
    finally:
        await keeper.stop()
    assert resp.status == 200, body
    urls = [d["url"] for d in body["data"]]
    assert len(urls) == 4 and all("/v1/files/" in u for u in urls)
    assert [(await get(u))[0] for u in urls] == [200] * 4


async def test_sync_wait_0_answers_the_upstream_links_at_once(
    local_client: ClientFactory, clock: ManualClock, sim: Simulator
) -> None:
    client = await local_client(sync_wait=0.0)
    (resp,) = await drive(
        client.app, clock, client.post("/v1/images/generations", json={"prompt": "now"}, headers=bearer(CN_TOKEN))
    )
    urls = [d["url"] for d in (await json_of(resp))["data"]]
    assert len(urls) == 4 and all("/cdn/img/" in u for u in urls)
