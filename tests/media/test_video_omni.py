"""Omni-reference video generation over real HTTP against the simulator: images through ImageX (+ the CN content
check), videos through VOD (apply, upload, commit; SigV4 checked by the simulator), `@name` references in the
prompt, the limits (before anything reaches the upstream), the 15 s video budget, and the async twin."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from omni_support import CLIP, RED, SEEDANCE, form, nothing_uploaded, post, unified_input, upload_tokens, vod_calls
from proxies import ConnectProxy
from support import CN_TOKEN, US_TOKEN, bearer, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.config import UploadConfig
from jimeng_server.mp4 import MovieFacts, tiny_mp4
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.media import png
from jimeng_server.upstream import uploader, vod_upload
from jimeng_server.upstream.sigv4 import parse_authorization

ASYNC_URL = "/v1/async/videos/generations"
BLUE = png(48, 40, (0, 0, 200))
RISKY = png(8, 8, (1, 2, 3)) + b"SIM:RISK"
EIGHT = tiny_mp4(8000, tag=b"eight", width=640, height=360)
LONG = tiny_mp4(16000, tag=b"long")


@pytest.fixture
async def media(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    """Serves inputs on loopback: /red.png, /blue.png, /clip.mp4 (4.96 s), /eight.mp4 (8 s), /long.mp4 (16 s)."""
    files = {
        "red.png": (RED, "image/png"),
        "blue.png": (BLUE, "image/png"),
        "clip.mp4": (CLIP, "video/mp4"),
        "eight.mp4": (EIGHT, "video/mp4"),
        "long.mp4": (LONG, "video/mp4"),
        "text.mp4": (b"this is not a video at all", "video/mp4"),
    }

    async def serve(request: web.Request) -> web.Response:
        data, kind = files[request.match_info["name"]]
        return web.Response(body=data, content_type=kind)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    return await aiohttp_server(app)


def url(server: TestServer, name: str) -> str:
    return str(server.make_url(f"/{name}"))


# ------------------------------------------------------------------------------------------------ success


async def test_omni_two_images_and_a_video(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, media: TestServer
) -> None:
    fields = {
        "model": SEEDANCE,
        "functionMode": "omni_reference",
        "duration": "5",
        "ratio": "16:9",
        "prompt": "@image_file_1 walks into @video_file_1, painted like @image_file_2",
        "image_file_2": url(media, "blue.png"),
        "video_file_1": url(media, "clip.mp4"),
    }
    status, body = await post(client, clock, data=form(fields, [("image_file_1", "cat.png", RED)]))
    assert status == 200, body
    assert "hq=1" in body["data"][0]["url"], "the high-quality URL is returned"

    outer, metrics, gen_input = unified_input(sim)
    unified = gen_input["unified_edit_input"]
    assert gen_input["prompt"] == "" and gen_input["duration_ms"] == 5000
    materials = unified["material_list"]
    assert [m["material_type"] for m in materials] == ["image", "image", "video"]
    first, second = materials[0]["image_info"], materials[1]["image_info"]
    assert (first["width"], first["height"], first["format"]) == (32, 24, "png"), "real size from ImageX commit"
    assert (second["width"], second["height"]) == (48, 40), "the URL image is material 1"
    video = materials[2]["video_info"]
    assert (video["width"], video["height"], video["duration"]) == (1280, 720, 4960), "VOD's metadata, in ms"
    assert sim.uploads.committed_by(video["vid"], CN_TOKEN)
    assert unified["meta_list"] == [
        {"meta_type": "image", "text": "", "material_ref": {"material_idx": 0}},
        {"meta_type": "text", "text": " walks into "},
        {"meta_type": "video", "text": "", "material_ref": {"material_idx": 2}},
        {"meta_type": "text", "text": ", painted like "},
        {"meta_type": "image", "text": "", "material_ref": {"material_idx": 1}},
    ]
    scene = json.loads(metrics["sceneOptions"])[0]
    assert scene["materialTypes"] == [1, 1, 2] and metrics["functionMode"] == "omni_reference"
    assert outer["submit_id"] == metrics["originSubmitId"]
    assert outer["extend"]["m_video_commerce_info"]["benefit_type"] == "dreamina_video_seedance_20_video_add"

    # VOD: apply (GET) and commit (POST) on the vod vhost, accepted by the simulator's exact SigV4 check.
    (apply,) = vod_calls(sim, "ApplyUploadInner")
    (commit,) = vod_calls(sim, "CommitUploadInner")
    assert (apply.method, apply.status, commit.method, commit.status) == ("GET", 200, "POST", 200)
    for entry in (apply, commit):
        auth = parse_authorization(entry.headers["authorization"])
        assert (auth.region, auth.service) == ("cn-north-1", "vod")
    assert commit.body == {"SessionKey": commit.body["SessionKey"], "Functions": []}
    assert apply.query["FileSize"] == str(len(CLIP)) and apply.query["SpaceName"] == "dreamina"
    slot = sim.uploads.vids[video["vid"]]
    (put,) = [e for e in sim.journal if e.vhost == "upload" and e.path.endswith(slot.store_uri)]
    assert put.status == 200 and put.body_size == len(CLIP)
    assert "content-disposition" not in put.headers and put.headers["authorization"] == slot.auth
    assert sorted(upload_tokens(sim)) == [1, 2], "one ImageX and one VOD credential fetch (then cached)"
    assert len(sim.calls("/algo_proxy")) == 2, "both CN images are content-checked"
    assert sim.generate_count == 1 and len(sim.charges) == 1


async def test_omni_with_only_an_uploaded_video(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    fields = {"model": "jimeng-video-seedance-2.0-fast", "functionMode": "omni_reference", "prompt": "@clip.mp4 slower"}
    status, body = await post(client, clock, data=form(fields, [("video_file", "clip.mp4", EIGHT)]))
    assert status == 200, body
    _, metrics, gen_input = unified_input(sim)
    unified = gen_input["unified_edit_input"]
    (material,) = unified["material_list"]
    assert material["video_info"]["duration"] == 8000 and material["video_info"]["width"] == 640
    assert unified["meta_list"] == [
        {"meta_type": "video", "text": "", "material_ref": {"material_idx": 0}},
        {"meta_type": "text", "text": " slower"},
    ], "an uploaded file is referenced by its filename"
    assert json.loads(metrics["sceneOptions"])[0]["materialTypes"] == [2]
    assert upload_tokens(sim) == [1] and not sim.calls("/algo_proxy")
    assert sim.calls("/aigc_draft/generate")[-1].query["commerce_with_input_video"] == "1"  # a video attached


async def test_async_omni_submit_returns_a_history_id(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, media: TestServer
) -> None:
    payload = {
        "model": SEEDANCE,
        "functionMode": "omni_reference",
        "prompt": "@image_file_1 dances like @video_file_1",
        "image_file_1": url(media, "red.png"),
        "video_file_1": url(media, "clip.mp4"),
    }
    status, body = await post(client, clock, path=ASYNC_URL, json=payload)
    assert status == 200, body
    assert body["status"] == "submitted" and body["input_images"] == 1
    record = sim.records[body["history_id"]]
    assert record.extra["mode"] == "omni_reference" and len(record.extra["vids"]) == 1
    resp = await client.get(f"/v1/async/tasks/{body['history_id']}", headers=bearer(CN_TOKEN))
    assert (await json_of(resp))["task_type"] == "video"


async def test_images_and_videos_upload_concurrently(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, media: TestServer
) -> None:
    sim.settings.upload_gate = 3  # each byte upload waits until 3 were in flight at once
    payload = {
        "model": SEEDANCE,
        "functionMode": "omni_reference",
        "image_file_1": url(media, "red.png"),
        "image_file_2": url(media, "blue.png"),
        "video_file_1": url(media, "clip.mp4"),
    }
    status, body = await post(client, clock, json=payload)
    assert status == 200, body
    assert sim.uploads.peak_in_flight >= 3


async def test_uploads_are_bounded_by_the_configured_concurrency(
    make_client: Callable[..., Awaitable[TestClient[Any, Any]]], clock: ManualClock, sim: Simulator, media: TestServer
) -> None:
    client = await make_client(uploads=UploadConfig(concurrency=2))
    sim.settings.upload_gate = 2  # proves two at once; more would show in the peak
    payload = {
        "model": SEEDANCE,
        "functionMode": "omni_reference",
        **{f"image_file_{n}": url(media, "red.png") for n in range(1, 4)},
        "video_file_1": url(media, "clip.mp4"),
        "video_file_2": url(media, "clip.mp4"),
    }
    status, body = await post(client, clock, json=payload)
    assert status == 200, body
    assert len([e for e in sim.journal if e.vhost == "upload"]) == 5
    assert sim.uploads.peak_in_flight == 2


# ------------------------------------------------------------------------------------------------ limits


def numbered(kind: str, count: int, ext: str) -> dict[str, str]:
    return {f"{kind}_file_{n}": f"https://example.com/{kind}{n}.{ext}" for n in range(1, count + 1)}


@pytest.mark.parametrize(
    ("materials", "code"),
    [
        (numbered("image", 10, "png"), "TOO_MANY_IMAGES"),
        (numbered("video", 4, "mp4"), "TOO_MANY_VIDEOS"),
        ({**numbered("image", 9, "png"), **numbered("video", 4, "mp4")}, "TOO_MANY_MATERIALS"),
        ({}, "MISSING_MATERIALS"),
    ],
)
async def test_omni_limits_refused_before_any_upload(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, materials: dict[str, str], code: str
) -> None:
    payload = {"model": SEEDANCE, "functionMode": "omni_reference", "prompt": "x", **materials}
    status, body = await post(client, clock, json=payload)
    assert status == 400 and body["error"]["code"] == code, body
    assert not sim.journal, "nothing reached the upstream"


async def test_total_video_duration_over_15_s_refused_before_upload(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, media: TestServer
) -> None:
    payload = {
        "model": SEEDANCE,
        "functionMode": "omni_reference",
        "prompt": "two halves",
        "video_file_1": url(media, "eight.mp4"),
        "video_file_2": url(media, "eight.mp4"),
    }
    status, body = await post(client, clock, json=payload)
    assert status == 400 and body["error"]["code"] == "VIDEO_TOO_LONG", body
    assert "16 s together" in body["error"]["message"]
    nothing_uploaded(sim)


async def test_one_video_over_15_s_refused(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, media: TestServer
) -> None:
    payload = {"model": SEEDANCE, "functionMode": "omni_reference", "video_file": url(media, "long.mp4")}
    status, body = await post(client, clock, json=payload)
    assert status == 400 and body["error"]["code"] == "VIDEO_TOO_LONG", body
    assert "video 1 lasts 16 s" in body["error"]["message"]
    nothing_uploaded(sim)


async def test_vod_duration_is_checked_again_after_commit(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, media: TestServer, monkeypatch: Any
) -> None:
    async def short(file: Any) -> MovieFacts:
        return MovieFacts(duration=7.0)  # our own reading is fooled; VOD measures 8 s per video

    monkeypatch.setattr(vod_upload, "read_movie", short)
    monkeypatch.setattr("jimeng_server.services.videos.read_movie", short)
    payload = {
        "model": SEEDANCE,
        "functionMode": "omni_reference",
        "video_file_1": url(media, "eight.mp4"),
        "video_file_2": url(media, "eight.mp4"),
    }
    status, body = await post(client, clock, json=payload)
    assert status == 400 and body["error"]["code"] == "VIDEO_TOO_LONG", body
    assert len(vod_calls(sim, "CommitUploadInner")) == 2, "refused on VOD's durations, after the commits"
    assert sim.generate_count == 0 and not sim.charges


async def test_not_an_mp4_is_refused_before_upload(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, media: TestServer
) -> None:
    payload = {"model": SEEDANCE, "functionMode": "omni_reference", "video_file_1": url(media, "text.mp4")}
    status, body = await post(client, clock, json=payload)
    assert status == 400 and body["error"]["code"] == "INVALID_VIDEO", body
    nothing_uploaded(sim)


async def test_omni_with_another_model_refused(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    payload = {
        "model": "jimeng-video-3.5-pro",
        "functionMode": "omni_reference",
        "image_file_1": "https://example.com/a.png",
    }
    status, body = await post(client, clock, json=payload)
    assert status == 400 and body["error"]["code"] == "UNSUPPORTED_MODE", body
    assert SEEDANCE in body["error"]["message"]
    assert not sim.journal


async def test_omni_on_a_us_token_lists_us_models(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    payload = {"model": SEEDANCE, "functionMode": "omni_reference", "video_file_1": "https://example.com/a.mp4"}
    status, body = await post(client, clock, token=US_TOKEN, json=payload)
    assert status == 400 and body["error"]["code"] == "UNSUPPORTED_MODEL", body
    offered = body["error"]["message"].split("use one of:")[1]
    assert "jimeng-video-3.5-pro" in offered and "seedance" not in offered
    assert not sim.journal


# ------------------------------------------------------------------------------------------------ failures


async def test_tampered_vod_signature_caught_by_simulator(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, monkeypatch: Any
) -> None:
    sent: list[str] = []
    real = uploader.sign_headers

    def wrong_vod_secret(*args: Any, **kw: Any) -> dict[str, str]:
        if kw["service"] != "vod":
            return real(*args, **kw)
        headers = real(*args, **{**kw, "secret_key": kw["secret_key"] + "x"})
        sent.append(headers["authorization"])
        return headers

    monkeypatch.setattr(uploader, "sign_headers", wrong_vod_secret)
    fields = {"model": SEEDANCE, "functionMode": "omni_reference", "prompt": "@image_file_1 in @video_file_1"}
    status, body = await post(
        client, clock, data=form(fields, [("image_file_1", "a.png", RED), ("video_file_1", "a.mp4", CLIP)])
    )
    assert status == 502, body
    assert "SignatureDoesNotMatch" in body["error"]["message"]
    applies = vod_calls(sim, "ApplyUploadInner")
    assert applies and all(e.status == 403 for e in applies)
    assert [e.headers["authorization"] for e in applies] == sent, "the values the simulator checked are ours"
    assert [e.status for e in sim.journal if e.query.get("Action") == "ApplyImageUpload"] == [200]
    assert not vod_calls(sim, "CommitUploadInner") and sim.generate_count == 0


async def test_risky_omni_image_is_422(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    fields = {"model": SEEDANCE, "functionMode": "omni_reference", "prompt": "x"}
    status, body = await post(
        client, clock, data=form(fields, [("image_file_1", "a.png", RISKY), ("video_file_1", "a.mp4", CLIP)])
    )
    assert status == 422 and body["error"]["code"] == "CONTENT_REJECTED", body
    assert sim.generate_count == 0


async def test_every_omni_hop_goes_through_the_accounts_proxy(
    client: TestClient[Any, Any],
    clock: ManualClock,
    sim: Simulator,
    media: TestServer,
    http_proxy: ConnectProxy,
) -> None:
    p, port = http_proxy, http_proxy.port
    payload = {
        "model": SEEDANCE,
        "functionMode": "omni_reference",
        "image_file_1": url(media, "red.png"),
        "video_file_1": url(media, "clip.mp4"),
    }
    status, body = await post(client, clock, token=f"http://127.0.0.1:{port}@{CN_TOKEN}", json=payload)
    assert status == 200, body
    upstream = [e for e in sim.journal if e.vhost != "cdn"]
    assert {e.vhost for e in upstream} >= {"cn-web", "cn-imagex", "vod", "upload"}
    assert all(e.peer in p.outbound for e in upstream), "every upstream call, VOD included, used the proxy"
    assert any(r.startswith(f"GET http://127.0.0.1:{media.port}/") for r in p.requests), "downloads used it too"
