"""Live model discovery (`get_common_config`, §17.4) over real HTTP against the simulator: `/v1/models` built
from the table and discovery, cached, falling back to the table; a discovered key is usable; drift is named."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, US_TOKEN, bearer, drive, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.services.model_list import drift_of
from jimeng_server.simulator import Fault, FaultKind, Simulator
from jimeng_server.upstream.discovery import parse_models
from jimeng_server.upstream.regions import Region

NEW_MODEL = {"kind": "image", "model_req_key": "high_aes_general_v60", "model_name": "图片 6.0"}
CONFIGS = "get_common_config"


async def models(client: TestClient[Any, Any], *tokens: str, clock: ManualClock | None = None) -> dict[str, Any]:
    request = client.get("/v1/models", headers=bearer(*tokens) if tokens else {})
    resp = (await drive(client.app, clock, request))[0] if clock is not None else await request
    body = await json_of(resp)
    assert resp.status == 200, body
    return {m["id"]: m for m in body["data"]}


async def test_without_a_token_the_table_is_shown(client: TestClient[Any, Any], sim: Simulator) -> None:
    listed = await models(client)
    assert not sim.calls(CONFIGS)
    assert {m["source"] for m in listed.values()} == {"table"}
    assert listed["jimeng-4.7"]["credits"] == {"2k": 1} and listed["jimeng-4.7"]["resolutions"] == ["2k", "4k"]
    vip = listed["jimeng-video-seedance-2.0-vip"]
    assert (vip["vip"], vip["resolutions"], vip["regions"]) == (True, ["720p", "1080p", "4k"], ["cn"])
    assert vip["durations"] == list(range(4, 16))
    assert listed["jimeng-5.0-lite"]["counts"] == list(range(1, 9)) and listed["jimeng-5.0"]["alias_of"]


async def test_discovery_merges_caches_and_lists_new_models(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.extra_models.append(NEW_MODEL)
    listed = await models(client, CN_TOKEN)
    assert len(sim.calls(CONFIGS)) == 2  # images and video
    assert listed["jimeng-4.7"]["source"] == "table+discovery" and listed["jimeng-4.7"]["discovered_in"] == ["cn"]
    assert listed["nanobanana"]["source"] == "table"  # not a CN model
    new = listed["high_aes_general_v60"]
    assert (new["source"], new["regions"], new["name"], new["type"]) == ("discovery", ["cn"], "图片 6.0", "image")
    await models(client, CN_TOKEN)
    assert len(sim.calls(CONFIGS)) == 2, "cached for discovery_ttl"
    await clock.advance(301)
    await models(client, CN_TOKEN)
    assert len(sim.calls(CONFIGS)) == 4, "asked again once the cache is older than discovery_ttl"


async def test_discovery_down_falls_back_to_the_table_with_a_warning(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.inject(CONFIGS, Fault(FaultKind.HTTP_500), times=100)
    listed = await models(client, CN_TOKEN, clock=clock)  # the read is retried with back-off on the clock
    assert {m["source"] for m in listed.values()} == {"table"}
    assert any(r.levelno == logging.WARNING and "discovery failed" in r.getMessage() for r in caplog.records), (
        "the fallback is logged"
    )


async def test_a_discovered_key_can_be_used_by_its_key(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.extra_models.append(NEW_MODEL)
    body = {"prompt": "x", "model": "high_aes_general_v60", "n": 1}
    (resp,) = await drive(client.app, clock, client.post("/v1/images/generations", json=body, headers=bearer(CN_TOKEN)))
    answer = await json_of(resp)
    assert resp.status == 200 and len(answer["data"]) == 1, answer
    generated = sim.calls("/aigc_draft/generate")[-1].body
    assert generated["extend"]["root_model"] == "high_aes_general_v60"
    body["model"] = "high_aes_general_v99"
    (resp,) = await drive(client.app, clock, client.post("/v1/images/generations", json=body, headers=bearer(CN_TOKEN)))
    answer = await json_of(resp)
    assert resp.status == 400 and answer["error"]["code"] == "UNSUPPORTED_MODEL"
    assert "high_aes_general_v60" in answer["error"]["message"]


async def test_video_config_falls_back_to_the_other_scene(client: TestClient[Any, Any], sim: Simulator) -> None:
    sim.inject("/video_generate/get_common_config", Fault(FaultKind.RET, ret="4002", errmsg="param error"))
    listed = await models(client, CN_TOKEN)
    scenes = [e.body["scene"] for e in sim.calls("/video_generate/get_common_config")]
    assert scenes == ["generate_video", "video_generate"]
    assert listed["jimeng-video-seedance-2.5"]["source"] == "table+discovery"


async def test_us_token_asks_the_us_host(client: TestClient[Any, Any], sim: Simulator) -> None:
    listed = await models(client, US_TOKEN)
    assert {e.vhost for e in sim.calls(CONFIGS)} == {"us-web"}
    assert listed["nanobanana"]["discovered_in"] == ["us"]


def test_parser_and_drift() -> None:
    data = {
        "model_list": [
            {
                "model_req_key": "high_aes_general_v43",
                "model_name": "图片 4.7",
                "generate_count_options": ["1", "2", 3, "x", -1],
                "default_generate_count": "4",
                "resolution_map": {"1:1": {"2k": [2048, 2048], "4k": [4096, 4096]}},
            },
            {"model_req_key": "high_aes_general_v47x", "model_name": "图片 4.7 Turbo"},
        ]
    }
    found = parse_models("image", data)
    first = found[0]
    assert (first.counts, first.default_count, first.resolutions) == ((1, 2, 3), 4, ("2k", "4k"))
    video = parse_models(
        "video",
        json.loads(
            '{"model_list":[{"model_req_key":"k_1","model_status":1,"duration_ms":{"min_duration_ms":4000,'
            '"max_duration_ms":6000},"commercial_config":{"resolution_price_configs":[{"resolution":"720p",'
            '"price":{"benefit_type":"b720"}}]}}]}'
        ),
    )
    assert (video[0].available, video[0].durations, dict(video[0].benefits)) == (False, (4, 5, 6), {"720p": "b720"})
    drift = drift_of(Region.CN, found)
    assert [m.key for m in drift.new] == ["high_aes_general_v47x"]
    assert "jimeng-4.5" in drift.missing and "jimeng-4.7" not in drift.missing
    assert ("jimeng-4.7", found[1]) not in drift.renamed  # 4.7 is still listed: not renamed
