"""The simulator's post-edit tools and frame interpolation (§19.5): shapes accepted, sizes, counts, prices,
ownership, and the refusals a strict upstream makes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sim_helpers import CN_SESSION, US_SESSION, Upstream, image_body

from jimeng_server.simulator import Simulator
from jimeng_server.simulator.scripts import Script, Step
from jimeng_server.upstream.postedit_payloads import (
    Expansion,
    InterpolationJob,
    OwnItem,
    PostEditJob,
    PostEditTool,
    build_interpolation_generate,
    build_postedit_generate,
)
from jimeng_server.upstream.regions import Region


async def _finished_image(up: Upstream, session: str = CN_SESSION, region: Region = Region.CN) -> dict[str, Any]:
    reply = await up.generate(image_body(region=region), session=session, region=region)
    assert reply.ret == "0", reply.json
    hid = reply.data["aigc_data"]["history_record_id"]
    await up.clock.advance(60)
    record: dict[str, Any] = (await up.history([hid], session=session, region=region)).data[hid]
    assert record["status"] == 10
    return record


def _body(job: PostEditJob) -> dict[str, Any]:
    return build_postedit_generate(job, region=Region.CN, version="3.3.28", now_ms=1_700_000_000_000)


async def _run(up: Upstream, body: dict[str, Any]) -> dict[str, Any]:
    reply = await up.generate(body)
    assert reply.ret == "0", reply.json
    hid = reply.data["aigc_data"]["history_record_id"]
    await up.clock.advance(60)
    record: dict[str, Any] = (await up.history([hid])).data[hid]
    return record


def _own(record: dict[str, Any], index: int = 0) -> OwnItem:
    return OwnItem(record["item_list"][index]["item_id"], record["history_record_id"])


def _sizes(record: dict[str, Any]) -> list[tuple[int, int]]:
    return [
        (i["image"]["large_images"][0]["width"], i["image"]["large_images"][0]["height"]) for i in record["item_list"]
    ]


@pytest.mark.parametrize(
    ("tool", "expansion", "items", "size", "price"),
    [
        (PostEditTool.NORMAL_HD, None, 1, (4096, 4096), 0),
        (PostEditTool.PRO_HD, None, 1, (2160, 2160), 1),
        (PostEditTool.PAINTING, Expansion(0.9, 0.9, 0.9, 0.9), 4, (4000, 4000), 4),
        (PostEditTool.SUPER_RESOLUTION, None, 1, (2048, 2048), 0),
    ],
)
async def test_tool_on_an_own_item(
    up: Upstream,
    sim: Simulator,
    tool: PostEditTool,
    expansion: Expansion | None,
    items: int,
    size: tuple[int, int],
    price: int,
) -> None:
    source = await _finished_image(up)
    assert _sizes(source)[0] == (2048, 2048)
    before = sim.account(CN_SESSION).total
    record = await _run(up, _body(PostEditJob(tool, _own(source), expansion=expansion)))
    assert record["status"] == 10
    assert _sizes(record) == [size] * items
    assert before - sim.account(CN_SESSION).total == price  # painting: 4 images at image_cost 1 (our choice)


async def test_outpaint_count_and_ratio(up: Upstream) -> None:
    source = await _finished_image(up)
    job = PostEditJob(PostEditTool.PAINTING, _own(source), expansion=Expansion(0, 0, 0.3889, 0.3889, 3), count=2)
    record = await _run(up, _body(job))
    assert _sizes(record) == [(4000, 2250)] * 2


async def test_repair_of_another_accounts_item_ends_in_status_30_free(up: Upstream, sim: Simulator) -> None:
    foreign = await _finished_image(up, US_SESSION, Region.US)
    before = sim.account(CN_SESSION).total
    record = await _run(up, _body(PostEditJob(PostEditTool.SUPER_RESOLUTION, _own(foreign))))
    assert record["status"] == 30 and record["item_list"] == []
    assert sim.account(CN_SESSION).total == before


async def test_repair_with_origin_image_ends_in_status_30(up: Upstream, sim: Simulator) -> None:
    source = await _finished_image(up)
    body = _body(PostEditJob(PostEditTool.NORMAL_HD, _own(source)))
    draft = json.loads(body["draft_content"])
    component = draft["component_list"][0]
    ability = component["abilities"].pop("normal_hd")
    ability["postedit_param"]["generate_type"] = 2
    ability["core_param"] = {"type": "", "id": "x", "generate_type": 0}
    ability["postedit_param"]["origin_image"] = {"type": "image", "source_from": "upload", "image_uri": "tos-x/y"}
    component["abilities"]["super_resolution"] = ability
    component["generate_type"] = "super_resolution"
    del component["gen_type"]
    body["draft_content"] = json.dumps(draft)
    sim.uploads.committed_by = lambda uri, sid: True  # type: ignore[method-assign]
    record = await _run(up, body)
    assert record["status"] == 30


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("gen_type",), 35, "gen_type must be 13"),
        (("abilities", "normal_hd", "postedit_param", "generate_type"), 2, "generate_type must be 13"),
    ],
)
async def test_wrong_codes_are_refused(up: Upstream, path: tuple[str, ...], value: Any, message: str) -> None:
    source = await _finished_image(up)
    body = _body(PostEditJob(PostEditTool.NORMAL_HD, _own(source)))
    draft = json.loads(body["draft_content"])
    target = draft["component_list"][0]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    body["draft_content"] = json.dumps(draft)
    reply = await up.generate(body)
    assert reply.ret == "4002" and message in reply.json["errmsg"]


async def test_missing_source_is_refused(up: Upstream) -> None:
    body = _body(PostEditJob(PostEditTool.NORMAL_HD, OwnItem("1", "1")))
    draft = json.loads(body["draft_content"])
    param = draft["component_list"][0]["abilities"]["normal_hd"]["postedit_param"]
    del param["item_id"], param["origin_history_id"]
    body["draft_content"] = json.dumps(draft)
    reply = await up.generate(body)
    assert reply.ret == "4002" and "origin_image, or item_id" in reply.json["errmsg"]


async def _finished_video(up: Upstream) -> dict[str, Any]:
    from jimeng_server.upstream.video_payloads import FrameJob, VideoVersions, build_frame_video_generate

    job = FrameJob(
        model_key="dreamina_ic_generate_video_model_vgfm_3.0",
        prompt="a cat",
        ratio="16:9",
        duration_s=5,
        resolution="720p",
    )
    body = build_frame_video_generate(job, region=Region.CN, versions=VideoVersions(), now_ms=1, seed=1)
    reply = await up.generate(body)
    assert reply.ret == "0", reply.json
    hid = reply.data["aigc_data"]["history_record_id"]
    await up.clock.advance(600)
    record: dict[str, Any] = (await up.history([hid])).data[hid]
    assert record["status"] == 10
    return record


async def test_interpolation_of_an_own_clip_is_free_and_60_fps(up: Upstream, sim: Simulator) -> None:
    source = await _finished_video(up)
    item = source["item_list"][0]
    own = OwnItem(item["common_attr"]["id"], source["history_record_id"])
    assert item["video"]["fps"] == 24
    before = sim.account(CN_SESSION).total
    body = build_interpolation_generate(
        InterpolationJob(vid=item["video"]["video_id"], duration_ms=5000, source=own),
        region=Region.CN,
        version="3.3.28",
        now_ms=1,
    )
    sim.next_script = None
    reply = await up.generate(body)
    assert reply.ret == "0", reply.json
    hid = reply.data["aigc_data"]["history_record_id"]
    await up.clock.advance(600)
    record = (await up.history([hid])).data[hid]
    assert record["status"] == 10
    assert record["item_list"][0]["video"]["fps"] == 60
    assert sim.account(CN_SESSION).total == before


async def test_interpolation_of_a_vid_not_in_the_account_fails(up: Upstream) -> None:
    body = build_interpolation_generate(
        InterpolationJob(vid="v-unknown", duration_ms=5000), region=Region.CN, version="3.3.28", now_ms=1
    )
    reply = await up.generate(body)
    assert reply.ret == "0", reply.json
    hid = reply.data["aigc_data"]["history_record_id"]
    await up.clock.advance(600)
    assert (await up.history([hid])).data[hid]["status"] == 30


def test_failed_script_is_final() -> None:
    assert Script([Step(20, 0), Step(30, 0)])[-1].final
