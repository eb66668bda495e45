"""Accounts share the upstream sessions (one per proxy): a cookie the upstream sets in an answer to one account
must never reach the upstream on another account's request, nor change the account's own Cookie header."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from jimeng_server.upstream.impersonate import ImpersonateTransport, available
from jimeng_server.upstream.regions import Region
from jimeng_server.upstream.tokens import Account
from jimeng_server.upstream.transport import AiohttpTransport, Outgoing, SessionPool, Transport


def outgoing(account: Account, url: str) -> Outgoing:
    cookie = f"sessionid={account.sessionid}"
    return Outgoing(
        account=account,
        path="/mweb/v1/get_history_by_ids",
        url=url,
        headers=(("Cookie", cookie), ("Content-Type", "application/json")),
        body=b"{}",
        page="https://jimeng.example/",
        referer="https://jimeng.example/",
        timeout=5.0,
        connect_timeout=5.0,
    )


@pytest.mark.parametrize("kind", ["aiohttp", "impersonate"])
async def test_a_cookie_set_for_one_account_never_rides_on_anothers_request(
    aiohttp_server: Callable[..., Awaitable[TestServer]], kind: str
) -> None:
    if kind == "impersonate" and not available():
        pytest.skip("curl_cffi (the browser extra) is not installed")
    seen: list[str] = []

    async def upstream(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie", ""))
        response = web.json_response({"ret": "0"})
        response.set_cookie("sessionid", "refreshed-for-a", path="/")  # e.g. a rotated session of account A
        response.set_cookie("msToken", "token-of-a", path="/")
        return response

    app = web.Application()
    app.router.add_post("/mweb/v1/get_history_by_ids", upstream)
    server = await aiohttp_server(app)
    # By name, not by IP address: aiohttp's cookie jar ignores cookies of bare IP hosts.
    url = f"http://localhost:{server.port}/mweb/v1/get_history_by_ids"
    pool = SessionPool(connect_timeout=5.0)
    transport: Transport = AiohttpTransport(pool) if kind == "aiohttp" else ImpersonateTransport()
    a = Account(sessionid="session-of-account-a", region=Region.CN)
    b = Account(sessionid="session-of-account-b", region=Region.CN)
    try:
        for account in (a, b, a):
            answer = await transport.send(outgoing(account, url))
            assert answer.status == 200
    finally:
        await transport.close()
        await pool.close()
    assert seen == [f"sessionid={account.sessionid}" for account in (a, b, a)]
