"""Passport answer styles, fault injection and the request journal."""

from __future__ import annotations

import aiohttp
import pytest
from sim_helpers import (
    CN_SESSION,
    GENERATE,
    HISTORY,
    HK_SESSION,
    PASSPORT,
    USER_CREDIT,
    WEB_ID,
    Upstream,
    image_body,
)

from jimeng_server.simulator import Fault, FaultKind, JournalEntry, Simulator, seed_demo
from jimeng_server.upstream.regions import Region
from jimeng_server.upstream.signing import sign


async def test_passport_envelope_style(up: Upstream, sim: Simulator) -> None:
    reply = await up.call(PASSPORT)
    assert reply.ret == "0"
    assert reply.data["user_id"] == sim.account(CN_SESSION).user_id
    assert isinstance(reply.data["user_id"], int)
    assert reply.data["screen_name"]
    assert (await up.call(PASSPORT, session="nobody")).ret == "1015"


async def test_passport_message_style(up: Upstream, sim: Simulator) -> None:
    sim.settings.passport_style = True
    sim.add_account("sess-fixed", user_id=42)
    body = (await up.call(PASSPORT, session="sess-fixed")).json
    assert "ret" not in body
    assert body["message"] == "success"
    assert body["data"]["user_id"] == 42
    bad = (await up.call(PASSPORT, session="nobody")).json
    assert "ret" not in bad
    assert bad["message"] == "error"
    assert bad["data"]["name"] == "session_expired"
    assert (await up.call(USER_CREDIT, session="nobody")).ret == "1015"  # other paths keep the envelope


async def test_fault_http_500(up: Upstream, sim: Simulator) -> None:
    sim.inject("/aigc_draft/generate", Fault(FaultKind.HTTP_500))
    reply = await up.generate(image_body())
    assert reply.status == 500
    assert reply.json is None
    assert sim.generate_count == 0
    assert sim.account(CN_SESSION).vip_credit == 100
    assert sim.journal[-1].status == 500
    assert (await up.generate(image_body())).ret == "0"  # only once


async def test_fault_http_429(up: Upstream, sim: Simulator) -> None:
    sim.inject("user_credit", Fault(FaultKind.HTTP_429))
    reply = await up.call(USER_CREDIT)
    assert reply.status == 429
    assert reply.json is None


async def test_fault_ret_with_skip_and_times(up: Upstream, sim: Simulator) -> None:
    sim.inject(HISTORY, Fault(FaultKind.RET, ret="3000", errmsg="region not allow"), times=2, skip=1)
    rets = [(await up.call(HISTORY, {"history_ids": ["1"]})).ret for _ in range(4)]
    assert rets == ["0", "3000", "3000", "0"]
    assert [e.ret for e in sim.calls(HISTORY)] == rets


async def test_fault_ret_on_generate_keeps_error_data(up: Upstream, sim: Simulator) -> None:
    sim.inject(GENERATE, Fault(FaultKind.RET))
    reply = await up.generate(image_body())
    assert (reply.ret, reply.json["errmsg"]) == ("1019", "shark not pass")
    assert reply.data == {"aigc_data": None, "fail_code": "", "fail_starling_key": "", "fail_starling_message": ""}
    assert sim.generate_count == 0


async def test_fault_malformed_json(up: Upstream, sim: Simulator) -> None:
    sim.inject(GENERATE, Fault(FaultKind.MALFORMED_JSON))
    reply = await up.generate(image_body())
    assert reply.status == 200
    assert reply.json is None
    assert sim.generate_count == 0


async def test_fault_missing_aigc_data(up: Upstream, sim: Simulator) -> None:
    sim.inject(GENERATE, Fault(FaultKind.MISSING_AIGC_DATA))
    reply = await up.generate(image_body())
    assert reply.ret == "0"
    assert reply.data == {}
    assert sim.generate_count == 0
    assert sim.account(CN_SESSION).vip_credit == 100


async def test_fault_delay_answers_normally(up: Upstream, sim: Simulator) -> None:
    sim.inject(GENERATE, Fault(FaultKind.DELAY, delay=0.001))
    assert (await up.generate(image_body())).ret == "0"
    assert sim.generate_count == 1


async def test_fault_reset(up: Upstream, sim: Simulator) -> None:
    sim.inject(GENERATE, Fault(FaultKind.RESET))
    with pytest.raises(aiohttp.ClientError):
        await up.generate(image_body())
    assert sim.generate_count == 0
    assert sim.journal[-1].status == 0
    assert sim.journal[-1].path == GENERATE
    assert (await up.generate(image_body())).ret == "0"


async def test_fault_on_cdn(up: Upstream, sim: Simulator) -> None:
    sim.inject(".png", Fault(FaultKind.HTTP_500))
    async with up.client.get("/cdn/img/1/0.png") as resp:
        assert resp.status == 500


async def test_journal_contents(up: Upstream, sim: Simulator) -> None:
    body = image_body()
    await up.generate(body)
    await up.call(USER_CREDIT)
    await up.call(PASSPORT, session=HK_SESSION, region=Region.HK)
    gen, credit, passport = sim.journal
    assert isinstance(gen, JournalEntry)
    assert (gen.method, gen.vhost, gen.path, gen.status, gen.ret) == ("POST", "cn-web", GENERATE, 200, "0")
    assert gen.query["webId"] == WEB_ID and gen.query["aid"] == "513695"
    assert gen.raw_query.startswith("aid=513695&device_platform=web&region=cn&webId=")
    assert gen.headers["sign"] == sign(GENERATE, int(up.clock.time()), pf="7", appvr="8.4.0")
    assert gen.headers["appvr"] == "8.4.0"
    assert gen.body == body
    assert gen.body_size > 0
    assert gen.sessionid == CN_SESSION
    assert gen.time == up.clock.time()
    assert (credit.query, credit.raw_query, credit.path) == ({}, "", USER_CREDIT)
    assert (passport.vhost, passport.query["region"], passport.sessionid) == ("sg-web", "HK", HK_SESSION)
    assert sim.calls("_credit") == [credit]
    assert sim.calls("/info/v2", vhost="cn-web") == []


async def test_journal_records_refusals_and_404(up: Upstream, sim: Simulator) -> None:
    await up.call(USER_CREDIT, headers={"Sign": "bad"})
    await up.call(USER_CREDIT, vhost="us-web", region=Region.US)
    refused, missing = sim.journal
    assert (refused.status, refused.ret, refused.sessionid) == (200, "1019", CN_SESSION)
    assert (missing.status, missing.ret, missing.vhost) == (404, None, "us-web")


def test_seed_demo() -> None:
    sim = Simulator(seed=3)
    token = seed_demo(sim)
    acct = sim.account(token)
    assert acct.region is Region.CN
    assert acct.total > 0
