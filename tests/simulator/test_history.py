"""History timelines, markers, visibility rules, item URLs and the CDN PNGs."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest
from sim_helpers import CN_SESSION, HISTORY, PASSPORT, US_SESSION, Upstream, image_body

from jimeng_server.simulator import Script, Simulator, Step
from jimeng_server.upstream.regions import Region


async def submit(up: Upstream, prompt: str = "a cute cat", **kw: Any) -> str:
    reply = await up.generate(image_body(prompt=prompt, **kw))
    assert reply.ret == "0", reply.json
    hid: str = reply.data["aigc_data"]["history_record_id"]
    return hid


async def observe(up: Upstream, hid: str, steps: int, step: float = 1.0) -> list[tuple[int, int, str, int]]:
    """Poll once per step: (status, items, fail_code, finish_time) each time."""
    seen = []
    for _ in range(steps):
        data = (await up.history([hid])).data
        rec = data[hid]
        seen.append((rec["status"], len(rec["item_list"]), rec["fail_code"], rec["task"]["finish_time"]))
        await up.clock.advance(step)
    return seen


async def test_default_script_fills_gradually(up: Upstream, sim: Simulator) -> None:
    hid = await submit(up)
    created = sim.records[hid].created_at
    seen = await observe(up, hid, 6)
    assert [s[:2] for s in seen] == [(20, 0), (20, 1), (42, 2), (45, 4), (10, 4), (10, 4)]
    assert [s[3] for s in seen[:4]] == [0, 0, 0, 0]
    assert seen[4][3] == int(created + 4) and seen[5][3] == int(created + 4)
    assert sim.records[hid].polls == 6


async def test_record_fields(up: Upstream, sim: Simulator) -> None:
    hid = await submit(up)
    rec = (await up.history([hid])).data[hid]
    assert rec["history_record_id"] == hid
    assert rec["origin_history_record_id"] is None
    assert rec["generate_type"] == 12
    assert isinstance(rec["created_time"], float)
    assert rec["fail_code"] == ""


MARKER_TIMELINES: dict[str, list[tuple[int, int, str]]] = {
    "[sim:fail]": [(20, 0, ""), (20, 0, ""), (30, 0, "2038"), (30, 0, "2038")],
    "[sim:partial]": [(20, 0, ""), (20, 1, ""), (30, 1, "1001"), (30, 1, "1001")],
    "[sim:stuck]": [(20, 1, "")] * 4,
    "[sim:stuck0]": [(20, 0, "")] * 4,
    "[sim:status50]": [(20, 0, ""), (20, 1, ""), (42, 2, ""), (45, 4, ""), (50, 4, "")],
    "[sim:unknown]": [(99, 0, ""), (99, 0, ""), (99, 0, ""), (10, 4, "")],
    "[sim:empty]": [(20, 0, ""), (50, 0, ""), (50, 0, "")],
    "[sim:precheck]": [(20, 0, ""), (10, 0, "")],
    "[sim:postcheck]": [(20, 0, ""), (20, 1, ""), (40, 0, "")],
    "[sim:deleted]": [(20, 0, ""), (20, 1, ""), (100, 0, "")],
}


@pytest.mark.parametrize("marker", sorted(MARKER_TIMELINES))
async def test_marker_scripts(up: Upstream, marker: str) -> None:
    expected = MARKER_TIMELINES[marker]
    hid = await submit(up, f"a cat {marker}")
    seen = await observe(up, hid, len(expected))
    assert [s[:3] for s in seen] == expected
    for status, _, _, finish in seen:
        assert (finish > 0) == (status in (10, 30, 40, 50, 100))


def pending_script(sim: Simulator) -> object:
    """`sim.next_script`, read through a call so mypy does not keep the narrowing from the assignment."""
    return sim.next_script


async def test_next_script_overrides_and_is_cleared(up: Upstream, sim: Simulator) -> None:
    sim.next_script = Script([Step(20, 0), Step(10, 2)])
    hid = await submit(up, "a cat [sim:fail]")
    assert pending_script(sim) is None
    assert [s[:2] for s in await observe(up, hid, 2)] == [(20, 0), (10, 2)]
    sim.next_script = [Step(30, 0, "1017")]  # a plain list is accepted too
    hid2 = await submit(up)
    assert (await observe(up, hid2, 1))[0][:3] == (30, 0, "1017")
    assert sim.records[hid2].script == [Step(30, 0, "1017")]


async def test_step_seconds_setting(up: Upstream, sim: Simulator) -> None:
    sim.settings.image_step_seconds = 10.0
    hid = await submit(up)
    assert [s[:2] for s in await observe(up, hid, 3, step=5.0)] == [(20, 0), (20, 0), (20, 1)]


async def test_hidden_polls_marker_and_setting(up: Upstream, sim: Simulator) -> None:
    hid = await submit(up, "a cat [sim:hidden=2]")
    assert (await up.history([hid])).data == {}
    assert (await up.history([hid])).data == {}
    assert hid in (await up.history([hid])).data
    assert sim.records[hid].polls == 3
    sim.settings.hidden_polls = 1
    hid2 = await submit(up)
    assert (await up.history([hid2])).data == {}
    assert hid2 in (await up.history([hid2])).data


async def test_expire_marker_expires_session_after_first_poll(up: Upstream, sim: Simulator) -> None:
    hid = await submit(up, "a cat [sim:expire]")
    assert hid in (await up.history([hid])).data
    assert sim.account(CN_SESSION).expired
    assert (await up.history([hid])).ret == "1015"
    assert (await up.call(PASSPORT)).ret == "1015"


async def test_ownership_and_unknown_ids(up: Upstream, sim: Simulator) -> None:
    hid = await submit(up)
    sim.add_account("sess-cn-other", region=Region.CN)
    assert (await up.history([hid], session="sess-cn-other")).data == {}
    assert sim.records[hid].polls == 0
    assert (await up.history([hid], session=US_SESSION, region=Region.US)).data == {}
    assert (await up.history(["1234567890123", hid])).data.keys() == {hid}


async def test_batch_of_ids_in_one_call(up: Upstream, sim: Simulator) -> None:
    a = await submit(up)
    await up.clock.advance(2)
    b = await submit(up, "b [sim:fail]")
    c = await submit(up, "c [sim:stuck]")
    data = (await up.history([a, b, c])).data
    assert {k: (v["status"], len(v["item_list"])) for k, v in data.items()} == {
        a: (42, 2),
        b: (20, 0),
        c: (20, 1),
    }
    assert len(sim.calls(HISTORY)) == 1


async def test_history_request_validation(up: Upstream) -> None:
    assert (await up.call(HISTORY, {"history_ids": []})).ret == "4002"
    assert (await up.call(HISTORY, {"history_ids": "123"})).ret == "4002"
    assert (await up.call(HISTORY, {"history_ids": [123]})).ret == "4002"
    assert (await up.call(HISTORY, {"history_ids": [str(i) for i in range(101)]})).ret == "4002"
    reply = await up.call(HISTORY, {"history_ids": ["1"], "image_info": {"width": 1, "height": 1, "format": 3}})
    assert reply.ret == "4002"
    assert "image_info.format" in reply.json["errmsg"]
    bad_scene = {"width": 1, "height": 1, "format": "webp", "image_scene_list": [{"scene": "normal"}]}
    assert (await up.call(HISTORY, {"history_ids": ["1"], "image_info": bad_scene})).ret == "4002"
    assert (await up.call(HISTORY, {"history_ids": ["1"]})).ret == "0"  # image_info is optional (video polls)


async def test_refund_on_failure(up: Upstream, sim: Simulator) -> None:
    sim.settings.refund_on_failure = True
    hid = await submit(up, "x [sim:fail]")
    assert sim.account(CN_SESSION).vip_credit == 96
    await observe(up, hid, 4)
    assert sim.account(CN_SESSION).vip_credit == 100
    assert sim.charges == [(CN_SESSION, hid, 4), (CN_SESSION, hid, -4)]


async def test_no_refund_by_default(up: Upstream, sim: Simulator) -> None:
    hid = await submit(up, "x [sim:fail]")
    await observe(up, hid, 4)
    assert sim.account(CN_SESSION).vip_credit == 96


def _read_png(data: bytes) -> tuple[int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos = 8
    chunks: dict[bytes, bytes] = {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    assert set(chunks) == {b"IHDR", b"IDAT", b"IEND"}
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour) == (8, 2)
    return width, height, zlib.decompress(chunks[b"IDAT"])


async def test_item_urls_and_cdn_png(up: Upstream, sim: Simulator) -> None:
    hid = await submit(up)
    await up.clock.advance(4)
    items = (await up.history([hid])).data[hid]["item_list"]
    urls = [item["image"]["large_images"][0]["image_url"] for item in items]
    assert len(urls) == 4
    assert ["\\u0026" in u for u in urls] == [True, False, True, False]
    assert all(item["item_id"] and item["common_attr"]["id"] == item["item_id"] for item in items)
    assert items[0]["image"]["large_images"][0]["width"] == 2048
    host = str(up.client.make_url("/")).rstrip("/")
    pixels = set()
    for n, url in enumerate(urls):
        assert url.startswith(f"{host}/cdn/img/{hid}/{n}.png?sig=")
        fixed = url.replace("\\u0026", "&")
        async with up.client.get(fixed.removeprefix(host)) as resp:
            assert resp.status == 200
            assert resp.content_type == "image/png"
            width, height, raw = _read_png(await resp.read())
        assert (width, height) == (64, 64)
        assert len(raw) == 64 * (1 + 64 * 3)
        pixels.add(raw[1:4])
    assert len(pixels) == 4  # colour differs per item
    # the un-replaced literal breaks the signature
    async with up.client.get(urls[0].removeprefix(host)) as resp:
        assert resp.status == 403
    assert sim.calls(f"/cdn/img/{hid}/0.png", vhost="cdn")[0].status == 200


async def test_cdn_unknown_record_is_404(up: Upstream) -> None:
    async with up.client.get("/cdn/img/1234567890123/0.png?sig=x&t=1") as resp:
        assert resp.status == 404
        assert resp.content_type == "text/plain"


async def test_cdn_hand_made_url_without_sig_is_served(up: Upstream) -> None:
    hid = await submit(up)
    async with up.client.get(f"/cdn/img/{hid}/1.png") as resp:
        assert resp.status == 200
        assert (await resp.read())[:8] == b"\x89PNG\r\n\x1a\n"
    async with up.client.get(f"/cdn/img/{hid}/9.png") as resp:
        assert resp.status == 404  # beyond the script's items
    async with up.client.get(f"/cdn/img/{hid}/0.png?sig=abc&t=1") as resp:
        assert resp.status == 403


async def test_vod_vhost_refuses_unsigned_calls(up: Upstream) -> None:
    async with up.client.get("/vod/?Action=ApplyUploadInner&Version=2020-11-19") as resp:
        assert resp.status == 403
        assert (await resp.json())["ResponseMetadata"]["Error"]["Code"] == "SignatureDoesNotMatch"
    async with up.client.get("/vod/elsewhere") as resp:
        assert resp.status == 404
        assert resp.content_type == "text/plain"


async def test_imagex_vhosts_refuse_unsigned_calls(up: Upstream) -> None:
    async with up.client.get("/cn-imagex/?Action=ApplyImageUpload&Version=2018-08-01") as resp:
        assert resp.status == 403
        assert (await resp.json())["ResponseMetadata"]["Error"]["Code"] == "SignatureDoesNotMatch"
    async with up.client.get("/sg-imagex/") as resp:
        assert resp.status == 400
