"""The simulator reads the image count only where the upstream does (§17.1), bills per image made, refuses
drafts missing a version field, and checks the request frame of CN user_credit (ret 1014, §17.5)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sim_helpers import CN_SESSION, Upstream, image_body

from jimeng_server.simulator import Simulator


def _abilities(draft: dict[str, Any]) -> dict[str, Any]:
    abilities: dict[str, Any] = draft["component_list"][0]["abilities"]
    return abilities


def _option(count: int) -> dict[str, Any]:
    return {"type": "", "id": str(uuid.uuid4()), "gen_count": count, "generate_all": False}


def count_at_abilities(count: int) -> dict[str, Any]:
    """The 2026 body: gen_option a sibling of generate, benefitCount = count."""

    def move(draft: dict[str, Any]) -> None:
        abilities = _abilities(draft)
        del abilities["generate"]["gen_option"]
        abilities["gen_option"] = _option(count)

    return image_body(draft=move, scene=lambda s: s.__setitem__("benefitCount", count))


async def _made_and_charged(up: Upstream, sim: Simulator, body: dict[str, Any]) -> tuple[int, int]:
    before = sim.account(CN_SESSION).total
    reply = await up.generate(body)
    assert reply.ret == "0", reply.json
    hid = reply.data["aigc_data"]["history_record_id"]
    await up.clock.advance(60)
    record = (await up.history([hid])).data[hid]
    assert record["status"] == 10
    return len(record["item_list"]), before - sim.account(CN_SESSION).total


@pytest.mark.parametrize("count", [1, 2, 3])
async def test_count_at_abilities_level_makes_and_bills_that_many(up: Upstream, sim: Simulator, count: int) -> None:
    assert await _made_and_charged(up, sim, count_at_abilities(count)) == (count, count * sim.settings.image_cost)


def _inside_generate(draft: dict[str, Any]) -> None:
    _abilities(draft)["generate"]["gen_option"]["gen_count"] = 1


def _on_component(draft: dict[str, Any]) -> None:
    draft["component_list"][0]["gen_option"] = _option(1)


@pytest.mark.parametrize("misplace", [_inside_generate, _on_component], ids=["inside-generate", "on-component"])
async def test_misplaced_count_is_ignored_and_the_default_four_are_billed(
    up: Upstream, sim: Simulator, misplace: Any
) -> None:
    body = image_body(draft=misplace, scene=lambda s: s.__setitem__("benefitCount", 1))
    assert await _made_and_charged(up, sim, body) == (4, 4 * sim.settings.image_cost)


async def test_count_rules(up: Upstream, sim: Simulator) -> None:
    disagree = count_at_abilities(2)
    disagree_scene = image_body(
        draft=lambda d: _abilities(d).__setitem__("gen_option", _option(2)),
        scene=lambda s: s.__setitem__("benefitCount", 4),
    )
    for body, ret, needle in ((disagree_scene, "4002", "benefitCount"), (count_at_abilities(9), "1000", "gen_count")):
        reply = await up.generate(body)
        assert reply.ret == ret and needle in reply.json["errmsg"], reply.json
    assert (await up.generate(disagree)).ret == "0"
    assert sim.generate_count == 1


@pytest.mark.parametrize(
    "field",
    ["min_version", "version", "component min_version"],
)
async def test_draft_without_a_version_field_is_refused(up: Upstream, sim: Simulator, field: str) -> None:
    def drop(draft: dict[str, Any]) -> None:
        if field == "component min_version":
            del draft["component_list"][0]["min_version"]
        else:
            del draft[field]

    reply = await up.generate(image_body(draft=drop))
    assert reply.ret == "4002" and "version" in reply.json["errmsg"], reply.json
    assert sim.generate_count == 0


async def test_cn_user_credit_with_a_wrong_referer_is_1014(up: Upstream) -> None:
    reply = await up.call("/commerce/v1/benefits/user_credit", headers={"Referer": "http://127.0.0.1/"})
    assert (reply.ret, reply.json["errmsg"]) == ("1014", "system busy")
    assert (await up.call("/commerce/v1/benefits/user_credit")).ret == "0"
