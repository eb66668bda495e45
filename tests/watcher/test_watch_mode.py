"""`[watcher] watch = "callbacks"` (the default, as the spec says: the caller decides when to query) and the
one mapping of upstream outcomes shared by the sync and the async path."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from aiohttp.test_utils import TestClient
from support import CN_TOKEN, bearer, drive, json_of, run_tick

from jimeng_server.api.appkeys import QUERIES, STORE, WATCHER
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config
from jimeng_server.simulator import Fault, FaultKind, Simulator
from jimeng_server.tasks.records import TaskStatus
from jimeng_server.upstream.tokens import parse_token

SUBMIT = "/v1/async/images/generations"
HISTORY = "/get_history_by_ids"


@dataclasses.dataclass
class Env:
    client: TestClient[Any, Any]
    sim: Simulator
    clock: ManualClock


async def callbacks_env(make_client: Any, config: Config, sim: Simulator, clock: ManualClock) -> Env:
    client = await make_client(watcher=dataclasses.replace(config.watcher, watch="callbacks"))
    return Env(client, sim, clock)


async def submit(env: Env, body: dict[str, Any]) -> str:
    resp = await env.client.post(SUBMIT, json=body, headers=bearer(CN_TOKEN))
    assert resp.status == 200, await json_of(resp)
    return str((await json_of(resp))["history_id"])


async def query(env: Env, hid: str, suffix: str = "") -> Any:
    resp = await env.client.get(f"/v1/async/tasks/{hid}{suffix}", headers=bearer(CN_TOKEN))
    assert resp.status == 200, await json_of(resp)
    return await json_of(resp)


async def test_default_mode_is_callbacks(config: Config) -> None:
    assert Config().watcher.watch == "callbacks"


async def test_plain_async_task_is_not_polled_until_queried(
    make_client: Any, config: Config, sim: Simulator, clock: ManualClock
) -> None:
    env = await callbacks_env(make_client, config, sim, clock)
    hid = await submit(env, {"prompt": "a quiet cat"})
    watcher = env.client.app[WATCHER]
    assert not watcher.is_watching(hid)
    row = await env.client.app[STORE].get(hid)
    assert row is not None and row.token is None  # not watched in the background: no token kept
    for _ in range(60):
        await clock.advance(1.0)
        await run_tick(watcher, clock)
    assert sim.calls(HISTORY) == []  # nobody asked, so nobody polled

    body = await query(env, hid)  # the query asks the upstream now (the task finished meanwhile)
    assert body["status"] == 10 and len(body["results"]) == 4
    assert len(sim.calls(HISTORY)) == 1
    row = await env.client.app[STORE].get(hid)
    assert row is not None and row.status is TaskStatus.DONE  # terminal states are stored when seen
    assert await query(env, hid) == body  # ... and answered from the store from then on
    assert len(sim.calls(HISTORY)) == 1


async def test_task_with_callback_is_watched_in_the_background(
    make_client: Any, config: Config, sim: Simulator, clock: ManualClock
) -> None:
    env = await callbacks_env(make_client, config, sim, clock)
    hid = await submit(env, {"prompt": "a cat", "callback_url": "http://127.0.0.1:9/hook"})
    assert env.client.app[WATCHER].is_watching(hid)
    row = await env.client.app[STORE].get(hid)
    assert row is not None and row.token == CN_TOKEN  # needed to poll after a restart


async def test_concurrent_queries_of_one_account_share_one_upstream_call(
    make_client: Any, config: Config, sim: Simulator, clock: ManualClock
) -> None:
    env = await callbacks_env(make_client, config, sim, clock)
    ids = [await submit(env, {"prompt": f"cat {i} [sim:stuck]"}) for i in range(12)]
    gate = asyncio.Event()
    sim.inject(HISTORY, Fault(FaultKind.HOLD, hold=gate))  # the first call stays in flight until released
    first = asyncio.ensure_future(query(env, ids[0]))
    lookup, owner = env.client.app[QUERIES].lookup, parse_token(CN_TOKEN)
    async with asyncio.timeout(10):
        while sim.faults.rules:  # noqa: ASYNC110 - until the first query's call is held in the simulator
            await asyncio.sleep(0)
    rest = [asyncio.ensure_future(query(env, hid)) for hid in ids[1:]]
    async with asyncio.timeout(10):
        while lookup.waiting(owner) < len(rest):  # noqa: ASYNC110 - until every later query joined the next call
            await asyncio.sleep(0)
    gate.set()
    bodies = [await first, *[await r for r in rest]]
    assert [b["history_id"] for b in bodies] == ids and all(b["status"] == 20 for b in bodies)
    calls = sim.calls(HISTORY)
    assert [sorted(e.body["history_ids"]) for e in calls] == [[ids[0]], sorted(ids[1:])]


async def test_long_poll_watches_only_while_the_caller_waits(
    make_client: Any, config: Config, sim: Simulator, clock: ManualClock
) -> None:
    env = await callbacks_env(make_client, config, sim, clock)
    hid = await submit(env, {"prompt": "a patient cat"})
    (body,) = await drive(env.client.app, clock, query(env, hid, "?wait=30"))
    assert body["status"] == 10 and len(body["results"]) == 4
    assert not env.client.app[WATCHER].is_watching(hid)
    stuck = await submit(env, {"prompt": "a stuck cat [sim:stuck]"})
    (body,) = await drive(env.client.app, clock, query(env, stuck, "?wait=10"))
    assert body["status"] == 20
    assert not env.client.app[WATCHER].is_watching(stuck)  # the waiter left: no background polling
    calls = len(sim.calls(HISTORY))
    for _ in range(30):
        await clock.advance(1.0)
        await run_tick(env.client.app[WATCHER], clock)
    assert len(sim.calls(HISTORY)) == calls


async def test_restart_resumes_only_background_tasks(
    make_client: Any, config: Config, sim: Simulator, clock: ManualClock
) -> None:
    env = await callbacks_env(make_client, config, sim, clock)
    await submit(env, {"prompt": "plain"})
    hooked = await submit(env, {"prompt": "hooked", "callback_url": "http://127.0.0.1:9/hook"})
    await env.client.close()
    again = await callbacks_env(make_client, config, sim, clock)
    watcher = again.client.app[WATCHER]
    assert watcher.pending == 1 and watcher.is_watching(hooked)


async def test_done_with_no_items_fails_the_same_way_sync_and_async(
    client: TestClient[Any, Any], sim: Simulator, clock: ManualClock
) -> None:
    resp = await client.post(SUBMIT, json={"prompt": "nothing came [sim:empty]"}, headers=bearer(CN_TOKEN))
    hid = (await json_of(resp))["history_id"]
    sync = client.post("/v1/images/generations", json={"prompt": "nothing [sim:empty]"}, headers=bearer(CN_TOKEN))
    (sync_resp,) = await drive(client.app, clock, sync)
    sync_body = await json_of(sync_resp)
    resp = await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert (sync_resp.status, sync_body["error"]["code"]) == (502, "EMPTY_RESULT")
    assert (body["status"], body["results"], body["error"]["code"]) == (30, None, "EMPTY_RESULT")


async def test_content_failure_maps_the_same_way_sync_and_async(
    client: TestClient[Any, Any], sim: Simulator, clock: ManualClock
) -> None:
    resp = await client.post(SUBMIT, json={"prompt": "blocked [sim:fail]"}, headers=bearer(CN_TOKEN))
    hid = (await json_of(resp))["history_id"]
    sync = client.post("/v1/images/generations", json={"prompt": "blocked [sim:fail]"}, headers=bearer(CN_TOKEN))
    (sync_resp,) = await drive(client.app, clock, sync)
    sync_body = await json_of(sync_resp)
    body = await json_of(await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN)))
    assert (sync_resp.status, sync_body["error"]["code"]) == (422, "CONTENT_REJECTED")
    assert (body["status"], body["fail_code"], body["error"]["code"]) == (30, 2038, "CONTENT_REJECTED")


async def test_a_query_racing_the_watcher_answers_the_stored_outcome(
    make_client: Any, config: Config, sim: Simulator, clock: ManualClock
) -> None:
    """A query that read the task as running and asked the upstream while the watcher ended it answers what the
    store holds (the watcher's download-quality video URL), as the long poll and every later query do."""
    env = await callbacks_env(make_client, config, sim, clock)
    resp = await env.client.post(
        "/v1/async/videos/generations",
        json={"prompt": "a lion running", "model": "jimeng-video-3.0", "duration": 5},
        headers=bearer(CN_TOKEN),
    )
    assert resp.status == 200, await json_of(resp)
    hid = str((await json_of(resp))["history_id"])
    await clock.advance(300.0)  # the video is done upstream; nobody has looked yet
    gate = asyncio.Event()
    sim.inject(HISTORY, Fault(FaultKind.HOLD, hold=gate))  # the first query's upstream read stays in flight
    racing = asyncio.ensure_future(query(env, hid))
    async with asyncio.timeout(10):
        while sim.faults.rules:  # noqa: ASYNC110 - until the racing query's call is held in the simulator
            await asyncio.sleep(0)
    (waited,) = await drive(env.client.app, clock, query(env, hid, "?wait=30"))  # the watcher ends and stores it
    gate.set()
    raced = await racing  # its upstream read shows the preview URL; the task is already settled
    assert waited["status"] == 10 and "hq=1" in waited["results"][0]["url"]
    assert raced == waited == await query(env, hid)
