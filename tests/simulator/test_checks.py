"""Routing, request-shape, version, Sign, cookie and region checks of the simulator."""

from __future__ import annotations

from urllib.parse import quote_plus

from sim_helpers import (
    CN_SESSION,
    GENERATE,
    HISTORY,
    HK_SESSION,
    PASSPORT,
    US_SESSION,
    USER_CREDIT,
    WEB_ID,
    Upstream,
    default_query,
    image_body,
)

from jimeng_server.simulator import Simulator, simulator_hosts
from jimeng_server.upstream.regions import Region


def test_simulator_hosts_layout() -> None:
    hosts = simulator_hosts("http://127.0.0.1:8123/")
    assert hosts[Region.CN] == {
        "web": "http://127.0.0.1:8123/cn-web",
        "commerce": "http://127.0.0.1:8123/cn-web",
        "imagex": "http://127.0.0.1:8123/cn-imagex",
        "vod": "http://127.0.0.1:8123/vod",
        "page": "http://127.0.0.1:8123/cn-web",
    }
    assert hosts[Region.US]["commerce"] == "http://127.0.0.1:8123/us-commerce"
    for region in (Region.HK, Region.JP, Region.SG):
        assert hosts[region]["web"] == "http://127.0.0.1:8123/sg-web"
        assert hosts[region]["commerce"] == "http://127.0.0.1:8123/sg-commerce"
        assert hosts[region]["imagex"] == "http://127.0.0.1:8123/sg-imagex"


async def test_valid_calls_pass(up: Upstream) -> None:
    assert (await up.call(USER_CREDIT)).ret == "0"
    assert (await up.call(USER_CREDIT, session=US_SESSION, region=Region.US)).ret == "0"
    assert (await up.call(USER_CREDIT, session=HK_SESSION, region=Region.HK)).ret == "0"
    assert (await up.call(PASSPORT, session=HK_SESSION, region=Region.HK)).ret == "0"


async def test_commerce_path_on_intl_web_vhost_is_plain_404(up: Upstream) -> None:
    reply = await up.call(USER_CREDIT, session=US_SESSION, region=Region.US, vhost="us-web")
    assert reply.status == 404
    assert reply.json is None
    assert reply.content_type == "text/plain"


async def test_web_path_on_commerce_vhost_and_unknown_paths_are_404(up: Upstream) -> None:
    assert (await up.call(PASSPORT, session=US_SESSION, region=Region.US, vhost="us-commerce")).status == 404
    assert (await up.call("/mweb/v1/nope", vhost="cn-web")).status == 404
    assert (await up.call(PASSPORT, vhost="nowhere")).status == 404
    assert (await up.call(PASSPORT, vhost="cn-imagex")).status == 404
    # CN commerce lives on the web host
    assert (await up.call(USER_CREDIT, vhost="cn-web")).ret == "0"


async def test_get_on_web_path_refused(up: Upstream) -> None:
    reply = await up.call(PASSPORT, method="GET")
    assert reply.status == 200
    assert reply.ret == "4002"
    assert "POST" in reply.json["errmsg"]


async def test_non_json_body_and_content_type(up: Upstream) -> None:
    reply = await up.call(HISTORY, raw_body=b"not json", headers={"Content-Type": "application/json"})
    assert reply.ret == "4002"
    reply = await up.call(HISTORY, raw_body=b'{"history_ids": ["1"]}', headers={"Content-Type": "text/plain"})
    assert reply.ret == "4002"
    assert "Content-Type" in reply.json["errmsg"]
    reply = await up.call(HISTORY, raw_body=b"[1]", headers={"Content-Type": "application/json"})
    assert reply.ret == "4002"


async def test_passport_accepts_empty_body(up: Upstream) -> None:
    reply = await up.call(PASSPORT)  # no body, no Content-Type
    assert reply.ret == "0"
    assert up.sim.journal[-1].body is None
    assert up.sim.journal[-1].body_size == 0


async def test_user_credit_refuses_any_query(up: Upstream) -> None:
    reply = await up.call(USER_CREDIT, query=default_query(Region.CN, GENERATE))
    assert reply.ret == "4002"
    assert "query" in reply.json["errmsg"]


async def test_envelope_shape(up: Upstream) -> None:
    body = (await up.call(USER_CREDIT)).json
    assert set(body) == {"ret", "errmsg", "systime", "logid", "data"}
    assert body["ret"] == "0"
    assert body["systime"] == str(int(up.clock.time()))
    error = (await up.call(GENERATE, {"x": 1})).json
    assert error["ret"] == "4002"
    assert error["data"] == {"aigc_data": None, "fail_code": "", "fail_starling_key": "", "fail_starling_message": ""}


async def test_old_appvr_is_3018(up: Upstream) -> None:
    reply = await up.call(USER_CREDIT, appvr="8.3.9")
    assert (reply.ret, reply.json["errmsg"]) == ("3018", "permission denied")
    assert (await up.call(PASSPORT, appvr="8.10.0")).ret == "0"  # numeric comparison


async def test_old_da_version_is_3018(up: Upstream) -> None:
    q = [(k, "3.3.8" if k == "da_version" else v) for k, v in default_query(Region.CN, PASSPORT)]
    assert (await up.call(PASSPORT, query=q)).ret == "3018"


async def test_bad_sign_is_1019(up: Upstream) -> None:
    reply = await up.call(USER_CREDIT, headers={"Sign": "0" * 32})
    assert (reply.ret, reply.json["errmsg"]) == ("1019", "shark not pass")
    assert (await up.call(USER_CREDIT, headers={"Sign-Ver": None})).ret == "1019"
    assert (await up.call(USER_CREDIT, headers={"Pf": "8"})).ret == "1019"
    # Sign computed for another path
    assert (await up.call(PASSPORT, headers={"Sign": "f3f7a12f5f13aca1846fe2ea4fd8a65e"})).ret == "1019"


async def test_stale_device_time_is_1019(up: Upstream) -> None:
    now = int(up.clock.time())
    assert (await up.call(USER_CREDIT, device_time=now - 301)).ret == "1019"
    assert (await up.call(USER_CREDIT, device_time=now + 301)).ret == "1019"
    assert (await up.call(USER_CREDIT, device_time=now - 299)).ret == "0"
    # a retry that re-sends old headers goes stale as the clock moves
    await up.clock.advance(400)
    assert (await up.call(USER_CREDIT, device_time=now)).ret == "1019"


async def test_bad_cookie_is_1015(up: Upstream) -> None:
    now = int(up.clock.time())
    guard = quote_plus(f"{CN_SESSION}|{now}|5184000|x")
    mismatched = f"sid_guard={guard}; sid_tt=other; sessionid={CN_SESSION}; sessionid_ss={CN_SESSION}"
    reply = await up.call(USER_CREDIT, headers={"Cookie": mismatched})
    assert (reply.ret, reply.json["errmsg"]) == ("1015", "login error")
    bad_guard = f"sid_guard=zzz; sid_tt={CN_SESSION}; sessionid={CN_SESSION}; sessionid_ss={CN_SESSION}"
    assert (await up.call(USER_CREDIT, headers={"Cookie": bad_guard})).ret == "1015"
    assert (await up.call(USER_CREDIT, session=None)).ret == "1015"


async def test_unknown_and_expired_session_is_1015(up: Upstream, sim: Simulator) -> None:
    assert (await up.call(USER_CREDIT, session="sess-unknown")).ret == "1015"
    sim.expire_session(CN_SESSION)
    assert sim.account(CN_SESSION).expired
    assert (await up.call(USER_CREDIT)).ret == "1015"
    assert (await up.call(GENERATE, image_body())).ret == "1015"


async def test_account_on_other_region_host_is_3000(up: Upstream) -> None:
    # a CN account sent to the US host with otherwise perfect US parameters
    reply = await up.call(USER_CREDIT, session=CN_SESSION, region=Region.US)
    assert (reply.ret, reply.json["errmsg"]) == ("3000", "region not allow")
    # an HK account claiming SG on the shared Asia host
    assert (await up.call(PASSPORT, session=HK_SESSION, region=Region.SG)).ret == "3000"


async def test_wrong_region_parameters_are_4002(up: Upstream) -> None:
    q = default_query(Region.CN, PASSPORT)
    no_webid = [(k, v) for k, v in q if k != "webId"]
    assert (await up.call(PASSPORT, query=no_webid)).ret == "4002"
    wrong_aid = [(k, "513641" if k == "aid" else v) for k, v in q]
    assert (await up.call(PASSPORT, query=wrong_aid)).ret == "4002"
    wrong_region = [(k, "CN" if k == "region" else v) for k, v in q]
    assert (await up.call(PASSPORT, query=wrong_region)).ret == "4002"
    us_with_webid = [*default_query(Region.US, PASSPORT), ("webId", WEB_ID)]
    assert (await up.call(PASSPORT, session=US_SESSION, region=Region.US, query=us_with_webid)).ret == "4002"
    assert (await up.call(PASSPORT, headers={"Appid": "513641"})).ret == "4002"
    assert (await up.call(PASSPORT, headers={"Lan": "en"})).ret == "4002"
    reply = await up.call(PASSPORT, session=HK_SESSION, region=Region.HK, headers={"Loc": "sg"})
    assert reply.ret == "4002"
    assert "Loc" in reply.json["errmsg"]
    no_source = [(k, v) for k, v in q if k != "account_sdk_source"]
    assert (await up.call(PASSPORT, query=no_source)).ret == "4002"


async def test_generate_body_aid_must_fit_region(up: Upstream) -> None:
    body = image_body(outer=lambda b: b.__setitem__("http_common_info", {"aid": 513641}))
    reply = await up.generate(body)
    assert reply.ret == "4002"
    assert "http_common_info.aid" in reply.json["errmsg"]


async def test_check_order_version_before_sign_before_cookie(up: Upstream) -> None:
    assert (await up.call(USER_CREDIT, appvr="8.0.0", headers={"Sign": "x"}, session=None)).ret == "3018"
    assert (await up.call(USER_CREDIT, headers={"Sign": "x"}, session=None)).ret == "1019"
    assert (await up.call(USER_CREDIT, session=None, region=Region.US, vhost="cn-web")).ret == "1015"
