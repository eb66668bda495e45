"""Image-to-video and first+last frame over real HTTP: uploaded files and URLs go through ImageX (+ the CN
content check), the frames land in the generate body, and any frame failure (the end frame too) fails."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from support import CN_TOKEN, US_TOKEN, bearer, drive, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Fault, FaultKind, Simulator
from jimeng_server.simulator.media import png

URL = "/v1/videos/generations"
RED = png(32, 24, (200, 0, 0))
BLUE = png(24, 32, (0, 0, 200))
RISKY = png(8, 8, (1, 2, 3)) + b"SIM:RISK"


@pytest.fixture
async def image_host(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    """A tiny web server holding input images at /red.png and /blue.png."""

    async def serve(request: web.Request) -> web.Response:
        data = {"red.png": RED, "blue.png": BLUE}[request.match_info["name"]]
        return web.Response(body=data, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    return await aiohttp_server(app)


async def post_form(
    client: TestClient[Any, Any],
    clock: ManualClock,
    fields: dict[str, str],
    files: list[tuple[str, bytes]],
    token: str = CN_TOKEN,
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    for n, (name, data) in enumerate(files):
        form.add_field(name, data, filename=f"frame{n}.png", content_type="image/png")
    (resp,) = await drive(client.app, clock, client.post(URL, data=form, headers=bearer(token)))
    return resp.status, await json_of(resp)


def video_input(sim: Simulator) -> dict[str, Any]:
    (gen,) = sim.calls("/aigc_draft/generate")
    draft = json.loads(gen.body["draft_content"])
    result: dict[str, Any] = draft["component_list"][0]["abilities"]["gen_video"]["text_to_video_params"][
        "video_gen_inputs"
    ][0]
    return result


async def test_image_to_video_with_uploaded_file(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    status, body = await post_form(client, clock, {"prompt": "it moves"}, [("image", RED)])
    assert status == 200, body
    assert "hq=1" in body["data"][0]["url"]
    gen_input = video_input(sim)
    uri = gen_input["first_frame_image"]["image_uri"]
    assert sim.uploads.committed_by(uri, CN_TOKEN)
    assert "end_frame_image" not in gen_input
    assert len(sim.calls("/algo_proxy")) == 1, "CN frames are content-checked"


async def test_first_and_last_frame_from_urls(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, image_host: TestServer
) -> None:
    urls = [str(image_host.make_url("/red.png")), str(image_host.make_url("/blue.png"))]
    (resp,) = await drive(
        client.app,
        clock,
        client.post(URL, json={"prompt": "", "file_paths": urls, "duration": 10}, headers=bearer(CN_TOKEN)),
    )
    body = await json_of(resp)
    assert resp.status == 200, body
    gen_input = video_input(sim)
    first, end = gen_input["first_frame_image"]["image_uri"], gen_input["end_frame_image"]["image_uri"]
    assert first != end
    slots = sim.uploads.by_uri
    assert (slots[first].info.width, slots[end].info.width) == (32, 24), "frames keep their order"


async def test_first_last_frame_on_us_token(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    status, body = await post_form(
        client, clock, {"prompt": "us frames", "model": "jimeng-video-3.0"}, [("a", RED), ("b", BLUE)], US_TOKEN
    )
    assert status == 200, body
    assert "end_frame_image" in video_input(sim)
    assert not sim.calls("/algo_proxy"), "no content check outside CN"


async def test_frames_with_region_unsupported_model_refused_before_upload(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    status, body = await post_form(
        client, clock, {"prompt": "x", "model": "jimeng-video-3.0-fast"}, [("a", RED), ("b", BLUE)], US_TOKEN
    )
    assert status == 400 and body["error"]["code"] == "UNSUPPORTED_MODEL"
    assert not sim.journal, "nothing uploaded"


async def test_end_frame_content_risk_fails_the_request(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    status, body = await post_form(client, clock, {"prompt": "risky end"}, [("a", RED), ("b", RISKY)])
    assert status == 422 and body["error"]["code"] == "CONTENT_REJECTED", body
    assert "image 2" in body["error"]["message"]
    assert sim.generate_count == 0, "never generated from the first frame alone"


async def test_end_frame_upload_failure_fails_the_request(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    # ImageX calls have the API path "/": apply 1, commit 1, then apply 2 (the end frame) answers garbage.
    sim.inject("/", Fault(FaultKind.RET), skip=2)
    status, body = await post_form(client, clock, {"prompt": "lost end"}, [("a", RED), ("b", BLUE)])
    assert status == 502, body
    assert sim.generate_count == 0


@pytest.mark.parametrize(
    ("fields", "files", "code"),
    [
        ({"prompt": "x"}, [("a", RED), ("b", BLUE), ("c", RED)], "TOO_MANY_IMAGES"),
        ({"prompt": "x", "file_paths": "https://example.com/a.png"}, [("a", RED)], "INVALID_PARAMETER"),
        ({"prompt": "x", "video_file_1": "https://example.com/a.mp4"}, [], "INVALID_PARAMETER"),
    ],
)
async def test_frame_field_refusals(
    client: TestClient[Any, Any],
    clock: ManualClock,
    sim: Simulator,
    fields: dict[str, str],
    files: list[tuple[str, bytes]],
    code: str,
) -> None:
    status, body = await post_form(client, clock, fields, files)
    assert status == 400 and body["error"]["code"] == code, body
    assert not sim.journal
