"""Expiring result links in the simulator (§19.4, §19.14): `x-expires` on every CDN URL, 403 once expired, the
`get_image_by_uri` re-sign call (videos: tests/results/test_result_links.py, through the server's client)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from sim_helpers import CN_SESSION, US_SESSION, Upstream, image_body

from jimeng_server.simulator import Simulator
from jimeng_server.upstream.regions import Region

IMAGE_BY_URI = "/mweb/v1/get_image_by_uri"


async def finished_image(up: Upstream, prompt: str = "a cat") -> tuple[str, list[dict[str, Any]]]:
    reply = await up.generate(image_body(prompt=prompt))
    assert reply.ret == "0", reply.json
    hid: str = reply.data["aigc_data"]["history_record_id"]
    await up.clock.advance(5)
    items = (await up.history([hid])).data[hid]["item_list"]
    assert len(items) == 4
    return hid, items


def expires_of(url: str) -> int:
    return int(parse_qs(urlsplit(url.replace("\\u0026", "&")).query)["x-expires"][-1])


async def fetch(up: Upstream, url: str) -> tuple[int, str]:
    host = str(up.client.make_url("/")).rstrip("/")
    async with up.client.get(url.replace("\\u0026", "&").removeprefix(host)) as resp:
        return resp.status, resp.content_type


async def test_urls_expire_after_the_ttl_and_the_cdn_refuses_them(up: Upstream, sim: Simulator) -> None:
    sim.settings.result_url_ttl = 120.0
    _, items = await finished_image(up)
    url = items[1]["image"]["large_images"][0]["image_url"]
    assert expires_of(url) == int(up.clock.time() + 120)
    assert await fetch(up, url) == (200, "image/png")
    await up.clock.advance(121)
    assert (await fetch(up, url))[0] == 403
    assert sim.journal[-1].vhost == "cdn" and sim.journal[-1].status == 403
    # A forged expiry breaks the signature: 403 too, even while "valid".
    forged = url.replace(f"x-expires={expires_of(url)}", f"x-expires={expires_of(url) + 9999}")
    assert (await fetch(up, forged))[0] == 403


async def test_prompt_marker_sets_a_records_ttl(up: Upstream) -> None:
    _, items = await finished_image(up, "short [sim:ttl=2]")
    url = items[0]["image"]["large_images"][0]["image_url"]
    assert expires_of(url) == int(up.clock.time() + 2)
    await up.clock.advance(3)
    assert (await fetch(up, url))[0] == 403


async def test_get_image_by_uri_re_signs_with_a_fresh_expiry(up: Upstream, sim: Simulator) -> None:
    _, items = await finished_image(up, "re-sign me [sim:ttl=2]")
    uris = [item["image"]["large_images"][0]["image_uri"] for item in items]
    assert all(u.startswith("tos-cn-i-") for u in uris)
    assert [item["common_attr"]["cover_uri"] for item in items] == uris
    await up.clock.advance(10)  # every link above is dead now
    reply = await up.call(IMAGE_BY_URI, {"uris": uris[:2]})
    assert reply.ret == "0"
    table = reply.data["uri2image"]
    assert set(table) == set(uris[:2])
    for uri in uris[:2]:
        entry = table[uri]
        assert entry["image_uri"] == uri
        assert expires_of(entry["image_url"]) == int(up.clock.time() + 2)
        assert await fetch(up, entry["image_url"]) == (200, "image/png")


async def test_get_image_by_uri_refuses_the_singular_key_and_hides_other_accounts(up: Upstream) -> None:
    _, items = await finished_image(up)
    uri = items[0]["image"]["large_images"][0]["image_uri"]
    for body in ({"image_uri": uri}, {"uri": uri}, {"uris": []}, {"uris": "x"}):
        reply = await up.call(IMAGE_BY_URI, body)
        assert reply.ret == "1000" and reply.json["errmsg"] == "invalid parameter"
    other = await up.call(IMAGE_BY_URI, {"uris": [uri, "tos-cn-i-sim/0-0"]}, session=US_SESSION, region=Region.US)
    assert other.ret == "0" and other.data["uri2image"] == {}
    own = await up.call(IMAGE_BY_URI, {"uris": [uri]}, session=CN_SESSION)
    assert list(own.data["uri2image"]) == [uri]
