"""Discovery drives video (issue #20 item 3) over real HTTP against the simulator: the §19.7 video config is parsed
(options `resolution`, `video_aspect_ratio`, `frames`, `input_media_type`), a key only discovery lists is usable by
its key or name with the first/last-frame payload, discovered durations/resolutions win over the table (and show
in /v1/models), table benefit types win over discovered ones, and a withdrawn default is replaced by the site's
default, named in the answers' `model`."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient
from support import CN_TOKEN, bearer, drive, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.services.model_list import video_choice
from jimeng_server.simulator import Simulator
from jimeng_server.upstream.discovery import default_video, parse_models
from jimeng_server.upstream.regions import Region

VIDEOS = "/v1/videos/generations"
ASYNC_VIDEOS = "/v1/async/videos/generations"
CONFIGS = "get_common_config"
WAN = "dreamina_wan_30"  # in the simulator's facts (§19.7 TD, listed on request), not in the client's table
DEFAULT_KEY = "dreamina_ic_generate_video_model_vgfm_3.5_pro"  # the table's default (jimeng-video-3.5-pro)

# The documented shape (§19.7, NT code): options with enum_val string/int values and default_val_idx.
DOCUMENTED = {
    "model_list": [
        {
            "model_req_key": "dreamina_seedance_45_pro",
            "model_name": "即梦 Seedance 2.5",
            "options": [
                {"key": "resolution", "enum_val": {"string_value": ["480p", "720p", "1080p"], "default_val_idx": 1}},
                {"key": "video_aspect_ratio", "enum_val": {"string_value": ["16:9", "9:16", "1:1"]}},
                {"key": "frames", "enum_val": {"int_value": [96, 120, 130, 240, 720], "default_val_idx": 1}},
                {"key": "input_media_type", "enum_val": {"string_value": ["prompt", "first_frame", "end_frame"]}},
            ],
        },
        {"model_req_key": "dreamina_wan_30", "model_name": "Wan 3.0", "is_default": True, "model_status": 0},
        {"model_req_key": "withdrawn_key_x", "model_status": 1, "is_default": True},
    ]
}


def test_the_documented_video_config_is_parsed() -> None:
    first, wan, gone = parse_models("video", DOCUMENTED)
    assert (first.key, first.name, first.resolutions) == (
        "dreamina_seedance_45_pro",
        "即梦 Seedance 2.5",
        ("480p", "720p", "1080p"),
    )
    assert first.durations == (4, 5, 10, 30), "frames / 24, whole seconds only (130 frames is dropped)"
    assert (first.default_resolution, first.default_duration) == ("720p", 5)
    assert first.ratios == ("16:9", "9:16", "1:1") and first.inputs == ("prompt", "first_frame", "end_frame")
    assert not gone.available and wan.flagged_default
    assert default_video([first, wan, gone]) == wan, "the flagged available entry"
    assert default_video([first, gone]) == first, "else the first available entry"
    assert default_video([gone]) is None


async def post(client: TestClient[Any, Any], clock: ManualClock, url: str, body: Any) -> tuple[int, Any]:
    (resp,) = await drive(client.app, clock, client.post(url, json=body, headers=bearer(CN_TOKEN)))
    return resp.status, await json_of(resp)


def sent(sim: Simulator) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The last generate: outer body, decoded draft, and sceneOptions[0]."""
    body = sim.calls("/aigc_draft/generate")[-1].body
    scene = json.loads(json.loads(body["metrics_extra"])["sceneOptions"])[0]
    return body, json.loads(body["draft_content"]), scene


async def test_a_video_model_only_discovery_lists_is_listed_and_usable_by_key(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.shown_models.add(WAN)
    resp = await client.get("/v1/models", headers=bearer(CN_TOKEN))
    listed = {m["id"]: m for m in (await json_of(resp))["data"]}
    wan = listed[WAN]
    assert (wan["source"], wan["type"], wan["resolutions"]) == ("discovery", "video", ["720p", "1080p"])
    assert wan["durations"] == list(range(4, 16)) and "first_frame" in wan["inputs"]

    status, body = await post(
        client, clock, VIDEOS, {"prompt": "a cat", "model": WAN, "duration": 12, "resolution": "1080p"}
    )
    assert status == 200 and body["data"][0]["url"] and body["model"] == WAN, body
    outer, draft, scene = sent(sim)
    assert outer["extend"]["root_model"] == WAN and scene["videoDuration"] == 12 and scene["resolution"] == "1080p"
    commerce = (
        json.loads(outer["extend"]["m_video_commerce_info"])
        if isinstance(outer["extend"]["m_video_commerce_info"], str)
        else outer["extend"]["m_video_commerce_info"]
    )
    assert commerce["benefit_type"] == "dreamina_wan_30_1080p_output", "a key the table lacks: discovery's benefit type"
    assert draft["component_list"][0]["abilities"]["gen_video"]["text_to_video_params"]["model_req_key"] == WAN


async def test_the_openai_video_endpoint_takes_a_discovered_key(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.shown_models.add(WAN)
    await client.get("/v1/models", headers=bearer(CN_TOKEN))  # the region's list is cached
    status, body = await post(client, clock, "/v1/videos", {"prompt": "a cat", "model": WAN, "seconds": "12"})
    assert status == 200 and body["model"] == WAN, body
    assert sent(sim)[2]["videoDuration"] == 12, "discovery's 4-15 s, not the table's fallback 5/10"


async def test_a_discovered_model_refuses_what_discovery_does_not_offer(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.shown_models.add(WAN)
    status, body = await post(client, clock, VIDEOS, {"prompt": "x", "model": WAN, "duration": 20})
    assert status == 400 and body["error"]["code"] == "INVALID_PARAMETER", body
    assert "'duration' must be 4 to 15 seconds for dreamina_wan_30, got 20" in body["error"]["message"]
    status, body = await post(client, clock, VIDEOS, {"prompt": "x", "model": WAN, "resolution": "4k"})
    assert status == 400 and "720p, 1080p" in body["error"]["message"], body
    status, body = await post(client, clock, VIDEOS, {"prompt": "x", "model": "dreamina_not_listed_v1"})
    assert status == 400 and body["error"]["code"] == "UNKNOWN_MODEL", body
    sim.settings.shown_models.clear()
    await clock.advance(301)  # the cached list expires; the upstream no longer lists the key
    status, body = await post(client, clock, VIDEOS, {"prompt": "x", "model": WAN})
    assert status == 400 and body["error"]["code"] == "UNKNOWN_MODEL", body
    assert sim.generate_count == 0


def test_a_discovered_model_can_be_named_by_its_display_name() -> None:
    found = parse_models("video", DOCUMENTED)
    by_name = video_choice("Wan 3.0", Region.CN, found)
    assert by_name is not None and (by_name.name, by_name.key, by_name.source) == (WAN, WAN, "discovery")
    # The display name of a table model resolves to the table's name, with discovery's durations.
    table = video_choice("即梦 Seedance 2.5", Region.CN, found)
    assert table is not None and (table.name, table.source) == ("jimeng-video-seedance-2.5", "table+discovery")
    assert table.durations == (4, 5, 10, 30) and table.benefits == {}, "the table's benefit types win"
    assert video_choice("withdrawn_key_x", Region.CN, found) is None, "an unavailable entry is not offered"
    assert video_choice(WAN, Region.CN, None) is None, "without discovery a key the table lacks is unknown"


async def test_discovered_durations_win_over_the_table(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    # The table says jimeng-video-3.5-pro takes 5, 10, 12 s; the simulator's own facts list 5, 10, 12 too, so
    # narrow them through the discovery answer: withdraw the real entry and list the key with 5 s only.
    sim.settings.withdrawn_models.add(DEFAULT_KEY)
    sim.settings.extra_models.append(
        {
            "kind": "video",
            "model_req_key": DEFAULT_KEY,
            "model_name": "Seedance 1.5 Pro",
            "options": [{"key": "frames", "enum_val": {"int_value": [120]}}],
        }
    )
    await client.get("/v1/models", headers=bearer(CN_TOKEN))  # discovery answers (and is cached)
    resp = await client.get("/v1/models", headers=bearer(CN_TOKEN))
    entry = {m["id"]: m for m in (await json_of(resp))["data"]}["jimeng-video-3.5-pro"]
    assert (entry["source"], entry["durations"]) == ("table+discovery", [5])
    status, body = await post(client, clock, VIDEOS, {"prompt": "x", "model": "jimeng-video-3.5-pro", "duration": 10})
    assert status == 400 and "must be 5 seconds" in body["error"]["message"], body
    assert sim.generate_count == 0


async def test_the_table_default_resolution_stays_first_with_discovery(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    resp = await client.get("/v1/models", headers=bearer(CN_TOKEN))  # the list (480p first upstream) is cached
    entry = {m["id"]: m for m in (await json_of(resp))["data"]}["jimeng-video-seedance-2.5"]
    assert entry["source"] == "table+discovery" and entry["resolutions"] == ["720p", "480p", "1080p"], entry
    status, body = await post(client, clock, VIDEOS, {"prompt": "x", "model": "jimeng-video-seedance-2.5"})
    assert status == 200, body
    assert sent(sim)[2]["resolution"] == "720p", "no resolution sent: the table's default, not the list's first"


async def test_a_table_benefit_type_is_not_overridden_by_discovery(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.withdrawn_models.add("dreamina_seedance_40_mini")
    sim.settings.extra_models.append(
        {
            "kind": "video",
            "model_req_key": "dreamina_seedance_40_mini",
            "options": [{"key": "resolution", "enum_val": {"string_value": ["720p"]}}],
            "commercial_config": {
                "resolution_price_configs": [{"resolution": "720p", "price": {"benefit_type": "listed_only_name"}}]
            },
        }
    )
    resp = await client.get("/v1/models", headers=bearer(CN_TOKEN))
    assert resp.status == 200
    sim.settings.withdrawn_models.discard("dreamina_seedance_40_mini")
    status, body = await post(client, clock, VIDEOS, {"prompt": "x", "model": "jimeng-video-seedance-2.0-mini"})
    assert status == 200, body
    outer, _, _ = sent(sim)
    assert "listed_only_name" not in json.dumps(outer["extend"]), "the table's captured benefit type is sent"


async def test_a_withdrawn_default_is_replaced_by_the_discovered_one(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.withdrawn_models.add(DEFAULT_KEY)  # ret 2061 at generate, and absent from discovery
    status, body = await post(client, clock, VIDEOS, {"prompt": "a cat"})
    assert status == 200, body
    assert body["model"] == "jimeng-video-seedance-2.5", "the site's default (first listed), named in the answer"
    generated = [c.body["extend"]["root_model"] for c in sim.calls("/aigc_draft/generate")]
    assert generated == [DEFAULT_KEY, "dreamina_seedance_45_pro"], "the refused default, then the discovered one"
    assert sim.generate_count == 1, "one accepted generate: nothing charged twice"

    # Now discovery is cached and lacks the default: the next unnamed request goes straight to the discovered
    # default (the async twin; its record, and so its chat/MCP views, carry that model).
    status, body = await post(client, clock, ASYNC_VIDEOS, {"prompt": "a dog"})
    assert status == 200 and body["status"] == "submitted", body
    generated = [c.body["extend"]["root_model"] for c in sim.calls("/aigc_draft/generate")]
    assert generated[2:] == ["dreamina_seedance_45_pro"], "no second try of the withdrawn key"
    (resp,) = await drive(client.app, clock, client.get(f"/v1/videos/{body['history_id']}", headers=bearer(CN_TOKEN)))
    view = await json_of(resp)
    assert resp.status == 200 and view["model"] == "jimeng-video-seedance-2.5", "the task's record names it"


async def test_a_named_withdrawn_model_is_not_replaced(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.withdrawn_models.add(DEFAULT_KEY)
    status, body = await post(client, clock, VIDEOS, {"prompt": "x", "model": "jimeng-video-3.5-pro"})
    assert status == 400 and body["error"]["code"] == "MODEL_WITHDRAWN", body
    assert sim.generate_count == 0
