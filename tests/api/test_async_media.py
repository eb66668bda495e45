"""Async image-to-image and video submits over real HTTP: same fields as the sync twins, answered at once."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, bearer, json_of

from jimeng_server.api.appkeys import WATCHER
from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.media import png

MESSAGE = "任务已提交，请使用 history_id 查询任务状态"
PNG = png(40, 30, (200, 10, 10))


async def tick(client: TestClient[Any, Any], clock: ManualClock, seconds: int) -> None:
    for _ in range(seconds):
        await clock.advance(1.0)
        await client.app[WATCHER].run_once()


async def test_async_composition_multipart(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    form = aiohttp.FormData()
    form.add_field("prompt", "a cat, anime style")
    form.add_field("model", "jimeng-4.5")
    form.add_field("images", PNG, filename="cat.png", content_type="image/png")
    form.add_field("images", png(5, 7, (0, 0, 0)), filename="b.png", content_type="image/png")
    resp = await client.post("/v1/async/images/compositions", data=form, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 200, body
    assert body == {
        "created": int(clock.time()),
        "history_id": body["history_id"],
        "input_images": 2,
        "status": "submitted",
        "message": MESSAGE,
    }
    assert list(sim.records) == [body["history_id"]] and len(sim.charges) == 1
    await tick(client, clock, 10)
    resp = await client.get(f"/v1/async/tasks/{body['history_id']}", headers=bearer(CN_TOKEN))
    task = await json_of(resp)
    assert task["task_type"] == "image" and task["status"] == 10 and task["results"]


async def test_async_composition_json_data_uri_validates_like_sync(
    client: TestClient[Any, Any], sim: Simulator
) -> None:
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    resp = await client.post(
        "/v1/async/images/compositions", json={"prompt": "x", "images": [uri]}, headers=bearer(CN_TOKEN)
    )
    assert resp.status == 200 and (await json_of(resp))["input_images"] == 1
    resp = await client.post("/v1/async/images/compositions", json={"prompt": "x"}, headers=bearer(CN_TOKEN))
    assert resp.status == 400
    assert sim.generate_count == 1


async def test_async_video(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    resp = await client.post(
        "/v1/async/videos/generations",
        json={"prompt": "a lion running", "model": "jimeng-video-3.0", "ratio": "16:9", "duration": 10},
        headers=bearer(CN_TOKEN),
    )
    body = await json_of(resp)
    assert resp.status == 200, body
    assert set(body) == {"created", "history_id", "status", "message"} and body["message"] == MESSAGE
    hid = body["history_id"]
    resp = await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN))
    assert (await json_of(resp))["task_type"] == "video"
    await tick(client, clock, 60)
    resp = await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN))
    task = await json_of(resp)
    assert task["status"] == 10 and task["task_type"] == "video"
    (result,) = task["results"]
    assert "hq=1" in result["url"]  # the watcher's download-quality URL is what is stored
    resp = await client.post(
        "/v1/async/videos/generations", json={"prompt": "x", "duration": "ten"}, headers=bearer(CN_TOKEN)
    )
    assert resp.status == 400
    assert sim.generate_count == 1
