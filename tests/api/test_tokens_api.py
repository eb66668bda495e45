"""Token endpoints over real HTTP against the simulator: liveness, balances, the daily claim; tokens stay masked."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, CN_TOKEN_2, POOR_TOKEN, US_SESSION, US_TOKEN, bearer, drive, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.errors import BadRequest
from jimeng_server.services.account_registry import parse_pool_token
from jimeng_server.simulator import Fault, FaultKind, Simulator

SECRETS = (CN_TOKEN, CN_TOKEN_2, US_SESSION, POOR_TOKEN)


async def post(client: TestClient[Any, Any], path: str, **kw: Any) -> tuple[int, Any, str]:
    resp = await client.post(path, **kw)
    text = await resp.text()
    for secret in SECRETS:
        assert secret not in text, f"a raw session id appeared in the {path} response"
    return resp.status, await json_of(resp), text


# ---------------------------------------------------------------- /token/check


@pytest.mark.parametrize("passport_style", [False, True])
async def test_check_live_session(client: TestClient[Any, Any], sim: Simulator, passport_style: bool) -> None:
    sim.settings.passport_style = passport_style
    status, body, _ = await post(client, "/token/check", json={"token": CN_TOKEN})
    assert (status, body) == (200, {"live": True})
    (call,) = sim.calls("/passport/account/info/v2")
    assert call.query["account_sdk_source"] == "web"
    assert call.status == 200 and call.sessionid == CN_TOKEN


@pytest.mark.parametrize("passport_style", [False, True])
async def test_check_expired_session(client: TestClient[Any, Any], sim: Simulator, passport_style: bool) -> None:
    sim.settings.passport_style = passport_style
    sim.expire_session(CN_TOKEN)
    status, body, _ = await post(client, "/token/check", json={"token": CN_TOKEN})
    assert (status, body) == (200, {"live": False})
    assert len(sim.calls("/passport/account/info/v2")) == 1


async def test_check_unknown_session(client: TestClient[Any, Any], sim: Simulator) -> None:
    status, body, _ = await post(client, "/token/check", json={"token": "sess0unknown0aaaabbbbccccdddd"})
    assert (status, body) == (200, {"live": False})


async def test_check_international_token_uses_its_region(client: TestClient[Any, Any], sim: Simulator) -> None:
    status, body, _ = await post(client, "/token/check", json={"token": US_TOKEN})
    assert (status, body) == (200, {"live": True})
    (call,) = sim.calls("/passport/account/info/v2")
    assert call.vhost == "us-web" and call.sessionid == US_SESSION


async def test_check_upstream_down_is_not_a_dead_session(
    client: TestClient[Any, Any], sim: Simulator, clock: ManualClock
) -> None:
    sim.inject("/passport/account/info/v2", Fault(FaultKind.HTTP_500), times=10)
    (resp,) = await drive(client.app, clock, client.post("/token/check", json={"token": CN_TOKEN}))
    body = await json_of(resp)
    # The session may well be live: the caller must not be told it is dead.
    assert resp.status == 502, body
    assert body["error"]["code"] == "UPSTREAM_HTTP_ERROR"
    assert len(sim.calls("/passport/account/info/v2")) == 3  # 1 + read_retries


async def test_check_risk_control_is_not_a_dead_session(client: TestClient[Any, Any], sim: Simulator) -> None:
    sim.inject("/passport/account/info/v2", Fault(FaultKind.RET, ret="1019", errmsg="shark not pass"))
    status, body, _ = await post(client, "/token/check", json={"token": CN_TOKEN})
    assert status == 502 and body["error"]["code"] == "UPSTREAM_RISK_CONTROL"


@pytest.mark.parametrize(
    ("payload", "code"),
    [({}, "MISSING_PARAMETER"), ({"token": ""}, "MISSING_PARAMETER"), ({"token": 5}, "MISSING_PARAMETER")],
)
async def test_check_missing_token_is_400(
    client: TestClient[Any, Any], sim: Simulator, payload: dict[str, Any], code: str
) -> None:
    status, body, _ = await post(client, "/token/check", json=payload)
    assert status == 400 and body["error"]["code"] == code
    assert "token" in body["error"]["message"]
    assert sim.journal == []


async def test_check_unusable_token_is_400_without_echo(client: TestClient[Any, Any], sim: Simulator) -> None:
    status, body, _ = await post(client, "/token/check", json={"token": f"{CN_TOKEN} {CN_TOKEN_2}"})
    assert status == 400 and body["error"]["code"] == "INVALID_TOKEN"
    assert sim.journal == []


async def test_check_bad_proxy_prefix_is_400_invalid_proxy_like_the_pool(
    client: TestClient[Any, Any], sim: Simulator
) -> None:
    token = f"http://:secret-pw@{CN_TOKEN}"
    status, body, _ = await post(client, "/token/check", json={"token": token})
    assert status == 400 and body["error"]["code"] == "INVALID_PROXY"
    assert "proxy" in body["error"]["message"] and "secret-pw" not in body["error"]["message"]
    assert sim.journal == []
    with pytest.raises(BadRequest) as pooled:  # what adding it to the pool answers
        parse_pool_token(token)
    assert pooled.value.code == body["error"]["code"]


async def test_check_body_not_json_is_400(client: TestClient[Any, Any]) -> None:
    status, body, _ = await post(client, "/token/check", data=b"token=x", headers={"Content-Type": "text/plain"})
    assert status == 400 and body["error"]["code"] == "INVALID_JSON"


# ---------------------------------------------------------------- /token/points


async def test_points_for_two_tokens_are_masked_with_totals(client: TestClient[Any, Any], sim: Simulator) -> None:
    cn, us = sim.account(CN_TOKEN), sim.account(US_SESSION)
    cn.gift_credit, cn.purchase_credit, cn.vip_credit = 3, 5, 7
    us.gift_credit, us.purchase_credit, us.vip_credit = 10, 0, 90
    status, body, _ = await post(client, "/token/points", headers=bearer(CN_TOKEN, US_TOKEN))
    assert status == 200
    assert isinstance(body, list) and len(body) == 2
    first, second = body
    none: dict[str, Any] = {"expiringCredits": [], "nextExpiry": None}
    assert first["points"] == {"giftCredit": 3, "purchaseCredit": 5, "vipCredit": 7, "totalCredit": 15, **none}
    assert second["points"] == {"giftCredit": 10, "purchaseCredit": 0, "vipCredit": 90, "totalCredit": 100, **none}
    assert second["token"].startswith("us-")
    assert "error" not in first and "error" not in second
    # One user_credit call per token, each on its region's commerce host, nothing spent.
    assert {c.vhost for c in sim.calls("/user_credit")} == {"cn-web", "us-commerce"}
    assert sim.charges == []


async def test_points_one_expired_token_does_not_hide_the_other(client: TestClient[Any, Any], sim: Simulator) -> None:
    sim.expire_session(CN_TOKEN)
    status, body, _ = await post(client, "/token/points", headers=bearer(CN_TOKEN, US_TOKEN))
    assert status == 200
    expired, alive = body
    assert "points" not in expired
    assert "1015" in expired["error"]
    assert alive["points"]["totalCredit"] == sim.account(US_SESSION).total == 1000
    assert expired["token"] != alive["token"]


async def test_points_upstream_failure_per_token(client: TestClient[Any, Any], sim: Simulator) -> None:
    sim.inject("/user_credit", Fault(FaultKind.RET, ret="1019", errmsg="shark not pass"))
    status, body, _ = await post(client, "/token/points", headers=bearer(CN_TOKEN))
    assert status == 200
    (entry,) = body
    assert "1019" in entry["error"] and "points" not in entry


async def test_points_needs_authorization(client: TestClient[Any, Any], sim: Simulator) -> None:
    status, body, _ = await post(client, "/token/points")
    assert status == 401 and body["error"]["code"] == "MISSING_AUTHORIZATION"
    assert sim.journal == []


# ---------------------------------------------------------------- /token/receive


async def test_receive_claims_only_for_zero_balance_tokens(client: TestClient[Any, Any], sim: Simulator) -> None:
    status, body, _ = await post(client, "/token/receive", headers=bearer(POOR_TOKEN, CN_TOKEN))
    assert status == 200
    poor, rich = body
    assert poor["received"] is True
    assert poor["credits"]["totalCredit"] == sim.settings.receive_quota == sim.account(POOR_TOKEN).total
    assert "error" not in poor
    assert rich["received"] is False
    assert rich["credits"]["totalCredit"] == 1000
    assert "error" not in rich
    (claim,) = sim.calls("/credit_receive")
    assert claim.sessionid == POOR_TOKEN
    assert claim.body == {"time_zone": "Asia/Shanghai"}


async def test_second_claim_same_day_is_refused(client: TestClient[Any, Any], sim: Simulator) -> None:
    status, body, _ = await post(client, "/token/receive", headers=bearer(POOR_TOKEN))
    assert status == 200 and body[0]["received"] is True
    poor = sim.account(POOR_TOKEN)
    poor.gift_credit = 0  # spent it all
    status, body, _ = await post(client, "/token/receive", headers=bearer(POOR_TOKEN))
    assert status == 200
    (entry,) = body
    assert entry["received"] is False
    assert "34010100" in entry["error"]
    assert entry["credits"]["totalCredit"] == 0
    assert len(sim.calls("/credit_receive")) == 2
    assert poor.total == 0


async def test_receive_expired_token_reports_error(client: TestClient[Any, Any], sim: Simulator) -> None:
    sim.expire_session(POOR_TOKEN)
    status, body, _ = await post(client, "/token/receive", headers=bearer(POOR_TOKEN, US_TOKEN))
    assert status == 200
    expired, fine = body
    assert expired["received"] is False and "1015" in expired["error"]
    assert fine["received"] is False and fine["credits"]["totalCredit"] == 1000
    assert sim.calls("/credit_receive") == []


async def test_receive_needs_authorization(client: TestClient[Any, Any]) -> None:
    status, body, _ = await post(client, "/token/receive", headers={"Authorization": "Bearer "})
    assert status == 401 and body["error"]["code"] in ("MISSING_AUTHORIZATION", "INVALID_TOKEN")


async def test_points_tell_look_alike_masked_tokens_apart(client: TestClient[Any, Any]) -> None:
    # CN_TOKEN and CN_TOKEN_2 mask to the same text; the short account id still tells them apart.
    resp = await client.post("/token/points", headers=bearer(CN_TOKEN, CN_TOKEN_2))
    entries = await json_of(resp)
    assert entries[0]["token"] == entries[1]["token"]
    assert entries[0]["account"] != entries[1]["account"]
    assert all(CN_TOKEN not in e["account"] and len(e["account"]) == 12 for e in entries)
