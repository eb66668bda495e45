"""Per-token proxies: a token `proxy@sessionid` sends its account's upstream traffic through that proxy, over
real loopback HTTP CONNECT and SOCKS5 proxies written here; proxy credentials never leak."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from proxies import ConnectProxy, Socks5Proxy
from simulate_proc import free_port
from support import CN_TOKEN, bearer, drive, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Simulator

URL = "/v1/images/generations"
PASSWORD = "s3cretPW0xyz"


@pytest.fixture
async def auth_proxy() -> AsyncIterator[ConnectProxy]:
    proxy = ConnectProxy(require_auth="Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode())
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def socks_proxy() -> AsyncIterator[Socks5Proxy]:
    proxy = Socks5Proxy()
    await proxy.start()
    yield proxy
    await proxy.close()


async def generate(client: TestClient[Any, Any], clock: ManualClock, token: str, **extra: Any) -> tuple[int, Any, str]:
    body = {"prompt": "through the proxy", **extra}
    (resp,) = await drive(client.app, clock, client.post(URL, json=body, headers=bearer(token)))
    text = await resp.text()
    return resp.status, await json_of(resp), text


def web_calls(sim: Simulator) -> list[Any]:
    return [e for e in sim.journal if e.vhost != "cdn"]


def sim_target(sim_server: TestServer) -> str:
    return f"127.0.0.1:{sim_server.port}"


async def test_http_proxy_carries_every_web_call(
    client: TestClient[Any, Any],
    clock: ManualClock,
    sim: Simulator,
    sim_server: TestServer,
    http_proxy: ConnectProxy,
) -> None:
    status, body, _ = await generate(client, clock, f"http://127.0.0.1:{http_proxy.port}@{CN_TOKEN}")
    assert status == 200, body
    assert len(body["data"]) == 4
    assert http_proxy.targets and set(http_proxy.targets) == {sim_target(sim_server)}
    calls = web_calls(sim)
    paths = {e.path for e in calls}
    assert {"/commerce/v1/benefits/user_credit", "/mweb/v1/aigc_draft/generate", "/mweb/v1/get_history_by_ids"} <= paths
    # Every call the simulator saw travelled through the tunnel.
    tunnel = bytes(http_proxy.sent)
    assert tunnel.count(b"POST /") == len(calls)
    for e in calls:
        assert f"POST /{e.vhost}{e.path}".encode() in tunnel


async def test_result_downloads_use_the_proxy_too(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, http_proxy: ConnectProxy
) -> None:
    status, body, _ = await generate(
        client, clock, f"http://127.0.0.1:{http_proxy.port}@{CN_TOKEN}", response_format="b64_json"
    )
    assert status == 200, body
    assert len(body["data"]) == 4
    assert bytes(http_proxy.sent).count(b"GET /cdn/img/") == 4


async def test_token_without_proxy_goes_direct(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, http_proxy: ConnectProxy
) -> None:
    status, _, _ = await generate(client, clock, CN_TOKEN)
    assert status == 200
    assert web_calls(sim)
    assert http_proxy.targets == [] and http_proxy.sent == b""


async def test_proxy_credentials_reach_the_proxy_and_nowhere_else(
    client: TestClient[Any, Any],
    clock: ManualClock,
    sim: Simulator,
    auth_proxy: ConnectProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    status, body, text = await generate(client, clock, f"http://user:{PASSWORD}@127.0.0.1:{auth_proxy.port}@{CN_TOKEN}")
    assert status == 200, body
    assert auth_proxy.auth and all(a == auth_proxy.require_auth for a in auth_proxy.auth)
    assert PASSWORD not in text
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)
    # The credentials are for the proxy only: the upstream never sees them.
    assert all(PASSWORD not in str(e.headers) and PASSWORD not in e.raw_query for e in sim.journal)


async def test_wrong_proxy_credentials_are_502_without_leaking(
    client: TestClient[Any, Any],
    clock: ManualClock,
    sim: Simulator,
    auth_proxy: ConnectProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "wrongPW0abc"
    status, body, text = await generate(client, clock, f"http://user:{wrong}@127.0.0.1:{auth_proxy.port}@{CN_TOKEN}")
    assert status == 502, body
    assert body["error"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert "proxy" in body["error"]["message"].lower()
    assert auth_proxy.auth and all(a is not None for a in auth_proxy.auth)  # it did try, with the wrong login
    assert wrong not in text
    assert all(wrong not in r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert sim.journal == [] and sim.generate_count == 0


async def test_unreachable_proxy_is_502_without_credentials(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    status, body, text = await generate(client, clock, f"http://user:{PASSWORD}@127.0.0.1:{port}@{CN_TOKEN}")
    assert status == 502, body
    assert body["error"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert body["error"]["type"] == "upstream_error"
    assert "proxy" in body["error"]["message"].lower()
    assert PASSWORD not in text and "user:" not in text
    assert all(PASSWORD not in r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert sim.journal == [] and sim.generate_count == 0


async def test_unreachable_proxy_on_token_points(client: TestClient[Any, Any], clock: ManualClock) -> None:
    token = f"http://user:{PASSWORD}@127.0.0.1:{free_port()}@{CN_TOKEN}"
    (resp,) = await drive(client.app, clock, client.post("/token/points", headers=bearer(token)))
    text = await resp.text()
    assert resp.status == 200
    (entry,) = await json_of(resp)
    assert "error" in entry and "points" not in entry
    assert PASSWORD not in text and CN_TOKEN not in text


async def test_socks5_proxy(
    client: TestClient[Any, Any],
    clock: ManualClock,
    sim: Simulator,
    sim_server: TestServer,
    socks_proxy: Socks5Proxy,
) -> None:
    status, body, _ = await generate(client, clock, f"socks5://127.0.0.1:{socks_proxy.port}@{CN_TOKEN}")
    assert status == 200, body
    assert set(socks_proxy.targets) == {sim_target(sim_server)}
    calls = web_calls(sim)
    assert calls and bytes(socks_proxy.sent).count(b"POST /") == len(calls)


async def test_socks5_proxy_with_credentials(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = Socks5Proxy(credentials=("user", PASSWORD))
    await proxy.start()
    try:
        status, body, text = await generate(
            client, clock, f"socks5://user:{PASSWORD}@127.0.0.1:{proxy.port}@{CN_TOKEN}"
        )
        assert status == 200, body
        assert proxy.logins and set(proxy.logins) == {("user", PASSWORD)}
        assert PASSWORD not in text
    finally:
        await proxy.close()


async def test_unreachable_https_proxy_is_502_without_credentials(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    # https:// proxies are spoken to over TLS (aiohttp's own proxy support), not downgraded to plain http.
    status, body, text = await generate(client, clock, f"https://user:{PASSWORD}@127.0.0.1:{free_port()}@{CN_TOKEN}")
    assert status == 502 and body["error"]["code"] == "UPSTREAM_UNAVAILABLE", body
    assert PASSWORD not in text and "user:" not in text
    assert all(PASSWORD not in r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert sim.journal == [] and sim.generate_count == 0

