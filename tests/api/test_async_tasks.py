"""Async task API over real HTTP against the simulator: submit, query (owner routing, batches, long-poll)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, CN_TOKEN_2, US_TOKEN, bearer, drive, json_of

from jimeng_server.api.appkeys import RETENTION, STORE, WATCHER
from jimeng_server.clock import ManualClock
from jimeng_server.config import StoreConfig
from jimeng_server.simulator import Simulator
from jimeng_server.tasks.records import TaskStatus

SUBMIT = "/v1/async/images/generations"
MESSAGE = "任务已提交，请使用 history_id 查询任务状态"


async def submit(client: TestClient[Any, Any], body: dict[str, Any], *tokens: str) -> dict[str, Any]:
    resp = await client.post(SUBMIT, json=body, headers=bearer(*(tokens or (CN_TOKEN,))))
    data = await json_of(resp)
    assert resp.status == 200, data
    return dict(data)


async def get_task(client: TestClient[Any, Any], hid: str, *tokens: str, query: str = "") -> tuple[int, Any]:
    resp = await client.get(f"/v1/async/tasks/{hid}{query}", headers=bearer(*(tokens or (CN_TOKEN,))))
    return resp.status, await json_of(resp)


async def tick(app: web.Application, clock: ManualClock, seconds: float) -> None:
    """Let `seconds` of virtual time pass with the watcher ticking every second."""
    for _ in range(int(seconds)):
        await clock.advance(1.0)
        await app[WATCHER].run_once()


def polls(sim: Simulator, sessionid: str | None = None) -> int:
    return len([e for e in sim.calls("/get_history_by_ids") if sessionid is None or e.sessionid == sessionid])


async def test_submit_answers_at_once_records_and_spends_once(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    before = sim.account(CN_TOKEN).total
    body = await submit(client, {"prompt": "a cat", "model": "jimeng-4.5"})
    assert body == {
        "created": int(clock.time()),
        "history_id": body["history_id"],
        "status": "submitted",
        "message": MESSAGE,
    }
    hid = body["history_id"]
    assert list(sim.records) == [hid]
    assert sim.generate_count == 1 and len(sim.charges) == 1
    assert sim.account(CN_TOKEN).total == before - 4 * sim.settings.image_cost  # the default 4 images, billed per image
    assert polls(sim) == 0  # answered without waiting for the task
    row = await client.app[STORE].get(hid)
    assert row is not None and row.status is TaskStatus.PROCESSING and row.kind.value == "image"
    assert client.app[WATCHER].is_watching(hid)


async def test_query_shows_processing_then_done_with_results(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.image_step_seconds = 4.0  # 20(0) -> 20(1) -> 42(2) -> 45(4) -> 10(4), 4 s per step
    hid = (await submit(client, {"prompt": "slow cat"}))["history_id"]
    status, body = await get_task(client, hid)
    assert status == 200
    assert body == {
        "history_id": hid,
        "task_type": "image",
        "status": 20,
        "fail_code": 0,
        "item_count": 0,
        "results": None,
        "queue": None,
        "fail_message": None,
        "raw_data": None,
    }
    await tick(client.app, clock, 6)  # first poll at 5 s: step 1 (20, one item)
    status, body = await get_task(client, hid)
    assert (body["status"], body["item_count"], body["results"]) == (20, 1, None)
    assert body["raw_data"]["status"] == 20 and body["raw_data"]["history_record_id"] == hid
    await tick(client.app, clock, 15)
    status, body = await get_task(client, hid)
    assert status == 200 and body["status"] == 10 and body["item_count"] == 4
    assert len(body["results"]) == 4 and all(r["url"].startswith("http") for r in body["results"])
    assert body["raw_data"]["status"] == 10
    # Terminal: answered from the store, no upstream call; POST gives the same body.
    calls = polls(sim)
    resp = await client.post("/v1/async/tasks/query", json={"history_id": hid}, headers=bearer(CN_TOKEN))
    assert resp.status == 200 and await json_of(resp) == body
    assert polls(sim) == calls


async def test_status_50_is_reported_as_10(client: TestClient[Any, Any], clock: ManualClock) -> None:
    hid = (await submit(client, {"prompt": "fifty [sim:status50]"}))["history_id"]
    await tick(client.app, clock, 10)
    _, body = await get_task(client, hid)
    assert body["status"] == 10 and body["raw_data"]["status"] == 50 and len(body["results"]) == 4


async def test_failed_task_is_30_with_fail_code(client: TestClient[Any, Any], clock: ManualClock) -> None:
    hid = (await submit(client, {"prompt": "bad [sim:fail]"}))["history_id"]
    await tick(client.app, clock, 10)
    status, body = await get_task(client, hid)
    assert status == 200
    assert (body["status"], body["fail_code"], body["results"], body["item_count"]) == (30, 2038, None, 0)
    assert body["raw_data"]["status"] == 30


async def test_partial_failure_keeps_its_items(client: TestClient[Any, Any], clock: ManualClock) -> None:
    hid = (await submit(client, {"prompt": "half [sim:partial]"}))["history_id"]
    await tick(client.app, clock, 10)
    _, body = await get_task(client, hid)
    assert (body["status"], body["fail_code"], body["item_count"]) == (30, 1001, 1)
    assert len(body["results"]) == 1


async def test_owner_routing_with_two_tokens(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    hid = (await submit(client, {"prompt": "owned by the second"}, CN_TOKEN_2))["history_id"]
    await clock.advance(30)  # the watcher loop is stalled: a query must ask the upstream itself
    status, body = await get_task(client, hid, CN_TOKEN, CN_TOKEN_2)
    assert status == 200 and body["status"] == 10 and len(body["results"]) == 4
    (poll,) = sim.calls("/get_history_by_ids")
    assert poll.sessionid == CN_TOKEN_2 and poll.body["history_ids"] == [hid]
    # Now final in the store: answered without the upstream, whatever the token order.
    status, again = await get_task(client, hid, CN_TOKEN_2, CN_TOKEN)
    assert again == body and polls(sim) == 1


async def test_another_accounts_task_is_not_found_and_not_leaked(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    hid = (await submit(client, {"prompt": "secret prompt"}, CN_TOKEN))["history_id"]
    await tick(client.app, clock, 10)
    calls = len(sim.journal)
    for status, body in (
        await get_task(client, hid, CN_TOKEN_2),
        await get_task(client, hid, US_TOKEN),
    ):
        assert status == 404
        assert body["error"]["code"] == "TASK_NOT_FOUND" and body["error"]["type"] == "invalid_request_error"
        assert "history_id" in body["error"]["message"] and "token" in body["error"]["message"]
        assert "raw_data" not in body and "secret" not in str(body)
    assert len(sim.journal) == calls  # not even an upstream look-up on the owner's behalf


async def test_unknown_id_is_tried_with_each_token_in_turn(
    client: TestClient[Any, Any], make_client: Any, config: Any, clock: ManualClock, sim: Simulator, tmp_path: Path
) -> None:
    # A task made elsewhere (another server with its own store) by the second account.
    other = await make_client(store=StoreConfig(path=str(tmp_path / "other.db")))
    hid = (await submit(other, {"prompt": "made elsewhere"}, CN_TOKEN_2))["history_id"]
    status, body = await get_task(client, hid, CN_TOKEN, CN_TOKEN_2)
    assert status == 200 and body["task_type"] == "unknown" and body["status"] == 20  # no items yet
    first, second = sim.calls("/get_history_by_ids")
    assert (first.sessionid, second.sessionid) == (CN_TOKEN, CN_TOKEN_2)
    await clock.advance(10)
    status, body = await get_task(client, hid, CN_TOKEN_2)
    assert body["task_type"] == "image" and body["status"] == 10 and len(body["results"]) == 4
    assert await client.app[STORE].get(hid) is None  # not adopted
    assert not client.app[WATCHER].is_watching(hid)
    status, body = await get_task(client, "7000000000001", CN_TOKEN, CN_TOKEN_2)
    assert status == 404 and body["error"]["code"] == "TASK_NOT_FOUND"


async def test_sync_tasks_are_recorded_and_queryable(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    (resp,) = await drive(
        client.app, clock, client.post("/v1/images/generations", json={"prompt": "sync"}, headers=bearer(CN_TOKEN))
    )
    assert resp.status == 200
    urls = [d["url"] for d in (await json_of(resp))["data"]]
    (hid,) = sim.records
    calls = polls(sim)
    _, body = await get_task(client, hid)
    assert body["status"] == 10 and [r["url"] for r in body["results"]] == urls
    assert polls(sim) == calls


async def test_task_past_its_deadline_is_still_processing_until_settled(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    hid = (await submit(client, {"prompt": "forever [sim:stuck]"}))["history_id"]
    await tick(client.app, clock, 905)  # past the 900 s image deadline: still watched, less often
    assert client.app[WATCHER].is_watching(hid)
    status, body = await get_task(client, hid)
    assert status == 200 and body["status"] == 20 and body["item_count"] == 1 and "error" not in body
    await clock.advance(client.app[WATCHER].config.settle_after)
    await client.app[WATCHER].run_once()
    assert not client.app[WATCHER].is_watching(hid)
    calls = polls(sim, CN_TOKEN)
    status, body = await get_task(client, hid)  # settled: answered from the store, never contradicted
    assert status == 200 and body["status"] == 30 and body["error"]["code"] == "TIMEOUT"
    assert body["results"] is None and polls(sim, CN_TOKEN) == calls


async def test_batch_query_one_upstream_call_per_account(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    ids = []
    for i in range(50):
        token = CN_TOKEN if i % 2 else CN_TOKEN_2
        ids.append((await submit(client, {"prompt": f"batch {i}"}, token))["history_id"])
    await clock.advance(30)  # stalled watcher: every task needs the upstream
    before = sim.calls("/get_history_by_ids")
    resp = await client.post("/v1/async/tasks/query", json={"history_ids": ids}, headers=bearer(CN_TOKEN, CN_TOKEN_2))
    answer = await json_of(resp)
    assert resp.status == 200
    assert [b["history_id"] for b in answer["data"]] == ids and answer["not_found"] == []
    assert all(b["status"] == 10 and len(b["results"]) == 4 for b in answer["data"])
    made = sim.calls("/get_history_by_ids")[len(before) :]
    assert sorted(e.sessionid or "" for e in made) == sorted([CN_TOKEN, CN_TOKEN_2])  # one call per owner
    assert all(len(e.body["history_ids"]) == 25 for e in made)
    # All final now: the same batch needs no upstream call at all.
    resp = await client.post("/v1/async/tasks/query", json={"history_ids": ids}, headers=bearer(CN_TOKEN, CN_TOKEN_2))
    assert len((await json_of(resp))["data"]) == 50
    assert len(sim.calls("/get_history_by_ids")) == len(before) + len(made)
    # Only the caller's own tasks: the other account's are "not found"; an unknown id is probed upstream.
    calls = len(sim.calls("/get_history_by_ids"))
    resp = await client.post(
        "/v1/async/tasks/query", json={"history_ids": [*ids[:4], "7000000000001"]}, headers=bearer(CN_TOKEN)
    )
    answer = await json_of(resp)
    assert [b["history_id"] for b in answer["data"]] == [ids[1], ids[3]]
    assert answer["not_found"] == [ids[0], ids[2], "7000000000001"]
    (probe,) = sim.calls("/get_history_by_ids")[calls:]
    assert probe.sessionid == CN_TOKEN and probe.body["history_ids"] == ["7000000000001"]


async def test_long_poll_answers_when_final_without_extra_calls(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    hid = (await submit(client, {"prompt": "wait for me"}))["history_id"]
    start = clock.time()
    (resp,) = await drive(client.app, clock, client.get(f"/v1/async/tasks/{hid}?wait=60", headers=bearer(CN_TOKEN)))
    body = await json_of(resp)
    assert resp.status == 200 and body["status"] == 10
    assert clock.time() - start < 10  # answered at the final poll, not after 60 s
    calls = sim.calls("/get_history_by_ids")
    assert len({e.time for e in calls}) == len(calls)  # one call per poll: the answer came without asking again


async def test_long_poll_times_out_with_processing(client: TestClient[Any, Any], clock: ManualClock) -> None:
    hid = (await submit(client, {"prompt": "slow [sim:stuck0]"}))["history_id"]
    start = clock.time()
    (resp,) = await drive(client.app, clock, client.get(f"/v1/async/tasks/{hid}?wait=7", headers=bearer(CN_TOKEN)))
    assert resp.status == 200 and (await json_of(resp))["status"] == 20
    assert 7 <= clock.time() - start < 60


@pytest.mark.parametrize("wait", ["61", "-1", "soon", "nan"])
async def test_bad_wait_is_400(client: TestClient[Any, Any], wait: str) -> None:
    status, body = await get_task(client, "8000000000001", query=f"?wait={wait}")
    assert status == 400 and body["error"]["code"] == "INVALID_PARAMETER" and "wait" in body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({}, "MISSING_PARAMETER", "history_id"),
        ({"history_id": "1", "history_ids": ["2"]}, "INVALID_PARAMETER", "both"),
        ({"history_id": ""}, "INVALID_PARAMETER", "history_id"),
        ({"history_id": ["1"]}, "INVALID_PARAMETER", "history_id"),
        ({"history_ids": []}, "INVALID_PARAMETER", "history_ids"),
        ({"history_ids": "123"}, "INVALID_PARAMETER", "history_ids"),
        ({"history_ids": [str(i) for i in range(51)]}, "INVALID_PARAMETER", "50"),
        ({"history_ids": ["1", None]}, "INVALID_PARAMETER", "history_ids[1]"),
    ],
)
async def test_bad_query_is_400(client: TestClient[Any, Any], body: dict[str, Any], code: str, needle: str) -> None:
    resp = await client.post("/v1/async/tasks/query", json=body, headers=bearer(CN_TOKEN))
    data = await json_of(resp)
    assert resp.status == 400 and data["error"]["code"] == code and needle in data["error"]["message"]


async def test_numeric_history_id_is_accepted(client: TestClient[Any, Any], clock: ManualClock) -> None:
    hid = (await submit(client, {"prompt": "numbers"}))["history_id"]
    resp = await client.post("/v1/async/tasks/query", json={"history_id": int(hid)}, headers=bearer(CN_TOKEN))
    assert resp.status == 200 and (await json_of(resp))["history_id"] == hid


async def test_async_submit_validates_like_sync(client: TestClient[Any, Any], sim: Simulator) -> None:
    for body, code in (
        ({"prompt": "x", "size": "large"}, "INVALID_PARAMETER"),
        ({"prompt": "x", "model": "midjourney-v6"}, "UNKNOWN_MODEL"),
        ({}, "MISSING_PARAMETER"),
    ):
        resp = await client.post(SUBMIT, json=body, headers=bearer(CN_TOKEN))
        assert resp.status == 400 and (await json_of(resp))["error"]["code"] == code
    resp = await client.post(SUBMIT, json={"prompt": "x"})
    assert resp.status == 401
    assert sim.generate_count == 0


async def test_async_submit_upstream_refusal(client: TestClient[Any, Any], sim: Simulator) -> None:
    resp = await client.post(SUBMIT, json={"prompt": "no [sim:refuse]"}, headers=bearer(CN_TOKEN))
    assert resp.status == 422 and (await json_of(resp))["error"]["code"] == "CONTENT_REJECTED"
    sim.expire_session(CN_TOKEN)
    resp = await client.post(SUBMIT, json={"prompt": "x"}, headers=bearer(CN_TOKEN))
    assert resp.status == 401 and (await json_of(resp))["error"]["code"] == "TOKEN_EXPIRED"


async def test_purge_drops_expired_tasks(client: TestClient[Any, Any], clock: ManualClock, config: Any) -> None:
    hid = (await submit(client, {"prompt": "old"}))["history_id"]
    await tick(client.app, clock, 10)
    retention = client.app[RETENTION]
    assert (await retention.purge())[0] == 0
    await clock.advance(config.store.retention_days * 86400 + 1)
    assert (await retention.purge())[0] == 1
    assert await client.app[STORE].get(hid) is None


def test_retention_config_is_used(config: Any) -> None:
    assert dataclasses.replace(config.store, retention_days=1.0).retention_days == 1.0


async def test_tasks_submitted_apart_share_one_poll(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    first = (await submit(client, {"prompt": "one [sim:stuck0]"}))["history_id"]
    await tick(client.app, clock, 2)
    second = (await submit(client, {"prompt": "two [sim:stuck0]"}))["history_id"]
    await tick(client.app, clock, 30)
    calls = sim.calls("/get_history_by_ids")
    assert all(set(e.body["history_ids"]) == {first, second} for e in calls[2:])
    assert len(calls) <= 2 + 30 // 4  # about one call per interval once aligned, not one per task
