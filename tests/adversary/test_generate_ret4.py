"""Issue 26, finding 7e: `ret -4` on a generate is the risk control refusing the generate, not the daily claim.
The caller gets the risk refusal (with its remedies), the next token is tried, and no claim is blocked."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from support import CN_TOKEN, CN_TOKEN_2, bearer, json_of

from jimeng_server.simulator import Fault, FaultKind, Simulator


async def test_ret_minus_4_on_a_generate_is_a_risk_refusal(client: TestClient[Any, Any], sim: Simulator) -> None:
    sim.inject("/aigc_draft/generate", Fault(FaultKind.RET, ret="-4", errmsg="shark check reject"))
    resp = await client.post("/v1/async/images/generations", json={"prompt": "a cat"}, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 502 and body["error"]["code"] == "UPSTREAM_RISK_CONTROL", body
    assert "daily claim" not in body["error"]["message"] and "ret -4" in body["error"]["message"]
    # With two tokens the refusal spent nothing: the next one makes it.
    sim.inject("/aigc_draft/generate", Fault(FaultKind.RET, ret="-4", errmsg="shark check reject"))
    resp = await client.post(
        "/v1/async/images/generations", json={"prompt": "a dog"}, headers=bearer(CN_TOKEN_2, CN_TOKEN)
    )
    assert resp.status == 200, await resp.text()
    assert len(sim.charges) == 1
    # The daily claim of the refused token is not blocked by it.
    resp = await client.post("/token/receive", headers=bearer(CN_TOKEN))
    assert resp.status == 200, await resp.text()
