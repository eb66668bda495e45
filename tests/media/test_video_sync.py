"""Sync video generation over real HTTP against the simulator: text-to-video, durations, resolution, region
refusals, high-quality URLs and their fallback, streamed b64_json of a real MP4."""

from __future__ import annotations

import base64
import io
import json
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, US_TOKEN, bearer, drive, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.mp4 import iter_boxes, movie_facts
from jimeng_server.simulator import Fault, FaultKind, Simulator
from jimeng_server.simulator.video import item_mp4
from jimeng_server.upstream.regions import Region

URL = "/v1/videos/generations"
SG_SESSION = "sess0sg0aaaabbbbccccddddeeeeffff"
SG_TOKEN = f"sg-{SG_SESSION}"


@pytest.fixture
def sg_account(sim: Simulator) -> str:
    sim.add_account(SG_SESSION, region=Region.SG, vip=1000)
    return SG_TOKEN


async def post(
    client: TestClient[Any, Any], clock: ManualClock, body: Any, token: str = CN_TOKEN, *, form: bool = False
) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {"headers": bearer(token)}
    if form:
        data = aiohttp.FormData()
        for key, value in body.items():
            data.add_field(key, str(value))
        kwargs["data"] = data
    else:
        kwargs["json"] = body
    (resp,) = await drive(client.app, clock, client.post(URL, **kwargs))
    return resp.status, await json_of(resp)


def assert_mp4(data: bytes) -> float:
    """Walk the top-level boxes; return the mvhd duration."""
    kinds = [b.kind for b in iter_boxes(io.BytesIO(data), 0, len(data))]
    assert kinds[:2] == [b"ftyp", b"moov"] and b"mdat" in kinds
    seconds = movie_seconds(io.BytesIO(data))
    assert seconds is not None
    return seconds


def generate_body(sim: Simulator) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    (gen,) = sim.calls("/aigc_draft/generate")
    draft = json.loads(gen.body["draft_content"])
    metrics = json.loads(gen.body["metrics_extra"])
    return gen.body, draft, metrics


async def test_text_to_video_returns_hq_mp4(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    before = sim.account(CN_TOKEN).total
    status, body = await post(client, clock, {"prompt": "a lion running on the grassland", "ratio": "16:9"})
    assert status == 200, body
    (item,) = body["data"]
    assert item["revised_prompt"] == "a lion running on the grassland"
    assert "hq=1" in item["url"], "the get_local_item_list download URL is preferred"
    async with client.session.get(item["url"]) as resp:
        assert resp.status == 200 and resp.content_type == "video/mp4"
        assert assert_mp4(await resp.read()) == 5.0
    assert sim.generate_count == 1
    assert sim.account(CN_TOKEN).total == before - 5 * sim.settings.video_cost_per_second
    assert len(sim.calls("/get_local_item_list")) == 1
    outer, draft, metrics = generate_body(sim)
    uuid.UUID(outer["submit_id"])
    assert metrics["originSubmitId"] != outer["submit_id"]
    assert outer["extend"]["m_video_commerce_info"]["benefit_type"] == "dreamina_video_seedance_15_pro"
    params = draft["component_list"][0]["abilities"]["gen_video"]["text_to_video_params"]
    assert params["video_aspect_ratio"] == "16:9"
    gen_input = params["video_gen_inputs"][0]
    assert gen_input["duration_ms"] == 5000
    assert "resolution" not in gen_input and "first_frame_image" not in gen_input
    (gen,) = sim.calls("/aigc_draft/generate")
    assert gen.query["aigc_features"] == "app_lip_sync" and gen.headers["referer"].endswith("type=video")


async def test_multipart_text_to_video(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    status, body = await post(
        client, clock, {"prompt": "waves", "model": "jimeng-video-3.0", "duration": "10"}, form=True
    )
    assert status == 200, body
    _, draft, _ = generate_body(sim)
    gen_input = draft["component_list"][0]["abilities"]["gen_video"]["text_to_video_params"]["video_gen_inputs"][0]
    assert gen_input["duration_ms"] == 10000
    assert gen_input["resolution"] == "720p", "3.0 carries the default resolution"


async def test_fallback_to_preview_url_when_local_items_fail(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    """Both item layouts (current and older paths) are read in the documented order when the HQ call fails."""
    parities: set[int] = set()
    for n in range(12):
        sim.inject("/get_local_item_list", Fault(FaultKind.RET, ret="4002", errmsg="param error"))
        status, body = await post(client, clock, {"prompt": f"fallback {n}"})
        assert status == 200, body
        url = body["data"][0]["url"]
        assert "hq=1" not in url and "stale" not in url
        async with client.session.get(url) as resp:
            assert resp.status == 200
            assert_mp4(await resp.read())
        parities.add(int(list(sim.records)[-1]) % 2)
        if parities == {0, 1}:
            break
    assert parities == {0, 1}, "both item layouts must have been exercised"


async def test_hq_for_both_item_layouts(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    parities: set[int] = set()
    for n in range(12):
        status, body = await post(client, clock, {"prompt": f"hq {n}"})
        assert status == 200, body
        assert "hq=1" in body["data"][0]["url"]
        parities.add(int(list(sim.records)[-1]) % 2)
        if parities == {0, 1}:
            break
    assert parities == {0, 1}
    for call in sim.calls("/get_local_item_list"):
        assert call.body["is_for_video_download"] is True and len(call.body["item_id_list"]) == 1


async def test_b64_json_is_streamed_mp4(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    (resp,) = await drive(
        client.app,
        clock,
        client.post(URL, json={"prompt": "b64 video", "response_format": "b64_json"}, headers=bearer(CN_TOKEN)),
    )
    assert resp.status == 200
    assert "Content-Length" not in resp.headers, "the body is streamed"
    body = await json_of(resp)
    (item,) = body["data"]
    record = next(iter(sim.records.values()))
    data = base64.b64decode(item["b64_json"], validate=True)
    assert data == item_mp4(record, 0, hq=True)
    assert assert_mp4(data) == 5.0
    assert item["revised_prompt"] == "b64 video" and isinstance(body["created"], int)


async def test_b64_json_download_failure_is_a_clean_error(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.inject("/0.mp4", Fault(FaultKind.HTTP_500))
    status, body = await post(client, clock, {"prompt": "b64 fail", "response_format": "b64_json"})
    assert status == 502 and body["error"]["code"] == "RESULT_FETCH_FAILED"


# ---------------------------------------------------------------- durations (§6.4)

DURATION_CASES = [
    ("jimeng-video-veo3", 8, True),
    ("jimeng-video-veo3", 5, False),
    ("jimeng-video-veo3.1", 8, True),
    ("jimeng-video-veo3.1", 10, False),
    ("jimeng-video-sora2", 4, True),
    ("jimeng-video-sora2", 12, True),
    ("jimeng-video-sora2", 5, False),
    ("jimeng-video-3.5-pro", 12, True),
    ("jimeng-video-3.5-pro", 8, False),
    ("jimeng-video-seedance-2.0", 4, True),
    ("jimeng-video-seedance-2.0", 15, True),
    ("jimeng-video-seedance-2.0", 3, False),
    ("jimeng-video-seedance-2.0", 16, False),
    ("jimeng-video-seedance-2.0-fast", 7, True),
    ("jimeng-video-seedance-2.0-fast", 16, False),
    ("jimeng-video-3.0", 10, True),
    ("jimeng-video-3.0", 12, False),
    ("jimeng-video-2.0-pro", 5, True),
    ("jimeng-video-2.0-pro", 4, False),
]


@pytest.mark.parametrize(("model", "seconds", "ok"), DURATION_CASES)
async def test_duration_rules(
    client: TestClient[Any, Any],
    clock: ManualClock,
    sim: Simulator,
    sg_account: str,
    model: str,
    seconds: int,
    ok: bool,
) -> None:
    token = sg_account if ("veo3" in model or "sora2" in model) else CN_TOKEN
    status, body = await post(client, clock, {"prompt": "timed", "model": model, "duration": seconds}, token)
    if ok:
        assert status == 200, body
        _, draft, metrics = generate_body(sim)
        params = draft["component_list"][0]["abilities"]["gen_video"]["text_to_video_params"]
        assert params["video_gen_inputs"][0]["duration_ms"] == seconds * 1000
        assert json.loads(metrics["sceneOptions"])[0]["videoDuration"] == seconds
        assert sim.charges[-1][2] == seconds * sim.settings.video_cost_per_second
    else:
        assert status == 400, body
        assert body["error"]["code"] == "INVALID_PARAMETER" and model in body["error"]["message"]
        assert not sim.journal, "refused before any upstream call"


@pytest.mark.parametrize(
    ("value", "form", "ok"),
    [
        (5.0, False, True),
        (5.5, False, False),
        ("5", False, True),
        (True, False, False),
        ("10", True, True),
        ("5.5", True, False),
        ("ten", True, False),
        ("5.0", True, False),
        ("", True, True),
    ],
)
async def test_duration_types(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, value: Any, form: bool, ok: bool
) -> None:
    status, body = await post(client, clock, {"prompt": "typed", "duration": value}, form=form)
    assert (status == 200) is ok, body
    if not ok:
        assert status == 400 and "'duration'" in body["error"]["message"]


# ---------------------------------------------------------------- resolution, ratio, models and regions


async def test_resolution_1080p_for_3_0_fast(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    body = {"prompt": "sharp", "model": "jimeng-video-3.0-fast", "resolution": "1080p"}
    status, body = await post(client, clock, body)
    assert status == 200, body
    _, draft, metrics = generate_body(sim)
    gen_input = draft["component_list"][0]["abilities"]["gen_video"]["text_to_video_params"]["video_gen_inputs"][0]
    assert gen_input["resolution"] == "1080p"
    scene = json.loads(metrics["sceneOptions"])[0]
    assert scene["reportParams"]["extraVipFunctionKey"].endswith("-1080p")


async def test_resolution_refused_for_models_without_it(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    status, body = await post(client, clock, {"prompt": "x", "model": "jimeng-video-3.5-pro", "resolution": "1080p"})
    assert status == 400
    message = body["error"]["message"]
    assert "jimeng-video-3.0" in message and "jimeng-video-3.0-fast" in message
    assert not sim.journal


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "x", "ratio": "2:1"},
        {"prompt": "x", "resolution": "4k", "model": "jimeng-video-3.0"},
        {"prompt": "x", "model": "jimeng-video-9"},
        {"prompt": ""},
        {"prompt": "x", "functionMode": "storyboard"},
        {"prompt": "x", "response_format": "mp4"},
    ],
)
async def test_bad_fields_are_400(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, body: dict[str, Any]
) -> None:
    status, answer = await post(client, clock, body)
    assert status == 400, answer
    assert not sim.journal


async def test_seedance_on_us_token_lists_us_models(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    status, body = await post(client, clock, {"prompt": "x", "model": "jimeng-video-seedance-2.0"}, US_TOKEN)
    assert status == 400 and body["error"]["code"] == "UNSUPPORTED_MODEL"
    message = body["error"]["message"]
    assert "jimeng-video-3.5-pro" in message and "jimeng-video-3.0" in message
    assert "seedance" not in message.split("use one of:")[1]
    assert not sim.journal


async def test_veo3_on_sg_token(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, sg_account: str
) -> None:
    status, body = await post(client, clock, {"prompt": "x", "model": "jimeng-video-veo3"}, sg_account)
    assert status == 200, body
    outer, _, _ = generate_body(sim)
    assert outer["extend"]["m_video_commerce_info"]["benefit_type"] == "generate_video_veo3"
    assert outer["http_common_info"]["aid"] == 513641


async def test_failed_video_task(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    status, body = await post(client, clock, {"prompt": "bad [sim:fail]"})
    assert status == 422 and body["error"]["code"] == "CONTENT_REJECTED"
    assert not sim.calls("/get_local_item_list"), "no HQ lookup for a task without items"


def movie_seconds(f: Any) -> float | None:
    facts = movie_facts(f)
    return facts.duration if facts is not None else None
