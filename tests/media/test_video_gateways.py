"""The video shapes gateways speak, over real HTTP against the simulator: OpenAI Videos with the `openai`
package's `videos` resource, new-api's unified `/v1/video/generations` with plain HTTP. Both are our async
video tasks: the same ids as `/v1/async/tasks/{id}` and the same results."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, CN_TOKEN_2, bearer, drive, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.media import png

# The `openai` package warns that OpenAI's own Sora API shuts down; gateways keep speaking its shape.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")


@pytest.fixture
async def sdk(client: TestClient[Any, Any]) -> AsyncIterator[openai.AsyncOpenAI]:
    http = openai.DefaultAsyncHttpxClient(trust_env=False)
    sdk = openai.AsyncOpenAI(api_key=CN_TOKEN, base_url=str(client.make_url("/v1")), max_retries=0, http_client=http)
    yield sdk
    await sdk.close()


def sent(sim: Simulator) -> tuple[str, dict[str, Any], str]:
    """(model key, the one video input, ratio) of the one generate call."""
    (gen,) = sim.calls("/aigc_draft/generate")
    draft = json.loads(gen.body["draft_content"])
    params = draft["component_list"][0]["abilities"]["gen_video"]["text_to_video_params"]
    (first,) = params["video_gen_inputs"]
    return params["model_req_key"], first, params["video_aspect_ratio"]


async def task_of(client: TestClient[Any, Any], history_id: str) -> Any:
    resp = await client.get(f"/v1/async/tasks/{history_id}?wait=60", headers=bearer(CN_TOKEN))
    assert resp.status == 200
    return await json_of(resp)


async def test_openai_videos_create_retrieve_download_list(
    sdk: openai.AsyncOpenAI, client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    video = await sdk.videos.create(model="sora-2", prompt="waves at dusk", seconds="8", size="1280x720")
    assert video.object == "video" and video.status == "queued" and video.progress == 0
    assert (video.seconds, video.size, video.model) == ("8", "1280x720", "sora-2")
    key, first, ratio = sent(sim)  # 8 s -> the nearest of 5/10/12; 1280x720 -> 16:9
    assert (key, first["duration_ms"], ratio) == ("dreamina_ic_generate_video_model_vgfm_3.5_pro", 10000, "16:9")
    running = await sdk.videos.retrieve(video.id)
    assert running.status in ("queued", "in_progress") and running.id == video.id
    with pytest.raises(openai.ConflictError) as early:
        await sdk.videos.download_content(video.id)
    assert early.value.code == "VIDEO_NOT_READY"
    (task,) = await drive(client.app, clock, task_of(client, video.id))
    done = await sdk.videos.retrieve(video.id)
    assert done.status == "completed" and done.progress == 100 and done.error is None
    assert (done.model_extra or {})["url"] == task["results"][0]["url"]
    content = await sdk.videos.download_content(video.id)
    async with client.session.get(task["results"][0]["url"]) as direct:
        assert content.content == await direct.read() and content.content[4:8] == b"ftyp"
    listed = [v.id async for v in sdk.videos.list()]
    assert listed == [video.id]


async def test_openai_videos_input_reference_file_is_the_first_frame(
    sdk: openai.AsyncOpenAI, client: TestClient[Any, Any], sim: Simulator
) -> None:
    frame = ("frame.png", png(64, 36, (9, 9, 9)), "image/png")
    video = await sdk.videos.create(model="jimeng-video-3.0", prompt="it moves", input_reference=frame)
    assert video.status == "queued"
    _, first, _ = sent(sim)
    assert first["first_frame_image"]["image_uri"] and first["prompt"] == "it moves"


async def test_openai_videos_failure_and_foreign_ids(
    sdk: openai.AsyncOpenAI, client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    video = await sdk.videos.create(prompt="bad [sim:fail]")
    await drive(client.app, clock, task_of(client, video.id))
    failed = await sdk.videos.retrieve(video.id)
    assert failed.status == "failed" and failed.error is not None and failed.error.code == "CONTENT_REJECTED"
    with pytest.raises(openai.UnprocessableEntityError):
        await sdk.videos.download_content(video.id)
    http = openai.DefaultAsyncHttpxClient(trust_env=False)
    async with openai.AsyncOpenAI(
        api_key=CN_TOKEN_2, base_url=str(client.make_url("/v1")), max_retries=0, http_client=http
    ) as other:
        with pytest.raises(openai.NotFoundError):
            await other.videos.retrieve(video.id)
        assert [v.id async for v in other.videos.list()] == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"model": "sora-2"}, "MISSING_PARAMETER"),
        ({"prompt": "x", "seconds": "forever"}, "INVALID_PARAMETER"),
        ({"prompt": "x", "size": "big"}, "INVALID_PARAMETER"),
        ({"prompt": "x", "model": "veo-9"}, "UNKNOWN_MODEL"),
        ({"prompt": "x", "input_reference": {"image_url": "ftp://x/y.png"}}, "INVALID_PARAMETER"),
        ({"prompt": "x", "input_reference": "data:image/png;base64,AAAA"}, "INVALID_PARAMETER"),
    ],
)
async def test_openai_videos_bad_requests(
    client: TestClient[Any, Any], sim: Simulator, body: dict[str, Any], code: str
) -> None:
    resp = await client.post("/v1/videos", json=body, headers=bearer(CN_TOKEN))
    answer = await json_of(resp)
    assert resp.status == 400 and answer["error"]["code"] == code, answer
    assert sim.generate_count == 0


async def test_unified_gateway_shape(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    body = {"model": "jimeng-video-3.0", "prompt": "a paper boat", "duration": 5, "width": 1280, "height": 720}
    headers = bearer(CN_TOKEN) | {"Idempotency-Key": "gw-1"}
    resp = await client.post("/v1/video/generations", json=body, headers=headers)
    created = await json_of(resp)
    assert resp.status == 200 and created["status"] == "queued" and created["task_id"]
    again = await client.post("/v1/video/generations", json=body, headers=headers)
    assert (await json_of(again))["task_id"] == created["task_id"] and sim.generate_count == 1
    _, first, ratio = sent(sim)  # 1280x720 -> 16:9 and 720p (the short side)
    assert (first["duration_ms"], first["resolution"], ratio) == (5000, "720p", "16:9")
    resp = await client.get(f"/v1/video/generations/{created['task_id']}", headers=bearer(CN_TOKEN))
    assert (await json_of(resp))["status"] in ("queued", "in_progress")
    (task,) = await drive(client.app, clock, task_of(client, created["task_id"]))
    resp = await client.get(f"/v1/video/generations/{created['task_id']}", headers=bearer(CN_TOKEN))
    done = await json_of(resp)
    assert done["status"] == "completed" and done["url"] == task["results"][0]["url"] and done["format"] == "mp4"
    assert done["error"] is None
    resp = await client.get("/v1/video/generations/12345", headers=bearer(CN_TOKEN))
    assert resp.status == 404
    for image in ("data:image/png;base64,AAAA", ["http://x/a.png", 7]):
        resp = await client.post(
            "/v1/video/generations", json={"prompt": "x", "image": image}, headers=bearer(CN_TOKEN)
        )
        refused = await json_of(resp)
        assert resp.status == 400 and "'image' must be an http(s) image URL" in refused["error"]["message"]
    assert sim.generate_count == 1


async def test_list_is_the_callers_own_videos_newest_first_on_each_store(
    make_client: Any, config: Any, clock: ManualClock, sim: Simulator, store_url: str
) -> None:
    client = await make_client(store=dataclasses.replace(config.store, url=store_url))
    ids: dict[str, list[str]] = {CN_TOKEN: [], CN_TOKEN_2: []}
    for token, path, body in (
        (CN_TOKEN, "/v1/videos", {"prompt": "one"}),
        (CN_TOKEN_2, "/v1/videos", {"prompt": "other's"}),
        (CN_TOKEN, "/v1/async/images/generations", {"prompt": "an image"}),
        (CN_TOKEN, "/v1/video/generations", {"prompt": "two", "model": "jimeng-video-3.0"}),
        (CN_TOKEN, "/v1/videos", {"prompt": "three"}),
    ):
        resp = await client.post(path, json=body, headers=bearer(token))
        answer = await json_of(resp)
        assert resp.status == 200, answer
        if "image" not in path:
            ids[token].append(answer.get("id") or answer.get("task_id"))
        await clock.advance(1.0)
    resp = await client.get("/v1/videos?limit=2", headers=bearer(CN_TOKEN))
    page = await json_of(resp)
    assert [v["id"] for v in page["data"]] == ids[CN_TOKEN][::-1][:2] and page["has_more"] is False
    resp = await client.get("/v1/videos?order=asc", headers=bearer(CN_TOKEN))
    assert [v["id"] for v in (await json_of(resp))["data"]] == ids[CN_TOKEN]
    resp = await client.get("/v1/videos", headers=bearer(CN_TOKEN_2))
    assert [v["id"] for v in (await json_of(resp))["data"]] == ids[CN_TOKEN_2]
    resp = await client.get("/v1/videos?limit=0", headers=bearer(CN_TOKEN))
    assert resp.status == 400
