"""The upstream of 2026 over real HTTP against the simulator: `n` and per-image billing, the new image and
Seedance models with their regions, resolutions and benefit types, withdrawn models (ret 2061) and risk-control
refusals (4013) with cool-down and fail-over."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, CN_TOKEN_2, US_TOKEN, bearer, drive, json_of

from jimeng_server.api.appkeys import ACCOUNTS
from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.media import png
from jimeng_server.upstream import catalog
from jimeng_server.upstream.tokens import parse_token

IMAGES = "/v1/images/generations"
ASYNC_IMAGES = "/v1/async/images/generations"
VIDEOS = "/v1/videos/generations"


async def post(client: TestClient[Any, Any], clock: ManualClock, url: str, body: Any, *tokens: str) -> tuple[int, Any]:
    (resp,) = await drive(client.app, clock, client.post(url, json=body, headers=bearer(*(tokens or (CN_TOKEN,)))))
    return resp.status, await json_of(resp)


def sent(sim: Simulator) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The last generate body: outer body, decoded draft and sceneOptions[0]."""
    body = sim.calls("/aigc_draft/generate")[-1].body
    scene = json.loads(json.loads(body["metrics_extra"])["sceneOptions"])[0]
    return body, json.loads(body["draft_content"]), scene


# ---------------------------------------------------------------- n and per-image billing


@pytest.mark.parametrize("n", [1, 2])
async def test_n_makes_and_bills_that_many_images(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, n: int
) -> None:
    before = sim.account(CN_TOKEN).total
    status, body = await post(client, clock, IMAGES, {"prompt": "a fox", "model": "jimeng-4.7", "n": n})
    assert status == 200, body
    assert len(body["data"]) == n
    assert before - sim.account(CN_TOKEN).total == n * sim.settings.image_cost
    _, draft, scene = sent(sim)
    abilities = draft["component_list"][0]["abilities"]
    assert abilities["gen_option"]["gen_count"] == n and "gen_option" not in abilities["generate"]
    assert scene["benefitCount"] == n and draft["version"] == "3.0.2"


async def test_without_n_the_model_default_is_made_as_before(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    before = sim.account(CN_TOKEN).total
    status, body = await post(client, clock, IMAGES, {"prompt": "a fox"})
    assert status == 200 and len(body["data"]) == 4
    assert before - sim.account(CN_TOKEN).total == 4 * sim.settings.image_cost
    _, draft, _ = sent(sim)
    assert "gen_option" not in draft["component_list"][0]["abilities"]


async def test_async_submit_takes_n(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    before = sim.account(CN_TOKEN).total
    status, body = await post(client, clock, ASYNC_IMAGES, {"prompt": "a fox", "n": 3})
    assert status == 200, body
    assert before - sim.account(CN_TOKEN).total == 3 * sim.settings.image_cost
    record = sim.records[body["history_id"]]
    assert record.script.max_items == 3


async def test_five_lite_takes_up_to_eight(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    status, body = await post(client, clock, IMAGES, {"prompt": "x", "model": "jimeng-5.0-lite", "n": 8})
    assert status == 200 and len(body["data"]) == 8


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"n": 0}, "'n' must be from 1 to 8"),
        ({"n": 9}, "'n' must be from 1 to 8"),
        ({"n": "two"}, "'n' must be a whole number"),
        ({"n": 5, "model": "jimeng-5.0-pro"}, "'n' must be from 1 to 4 for jimeng-5.0-pro"),
        ({"n": 2, "multi_image": True}, "cannot be combined"),
    ],
)
async def test_bad_n_is_400_before_anything_is_spent(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, fields: dict[str, Any], needle: str
) -> None:
    status, body = await post(client, clock, IMAGES, {"prompt": "x", **fields})
    assert status == 400 and needle in body["error"]["message"], body
    assert sim.generate_count == 0


# ---------------------------------------------------------------- new image models


async def test_five_pro_takes_1_5k_in_cn_only(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    status, body = await post(client, clock, IMAGES, {"prompt": "x", "model": "jimeng-5.0-pro", "resolution": "1.5k"})
    assert status == 200 and len(body["data"]) == 2, body  # its default count is 2
    _, draft, _ = sent(sim)
    large = draft["component_list"][0]["abilities"]["generate"]["core_param"]["large_image_info"]
    assert (large["width"], large["height"], large["resolution_type"]) == (1536, 1536, "1.5k")
    status, body = await post(client, clock, IMAGES, {"prompt": "x", "model": "jimeng-5.0-pro"}, US_TOKEN)
    assert status == 400 and "jimeng-5.0-pro" in body["error"]["message"] and "jimeng-4.5" in body["error"]["message"]
    status, body = await post(client, clock, IMAGES, {"prompt": "x", "model": "jimeng-4.7", "resolution": "1.5k"})
    assert status == 400 and "2k, 4k" in body["error"]["message"]


@pytest.mark.parametrize("model", ["jimeng-4.7", "jimeng-5.0-lite", "jimeng-5.0"])
async def test_new_image_models_in_cn_refused_in_us(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, model: str
) -> None:
    status, body = await post(client, clock, IMAGES, {"prompt": "x", "model": model, "n": 1})
    assert status == 200 and len(body["data"]) == 1, body
    assert sent(sim)[0]["extend"]["root_model"] == catalog.IMAGE_MODELS[model][parse_token(CN_TOKEN).region]
    status, body = await post(client, clock, IMAGES, {"prompt": "x", "model": model}, US_TOKEN)
    assert status == 400 and body["error"]["code"] == "UNSUPPORTED_MODEL"


# ---------------------------------------------------------------- Seedance 2.x


@pytest.mark.parametrize(
    ("model", "resolution", "benefit"),
    [
        ("jimeng-video-seedance-2.0-vip", "1080p", "seedance_20_pro_1080p_output"),
        ("jimeng-video-seedance-2.0-vip", "4k", "seedance_20_pro_4k_output"),
        ("jimeng-video-seedance-2.0-fast-vip", None, "seedance_20_fast_720p_output"),
        ("jimeng-video-seedance-2.0-mini", "720p", "seedance_20_mini_720p_output"),
        ("jimeng-video-seedance-2.5", None, "seedance_25_720p_output"),
        ("jimeng-video-seedance-2.5-draft", None, "seedance_25_draft_480p_no_input_video_output"),
        ("jimeng-video-seedance-2.0-lite", None, "seedance_2_0_lite"),
    ],
)
async def test_seedance_models_send_resolution_and_benefit(
    client: TestClient[Any, Any],
    clock: ManualClock,
    sim: Simulator,
    model: str,
    resolution: str | None,
    benefit: str,
) -> None:
    fields: dict[str, Any] = {"prompt": "a wave", "model": model, "duration": 4}
    if resolution:
        fields["resolution"] = resolution
    status, body = await post(client, clock, VIDEOS, fields)
    assert status == 200, body
    outer, draft, scene = sent(sim)
    assert "commerce_with_input_video" not in sim.calls("/aigc_draft/generate")[-1].query  # no input video
    assert outer["extend"]["m_video_commerce_info"]["benefit_type"] == benefit
    assert outer["extend"]["m_video_commerce_info_list"][0]["benefit_type"] == benefit
    video_input = draft["component_list"][0]["abilities"]["gen_video"]["text_to_video_params"]["video_gen_inputs"][0]
    expected = resolution or (catalog.video_resolutions(model) or (None,))[0]
    assert video_input.get("resolution") == expected and scene.get("resolution") == expected
    status, body = await post(client, clock, VIDEOS, {**fields, "resolution": None}, US_TOKEN)
    assert status == 400 and body["error"]["code"] == "UNSUPPORTED_MODEL"


async def test_mini_1080p_and_long_durations_are_refused(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    status, body = await post(
        client, clock, VIDEOS, {"prompt": "x", "model": "jimeng-video-seedance-2.0-mini", "resolution": "1080p"}
    )
    assert status == 400 and "720p" in body["error"]["message"]
    status, body = await post(
        client, clock, VIDEOS, {"prompt": "x", "model": "jimeng-video-seedance-2.0-mini", "duration": 16}
    )
    assert status == 400 and "4 to 15" in body["error"]["message"]
    status, body = await post(
        client, clock, VIDEOS, {"prompt": "x", "model": "jimeng-video-seedance-2.5", "duration": 31}
    )
    assert status == 400 and "4 to 30" in body["error"]["message"] and "30-180 s" in body["error"]["message"]
    assert sim.generate_count == 0


def test_benefit_types_come_from_each_models_record() -> None:
    assert catalog.video_benefit_type("dreamina_seedance_40_pro_vision", "720p") == "seedance_20_pro_720p_output"
    assert catalog.video_benefit_type("dreamina_seedance_40_pro") == "dreamina_video_seedance_20_pro"
    assert catalog.video_benefit_type("dreamina_seedance_40") == "dreamina_seedance_20_fast"


# ---------------------------------------------------------------- VIP, withdrawn, risk control


async def test_vip_model_on_a_free_account_is_4013_with_fail_over(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.account(CN_TOKEN).free = True
    fields = {"prompt": "x", "model": "jimeng-video-seedance-2.0-vip", "duration": 4}
    status, body = await post(client, clock, VIDEOS, fields, CN_TOKEN)
    assert status == 502 and body["error"]["code"] == "RISK_CONTROL_REJECTED"
    assert "subscription" in body["error"]["message"] and "browser" in body["error"]["message"]
    cool = client.app[ACCOUNTS].cooldown(parse_token(CN_TOKEN), fields["model"])  # scoped to the refused model
    assert cool is not None and cool.reason == "RISK_CONTROL_REJECTED"
    assert cool.until - clock.time() == pytest.approx(3600, abs=60)
    # Fail-over: nothing was spent, the next token makes it; the cooled-down one is now tried last.
    before = sim.account(CN_TOKEN).total
    status, body = await post(client, clock, VIDEOS, fields, CN_TOKEN, CN_TOKEN_2)
    assert status == 200, body
    assert [c.sessionid for c in sim.calls("/aigc_draft/generate")][-1] == CN_TOKEN_2
    assert sim.account(CN_TOKEN).total == before and sim.generate_count == 1
    # The free model works on the free account.
    status, _ = await post(client, clock, VIDEOS, {**fields, "model": "jimeng-video-seedance-2.0-lite"}, CN_TOKEN)
    assert status == 200


async def test_withdrawn_model_names_what_the_region_has(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.withdrawn_models.add("dreamina_ic_generate_video_model_vgfm_3.0")
    status, body = await post(client, clock, VIDEOS, {"prompt": "x", "model": "jimeng-video-3.0"})
    assert status == 400 and body["error"]["code"] == "MODEL_WITHDRAWN"
    message = body["error"]["message"]
    assert "2061" in message and "jimeng-video-seedance-2.5" in message and "'jimeng-video-3.0'" in message
    assert sim.generate_count == 0


async def test_composition_takes_n(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    image = "data:image/png;base64," + base64.b64encode(png(40, 30, (200, 10, 10))).decode()
    before = sim.account(CN_TOKEN).total
    (resp,) = await drive(
        client.app,
        clock,
        client.post(
            "/v1/images/compositions", json={"prompt": "x", "images": [image], "n": 2}, headers=bearer(CN_TOKEN)
        ),
    )
    body = await json_of(resp)
    assert resp.status == 200 and len(body["data"]) == 2, body
    assert before - sim.account(CN_TOKEN).total == 2 * sim.settings.image_cost
    _, draft, scene = sent(sim)
    abilities = draft["component_list"][0]["abilities"]
    assert abilities["gen_option"]["gen_count"] == 2 and scene["benefitCount"] == 2 and "blend" in abilities


async def test_omni_benefit_types_are_config(make_client: Any, config: Any, clock: ManualClock, sim: Simulator) -> None:
    up = dataclasses.replace(config.upstream, omni_benefit_pro="dreamina_video_seedance_20_pro_with_video")
    client = await make_client(upstream=up)
    form = aiohttp.FormData()
    form.add_field("model", "jimeng-video-seedance-2.0")
    form.add_field("functionMode", "omni_reference")
    form.add_field("prompt", "@image_file_1 waves")
    form.add_field("image_file_1", png(20, 20, (1, 2, 3)), filename="a.png", content_type="image/png")
    (resp,) = await drive(client.app, clock, client.post(VIDEOS, data=form, headers=bearer(CN_TOKEN)))
    assert resp.status == 200  # §17.10 conflict: nobody reports a refusal of either value, the witness takes both
    extend = sim.calls("/aigc_draft/generate")[-1].body["extend"]
    assert extend["m_video_commerce_info"]["benefit_type"] == "dreamina_video_seedance_20_pro_with_video"
