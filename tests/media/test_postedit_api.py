"""Post-edit endpoints over real HTTP against the simulator: upscale, outpaint, repair and interpolation, sync
and async, with ownership, the task's own account, idempotency and what reached the upstream."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections import Counter
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pool_support import ADMIN_KEY, POOL_SESSIONS, add_accounts, create_key, key_auth, seed_sim
from standardwebhooks.webhooks import Webhook
from support import CN_TOKEN, CN_TOKEN_2, US_TOKEN, bearer, drive, json_of
from webhook_support import SECRET, Receiver

from jimeng_server.api.appkeys import WATCHER, WEBHOOKS
from jimeng_server.clock import ManualClock
from jimeng_server.config import AdminConfig, Config, WebhookConfig
from jimeng_server.mp4 import movie_facts
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.media import png

pytestmark = pytest.mark.wall_clock  # webhook signatures are checked against the wall clock

PNG = png(64, 48, (10, 200, 10))
DATA_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


async def tick(client: TestClient[Any, Any], clock: ManualClock, seconds: int) -> None:
    for _ in range(seconds):
        await clock.advance(1.0)
        await client.app[WATCHER].run_once()


async def submit(client: TestClient[Any, Any], path: str, body: Any, token: str = CN_TOKEN, **headers: str) -> Any:
    resp = await client.post(path, json=body, headers={**bearer(token), **headers})
    data = await json_of(resp)
    assert resp.status == 200, data
    return data


async def finished_image(client: TestClient[Any, Any], clock: ManualClock, token: str = CN_TOKEN) -> str:
    body = await submit(client, "/v1/async/images/generations", {"prompt": "a red fox", "n": 2}, token)
    await tick(client, clock, 10)
    task = await json_of(await client.get(f"/v1/async/tasks/{body['history_id']}", headers=bearer(token)))
    assert task["status"] == 10, task
    return str(body["history_id"])


async def sync_post(
    client: TestClient[Any, Any], clock: ManualClock, path: str, body: Any, token: str = CN_TOKEN
) -> tuple[int, Any]:
    (resp,) = await drive(client.app, clock, client.post(path, json=body, headers=bearer(token)))
    return resp.status, await json_of(resp)


def last_draft(sim: Simulator) -> dict[str, Any]:
    body = sim.calls("/aigc_draft/generate")[-1].body
    draft: dict[str, Any] = json.loads(body["draft_content"])
    return draft


async def test_sync_upscale_of_an_own_result_names_the_item(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    parent = await finished_image(client, clock)
    before = sim.account(CN_TOKEN).total
    status, body = await sync_post(client, clock, "/v1/images/upscale", {"history_id": parent, "index": 1})
    assert status == 200, body
    assert len(body["data"]) == 1 and body["data"][0]["url"].startswith("http")
    component = last_draft(sim)["component_list"][0]
    assert component["generate_type"] == "normal_hd" and component["gen_type"] == 13
    param = component["abilities"]["normal_hd"]["postedit_param"]
    assert str(param["origin_history_id"]) == parent and str(param["item_id"]) == f"{parent}01"
    assert "origin_image" not in param
    record = sim.records[list(sim.records)[-1]]
    assert (record.width, record.height) == (4096, 4096)  # 2048² doubled
    assert sim.account(CN_TOKEN).total == before  # normal_hd is free
    async with client.session.get(body["data"][0]["url"]) as resp:
        assert resp.status == 200


async def test_sync_pro_upscale_of_an_uploaded_image(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    before = sim.account(CN_TOKEN).total
    status, body = await sync_post(client, clock, "/v1/images/upscale", {"image": DATA_URI, "mode": "pro"})
    assert status == 200, body
    param = last_draft(sim)["component_list"][0]["abilities"]["pro_hd"]["postedit_param"]
    assert param["generate_type"] == 35 and param["origin_image"]["image_uri"]
    assert sim.uploads.committed_by(param["origin_image"]["image_uri"], CN_TOKEN)
    record = sim.records[list(sim.records)[-1]]
    assert max(record.width, record.height) == 2160
    assert sim.account(CN_TOKEN).total == before - 1


async def test_another_callers_task_is_404_and_nothing_is_sent(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    parent = await finished_image(client, clock)
    generates = len(sim.calls("/aigc_draft/generate"))
    for path in ("/v1/images/upscale", "/v1/async/images/repair", "/v1/async/images/outpaint"):
        resp = await client.post(path, json={"history_id": parent, "ratio": "16:9"}, headers=bearer(CN_TOKEN_2))
        body = await json_of(resp)
        assert resp.status == 404, body
        assert body["error"]["code"] == "TASK_NOT_FOUND"
    assert len(sim.calls("/aigc_draft/generate")) == generates


async def test_repair_refuses_an_uploaded_image_and_runs_on_the_tasks_account(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    resp = await client.post("/v1/async/images/repair", json={"image": DATA_URI}, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 400 and "history_id" in body["error"]["message"]
    parent = await finished_image(client, clock, CN_TOKEN_2)
    # Both tokens in the header, the task's account second: the repair still runs on it.
    resp = await client.post(
        "/v1/async/images/repair", json={"history_id": parent}, headers=bearer(CN_TOKEN, CN_TOKEN_2)
    )
    body = await json_of(resp)
    assert resp.status == 200, body
    assert sim.calls("/aigc_draft/generate")[-1].sessionid == CN_TOKEN_2
    await tick(client, clock, 10)
    task = await json_of(await client.get(f"/v1/async/tasks/{body['history_id']}", headers=bearer(CN_TOKEN_2)))
    assert task["status"] == 10 and len(task["results"]) == 1


async def test_outpaint_to_a_ratio_makes_four_and_n(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    parent = await finished_image(client, clock)
    status, body = await sync_post(client, clock, "/v1/images/outpaint", {"history_id": parent, "ratio": "16:9"})
    assert status == 200, body
    assert len(body["data"]) == 4
    up = last_draft(sim)["component_list"][0]["abilities"]["painting"]["up_scale"]
    assert up["top"] == up["bottom"] == 0 and up["left"] == up["right"] > 0.38
    assert up["image_ratio"] == 3
    status, body = await sync_post(client, clock, "/v1/images/outpaint", {"image": DATA_URI, "left": 0.5, "n": 2})
    assert status == 200, body
    assert len(body["data"]) == 2


async def test_bad_requests_are_clear_400s_before_anything_is_spent(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    parent = await finished_image(client, clock)
    generates = len(sim.calls("/aigc_draft/generate"))
    cases = [
        ("/v1/images/upscale", {}, "MISSING_PARAMETER"),
        ("/v1/images/upscale", {"history_id": parent, "image": DATA_URI}, "INVALID_PARAMETER"),
        ("/v1/images/upscale", {"history_id": parent, "mode": "ultra"}, "INVALID_PARAMETER"),
        ("/v1/images/upscale", {"history_id": parent, "index": 7}, "INVALID_PARAMETER"),
        ("/v1/images/upscale", {"history_id": parent, "index": -1}, "INVALID_PARAMETER"),
        ("/v1/images/outpaint", {"history_id": parent}, "MISSING_PARAMETER"),
        ("/v1/images/outpaint", {"history_id": parent, "ratio": "1:1"}, "INVALID_PARAMETER"),
        ("/v1/images/outpaint", {"history_id": parent, "ratio": "5:4"}, "INVALID_PARAMETER"),
        ("/v1/images/outpaint", {"history_id": parent, "top": 9}, "INVALID_PARAMETER"),
        ("/v1/images/outpaint", {"history_id": parent, "left": 0.5, "n": 5}, "INVALID_PARAMETER"),
        ("/v1/videos/interpolate", {"history_id": parent}, "INVALID_PARAMETER"),
        ("/v1/videos/interpolate", {"history_id": parent, "fps": 30}, "INVALID_PARAMETER"),
    ]
    for path, payload, code in cases:
        resp = await client.post(path, json=payload, headers=bearer(CN_TOKEN))
        body = await json_of(resp)
        assert resp.status == 400, (path, payload, body)
        assert body["error"]["code"] == code, (path, payload, body)
        assert body["error"]["message"]
    assert len(sim.calls("/aigc_draft/generate")) == generates


async def test_region_without_the_tool_is_a_400(client: TestClient[Any, Any], sim: Simulator) -> None:
    resp = await client.post("/v1/images/upscale", json={"image": DATA_URI}, headers=bearer(US_TOKEN))
    body = await json_of(resp)
    assert resp.status == 400 and body["error"]["code"] == "UNSUPPORTED_TOOL"
    assert "cn" in body["error"]["message"]
    assert not sim.calls("/aigc_draft/generate")


async def test_async_upscale_is_idempotent(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    parent = await finished_image(client, clock)
    payload = {"history_id": parent}
    first = await submit(client, "/v1/async/images/upscale", payload, **{"Idempotency-Key": "up-1"})
    again = await submit(client, "/v1/async/images/upscale", payload, **{"Idempotency-Key": "up-1"})
    assert first == again and first["status"] == "submitted"
    assert len([c for c in sim.calls("/aigc_draft/generate") if c.status == 200]) == 2  # parent + one upscale
    resp = await client.post(
        "/v1/async/images/upscale",
        json={**payload, "mode": "pro"},
        headers={**bearer(CN_TOKEN), "Idempotency-Key": "up-1"},
    )
    assert resp.status == 422


async def test_interpolation_of_an_own_video(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    video = await submit(
        client, "/v1/async/videos/generations", {"prompt": "waves", "model": "jimeng-video-3.0", "duration": 5}
    )
    await tick(client, clock, 30)
    task = await json_of(await client.get(f"/v1/async/tasks/{video['history_id']}", headers=bearer(CN_TOKEN)))
    assert task["status"] == 10, task
    before = sim.account(CN_TOKEN).total
    body = await submit(client, "/v1/async/videos/interpolate", {"history_id": video["history_id"], "fps": 60})
    gen = last_draft(sim)["component_list"][0]["abilities"]["gen_video"]
    assert gen["scene"] == "insert_frame"
    assert gen["video_ref_params"]["origin_history_id"] == int(video["history_id"])
    assert gen["text_to_video_params"]["video_gen_inputs"][0]["v2v_opt"]["insert_frame"]["target_fps"] == 60
    await tick(client, clock, 30)
    task = await json_of(await client.get(f"/v1/async/tasks/{body['history_id']}", headers=bearer(CN_TOKEN)))
    assert task["status"] == 10 and task["task_type"] == "video", task
    assert sim.records[body["history_id"]].extra["fps"] == 60
    assert sim.account(CN_TOKEN).total == before
    # The sync twin answers with the new clip's URL.
    status, answer = await sync_post(client, clock, "/v1/videos/interpolate", {"history_id": video["history_id"]})
    assert status == 200, answer
    # What the caller downloads: the source clip at 24 fps, the interpolated one at 60 (MP4 metadata).
    rates = []
    for url in (task["results"][0]["url"], answer["data"][0]["url"]):
        async with client.session.get(url) as resp:
            assert resp.status == 200
            facts = movie_facts(io.BytesIO(await resp.read()))
        assert facts is not None
        rates.append(facts.fps)
    source = await json_of(await client.get(f"/v1/async/tasks/{video['history_id']}", headers=bearer(CN_TOKEN)))
    async with client.session.get(source["results"][0]["url"]) as resp:
        source_facts = movie_facts(io.BytesIO(await resp.read()))
    assert source_facts is not None and source_facts.fps == 24
    assert rates == [60, 60]


# ------------------------------------------------------------------------------------------ pool, keys, webhooks

POOL_HOOKS = WebhookConfig(secret=SECRET, jitter=0.0)


@pytest.fixture
async def pool_client(make_client: Any, sim: Simulator, config: Config, store_url: str) -> TestClient[Any, Any]:
    seed_sim(sim)
    client: TestClient[Any, Any] = await make_client(
        admin=AdminConfig(key=ADMIN_KEY),
        webhooks=POOL_HOOKS,
        store=dataclasses.replace(config.store, url=store_url),
    )
    await add_accounts(client)
    return client


async def test_pooled_post_edit_runs_on_the_parents_account_and_signals_its_webhook(
    pool_client: TestClient[Any, Any],
    clock: ManualClock,
    sim: Simulator,
    receiver: tuple[Receiver, TestServer],
) -> None:
    rec, server = receiver
    alice, bob = await create_key(pool_client, "alice"), await create_key(pool_client, "bob")
    resp = await pool_client.post("/v1/async/images/generations", json={"prompt": "a fox"}, headers=key_auth(alice))
    parent = (await json_of(resp))["history_id"]
    parent_session = sim.records[parent].sessionid
    for _ in range(15):
        await clock.advance(1.0)
        await pool_client.app[WATCHER].run_once()
    # Tasks that never finish, until the parent's account is busier than another: the pool would pick that one.
    for i in range(10):
        resp = await pool_client.post(
            "/v1/async/images/generations", json={"prompt": f"x{i} [sim:stuck]"}, headers=key_auth(alice)
        )
        assert resp.status == 200
        busy = Counter(r.sessionid for r in sim.records.values() if "[sim:stuck]" in r.prompt)
        if busy[parent_session] > min(busy[s] for s in POOL_SESSIONS.values()):
            break
    else:
        raise AssertionError("the parent's account never became the busiest")
    resp = await pool_client.post("/v1/async/images/upscale", json={"history_id": parent}, headers=key_auth(bob))
    assert resp.status == 404  # another key's task
    before = await json_of(await pool_client.get(f"/v1/async/tasks/{parent}", headers=key_auth(alice)))
    assert before["status"] == 10 and "post_edits" not in before and "parent_history_id" not in before
    hook = str(server.make_url("/hooks/up"))
    resp = await pool_client.post(
        "/v1/async/images/upscale", json={"history_id": parent, "callback_url": hook}, headers=key_auth(alice)
    )
    body = await json_of(resp)
    assert resp.status == 200, body
    assert sim.calls("/aigc_draft/generate")[-1].sessionid == parent_session
    for _ in range(15):
        await clock.advance(1.0)
        await pool_client.app[WATCHER].run_once()
    assert await pool_client.app[WEBHOOKS].drain() == 1
    (got,) = rec.on("/hooks/up")
    event = Webhook(SECRET).verify(got.body, got.headers)
    task = await json_of(await pool_client.get(f"/v1/async/tasks/{body['history_id']}", headers=key_auth(alice)))
    assert event["type"] == "task.succeeded"
    assert event["data"] == {k: v for k, v in task.items() if k != "raw_data"}
    assert len(task["results"]) == 1
    # The link both ways: the post-edit names its source (query and webhook), the source lists its post-edits.
    assert task["parent_history_id"] == parent
    after = await json_of(await pool_client.get(f"/v1/async/tasks/{parent}", headers=key_auth(alice)))
    assert after == {**before, "post_edits": [body["history_id"]]}
    resp = await pool_client.post("/v1/async/tasks/query", json={"history_ids": [parent]}, headers=key_auth(alice))
    assert (await json_of(resp))["data"] == [after]


async def test_multipart_file_and_form_fields(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    form = aiohttp.FormData()
    form.add_field("image", PNG, filename="photo.png", content_type="image/png")
    form.add_field("ratio", "16:9")
    form.add_field("n", "2")
    resp = await client.post("/v1/async/images/outpaint", data=form, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 200, body
    assert body["input_images"] == 1 and body["status"] == "submitted"
    ability = last_draft(sim)["component_list"][0]["abilities"]
    assert ability["gen_option"]["gen_count"] == 2
    up = ability["painting"]["up_scale"]
    assert up["left"] == up["right"] == pytest.approx((16 / 9 * 48 / 64 - 1) / 2, abs=1e-3)  # 64x48 source
    await tick(client, clock, 10)
    task = await json_of(await client.get(f"/v1/async/tasks/{body['history_id']}", headers=bearer(CN_TOKEN)))
    assert task["status"] == 10 and len(task["results"]) == 2 and "parent_history_id" not in task


async def test_hostile_and_premature_requests(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    running = await submit(client, "/v1/async/images/generations", {"prompt": "slow [sim:stuck]"})
    resp = await client.post("/v1/images/upscale", json={"history_id": running["history_id"]}, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 409 and body["error"]["code"] == "TASK_NOT_FINISHED", body
    generates = len(sim.calls("/aigc_draft/generate"))
    cases: list[tuple[str, Any]] = [
        ("/v1/images/upscale", {"image": "data:image/png;base64,bm90IGFuIGltYWdl"}),
        ("/v1/images/upscale", {"history_id": running["history_id"], "callback_url": "http://127.0.0.1:9/x"}),
        ("/v1/images/upscale", {"history_id": ["x"]}),
        ("/v1/images/upscale", {"history_id": "a b"}),
        ("/v1/images/upscale", {"history_id": "1", "index": "abc"}),
        ("/v1/images/upscale", {"history_id": "1", "index": True}),
        ("/v1/images/outpaint", {"history_id": "1", "left": "wide"}),
        ("/v1/images/outpaint", {"history_id": "1", "left": 0.5, "n": "many"}),
        ("/v1/images/outpaint", {"history_id": "1", "ratio": 16}),
        ("/v1/videos/interpolate", {"history_id": "1", "response_format": "b64_json"}),
        ("/v1/async/videos/interpolate", {"image": DATA_URI}),
        ("/v1/images/repair", [1, 2]),
    ]
    for path, payload in cases:
        resp = await client.post(path, json=payload, headers=bearer(CN_TOKEN))
        body = await json_of(resp)
        assert 400 <= resp.status < 500, (path, payload, body)
        assert set(body["error"]) == {"message", "type", "code"}, body
    resp = await client.post(
        "/v1/images/upscale", data=b"{not json", headers={**bearer(CN_TOKEN), "Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert len(sim.calls("/aigc_draft/generate")) == generates


async def test_sync_upscale_answers_base64(client: TestClient[Any, Any], clock: ManualClock) -> None:
    status, body = await sync_post(
        client, clock, "/v1/images/upscale", {"image": DATA_URI, "response_format": "b64_json"}
    )
    assert status == 200, body
    (item,) = body["data"]
    assert base64.b64decode(item["b64_json"])[:8] == b"\x89PNG\r\n\x1a\n"


async def test_sync_repair_keeps_the_size(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    parent = await finished_image(client, clock)
    status, body = await sync_post(client, clock, "/v1/images/repair", {"history_id": parent, "index": 0})
    assert status == 200, body
    assert len(body["data"]) == 1
    record = sim.records[list(sim.records)[-1]]
    assert (record.width, record.height) == (2048, 2048)
    assert last_draft(sim)["component_list"][0]["abilities"]["super_resolution"]["core_param"]["generate_type"] == 0


async def finished_video(client: TestClient[Any, Any], clock: ManualClock) -> str:
    video = await submit(
        client, "/v1/async/videos/generations", {"prompt": "waves", "model": "jimeng-video-3.0", "duration": 5}
    )
    await tick(client, clock, 30)
    return str(video["history_id"])


async def test_interpolation_is_idempotent_and_signals_its_webhook(
    make_client: Any, clock: ManualClock, sim: Simulator, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    client: TestClient[Any, Any] = await make_client(webhooks=POOL_HOOKS)
    parent = await finished_video(client, clock)
    headers = {**bearer(CN_TOKEN), "Idempotency-Key": "vfi-1"}
    answers = []
    for _ in range(2):
        (resp,) = await drive(
            client.app, clock, client.post("/v1/videos/interpolate", json={"history_id": parent}, headers=headers)
        )
        answers.append(resp)
    first, again = answers
    assert first.status == again.status == 200
    assert await json_of(first) == await json_of(again)
    interpolations = [
        c
        for c in sim.calls("/aigc_draft/generate")
        if c.status == 200 and c.body["extend"]["root_model"] == "dreamina_seedance_40_mini"
    ]
    assert len(interpolations) == 1
    hook = str(server.make_url("/hooks/vfi"))
    body = await submit(client, "/v1/async/videos/interpolate", {"history_id": parent, "callback_url": hook})
    await tick(client, clock, 30)
    assert await client.app[WEBHOOKS].drain() == 1
    (got,) = rec.on("/hooks/vfi")
    event = Webhook(SECRET).verify(got.body, got.headers)
    task = await json_of(await client.get(f"/v1/async/tasks/{body['history_id']}", headers=bearer(CN_TOKEN)))
    assert event["data"] == {k: v for k, v in task.items() if k != "raw_data"}
    assert event["data"]["parent_history_id"] == parent and event["data"]["task_type"] == "video"
