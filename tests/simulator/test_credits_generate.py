"""Credits (balance, daily claim) and generate validation, charging and refusal."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sim_helpers import CN_SESSION, CREDIT_RECEIVE, HK_SESSION, US_SESSION, USER_CREDIT, Upstream, image_body

from jimeng_server.simulator import Simulator
from jimeng_server.upstream.regions import Region


async def test_balance(up: Upstream, sim: Simulator) -> None:
    acct = sim.account(CN_SESSION)
    acct.gift_credit, acct.purchase_credit, acct.vip_credit = 3, 5, 7
    data = (await up.call(USER_CREDIT)).data
    assert data == {"credit": {"gift_credit": 3, "purchase_credit": 5, "vip_credit": 7}, "credits_detail": {}}
    assert acct.total == 15


async def test_receive_once_per_shanghai_day(up: Upstream, sim: Simulator) -> None:
    # 2026-01-01T00:00:00Z is 08:00 in Shanghai
    body = {"time_zone": "Asia/Shanghai"}
    first = await up.call(CREDIT_RECEIVE, body)
    assert first.ret == "0"
    assert first.data["receive_quota"] == 60
    assert sim.account(CN_SESSION).gift_credit == 60
    assert sim.account(CN_SESSION).received_days == {"2026-01-01"}
    again = await up.call(CREDIT_RECEIVE, body)
    assert (again.ret, again.json["errmsg"]) == ("34010100", "param error")
    await up.clock.advance(15 * 3600)  # 23:00 Shanghai, same day
    assert (await up.call(CREDIT_RECEIVE, body)).ret == "34010100"
    await up.clock.advance(3600)  # 00:00 next day in Shanghai
    assert (await up.call(CREDIT_RECEIVE, body)).ret == "0"
    assert sim.account(CN_SESSION).gift_credit == 120


async def test_receive_needs_time_zone_and_works_on_intl(up: Upstream, sim: Simulator) -> None:
    assert (await up.call(CREDIT_RECEIVE, {})).ret == "4002"
    sim.settings.receive_quota = 10
    reply = await up.call(CREDIT_RECEIVE, {"time_zone": "Asia/Shanghai"}, session=US_SESSION, region=Region.US)
    assert reply.ret == "0"
    assert up.sim.journal[-1].vhost == "us-commerce"
    assert sim.account(US_SESSION).gift_credit == 10


async def test_generate_success_charges_once_vip_first(up: Upstream, sim: Simulator) -> None:
    acct = sim.account(CN_SESSION)
    acct.vip_credit, acct.gift_credit, acct.purchase_credit = 2, 1, 10
    body = image_body()
    reply = await up.generate(body)
    assert reply.ret == "0"
    hid = reply.data["aigc_data"]["history_record_id"]
    assert hid.isdigit() and 13 <= len(hid) <= 14
    assert (acct.vip_credit, acct.gift_credit, acct.purchase_credit) == (0, 0, 9)
    assert sim.generate_count == 1
    assert sim.charges == [(CN_SESSION, hid, 4)]
    record = sim.records[hid]
    assert (record.kind, record.model_key, record.prompt) == ("image", body["extend"]["root_model"], "a cute cat")
    assert record.charged == 4
    assert record.submit_id == body["submit_id"]
    assert record.created_at == up.clock.time()


async def test_repeated_submit_id_is_not_deduplicated(up: Upstream, sim: Simulator) -> None:
    body = image_body()
    first = (await up.generate(body)).data["aigc_data"]["history_record_id"]
    second = (await up.generate(body)).data["aigc_data"]["history_record_id"]
    assert first != second
    assert sim.generate_count == 2
    assert sim.account(CN_SESSION).vip_credit == 92


async def test_4k_costs_more(up: Upstream, sim: Simulator) -> None:
    assert (await up.generate(image_body(resolution="4k"))).ret == "0"
    assert sim.account(CN_SESSION).vip_credit == 92


async def test_not_enough_credits_is_5000_without_record(up: Upstream, sim: Simulator) -> None:
    acct = sim.account(CN_SESSION)
    acct.vip_credit, acct.gift_credit, acct.purchase_credit = 1, 1, 1
    reply = await up.generate(image_body())
    assert (reply.ret, reply.json["errmsg"]) == ("5000", "not enough credits")
    assert reply.data == {"aigc_data": None, "fail_code": "", "fail_starling_key": "", "fail_starling_message": ""}
    assert sim.generate_count == 0
    assert sim.charges == []
    assert acct.total == 3


async def test_refuse_marker_is_2038(up: Upstream, sim: Simulator) -> None:
    reply = await up.generate(image_body(prompt="a [sim:refuse] cat"))
    assert reply.ret == "2038"
    assert sim.generate_count == 0
    assert sim.account(CN_SESSION).vip_credit == 100


def _set(key: str, value: Any) -> Any:
    return lambda d: d.__setitem__(key, value)


def _delete(key: str) -> Any:
    return lambda d: d.pop(key)


OTHER_UUID = "00000000-0000-4000-8000-000000000000"
NANO = "external_model_gemini_flash_image_v25"
PRO = "dreamina_image_lib_1"
BAD_BODIES: dict[str, tuple[dict[str, Any], str]] = {
    "metrics_extra as object": (
        image_body(outer=lambda b: b.__setitem__("metrics_extra", json.loads(b["metrics_extra"]))),
        "metrics_extra",
    ),
    "draft_content as object": (
        image_body(outer=lambda b: b.__setitem__("draft_content", json.loads(b["draft_content"]))),
        "draft_content",
    ),
    "draft_content not JSON": (image_body(outer=_set("draft_content", "{nope")), "draft_content"),
    "sceneOptions as list": (
        image_body(metrics=lambda m: m.__setitem__("sceneOptions", json.loads(m["sceneOptions"]))),
        "sceneOptions",
    ),
    "submit_id not uuid": (image_body(outer=_set("submit_id", "abc")), "submit_id"),
    "root_model differs": (image_body(outer=_set("extend", {"root_model": "high_aes_general_v40"})), "root_model"),
    "modelReqKey differs": (image_body(scene=_set("modelReqKey", "high_aes_general_v41")), "modelReqKey"),
    "model not in region": (image_body(model_key=NANO), "not served"),
    "main component id": (image_body(draft=_set("main_component_id", OTHER_UUID)), "main_component_id"),
    "size does not match": (
        image_body(core=lambda c: c["large_image_info"].__setitem__("width", 2047)),
        "size table",
    ),
    "ratio code of 2k at 4k": (image_body(resolution="4k", core=_set("image_ratio", 1)), "size table"),
    "image_ratio with intelligent": (image_body(intelligent=True, core=_set("image_ratio", 1)), "image_ratio"),
    "image_ratio missing": (image_body(core=_delete("image_ratio")), "image_ratio"),
    "generate_type": (
        image_body(draft=lambda d: d["component_list"][0].__setitem__("generate_type", "blend_x")),
        "generate_type",
    ),
    "basic scene without benefitCount": (image_body(scene=_delete("benefitCount")), "benefitCount"),
    "multi scene with benefitCount": (image_body(multi=True, scene=_set("benefitCount", 4)), "benefitCount"),
    "unknown scene": (image_body(scene=_set("scene", "Whatever")), "scene"),
    "intelligent on 3.0": (
        image_body(model="jimeng-3.0", model_key="high_aes_general_v30l:general_v3.0_18b", intelligent=True),
        "intelligent_ratio",
    ),
    "generateId differs": (image_body(metrics=_set("generateId", "x")), "generateId"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
async def test_structural_errors_are_4002(up: Upstream, sim: Simulator, case: str) -> None:
    body, needle = BAD_BODIES[case]
    reply = await up.generate(body)
    assert reply.ret == "4002", reply.json
    assert needle in reply.json["errmsg"]
    assert sim.generate_count == 0
    assert sim.account(CN_SESSION).vip_credit == 100


GOOD_BODIES: dict[str, tuple[dict[str, Any], Region]] = {
    "intelligent 4.5": (image_body(intelligent=True, ratio="16:9"), Region.CN),
    "multi 4.0": (image_body(multi=True, model="jimeng-4.0", model_key="high_aes_general_v40"), Region.CN),
    "1k 4:3": (image_body(ratio="4:3", resolution="1k"), Region.CN),
    "4k 21:9": (image_body(ratio="21:9", resolution="4k"), Region.CN),
    "nanobanana US": (
        image_body(model="nanobanana", model_key=NANO, region=Region.US, ratio="16:9"),
        Region.US,
    ),
    "nanobanana HK": (
        image_body(model="nanobanana", model_key=NANO, region=Region.HK, ratio="3:2"),
        Region.HK,
    ),
    "nanobananapro 4k HK": (
        image_body(model="nanobananapro", model_key=PRO, region=Region.HK, resolution="4k", ratio="16:9"),
        Region.HK,
    ),
}


@pytest.mark.parametrize("case", sorted(GOOD_BODIES))
async def test_valid_variants_accepted(up: Upstream, sim: Simulator, case: str) -> None:
    body, region = GOOD_BODIES[case]
    session = {Region.CN: CN_SESSION, Region.US: US_SESSION, Region.HK: HK_SESSION}[region]
    reply = await up.generate(body, session=session, region=region)
    assert reply.ret == "0", reply.json
    assert sim.generate_count == 1


async def test_nanobanana_us_must_use_its_fixed_size(up: Upstream) -> None:
    body = image_body(
        model="nanobanana",
        model_key=NANO,
        region=Region.US,
        core=lambda c: c["large_image_info"].update(width=2048, height=2048),
    )
    reply = await up.generate(body, session=US_SESSION, region=Region.US)
    assert reply.ret == "4002"
