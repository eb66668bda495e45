"""What a caller may ask through its tokens: how many per request, which proxies (the address guard), and how
long a request may wait on upstream reads."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from simulate_proc import free_port
from support import CN_TOKEN, CN_TOKEN_2, POOR_TOKEN, US_TOKEN, AppFactory, bearer, drive, error_of

from jimeng_server.clock import ManualClock
from jimeng_server.config import Config, SecurityConfig
from jimeng_server.simulator import Fault, FaultKind, Simulator

GUARDED = SecurityConfig(allow_private_networks=False)


async def test_more_tokens_than_allowed_is_a_400_before_any_upstream_call(
    make_client: AppFactory, sim: Simulator
) -> None:
    client = await make_client(security=SecurityConfig(allow_private_networks=True, max_tokens_per_request=3))
    tokens = [f"sess{i:04d}aaaabbbbccccddddeeee" for i in range(200)]
    for path in ("/token/points", "/token/receive", "/v1/images/generations", "/v1/async/tasks/query"):
        resp = await client.post(path, headers=bearer(*tokens), json={"prompt": "a cat"})
        err = await error_of(resp)
        assert err["code"] == "TOO_MANY_TOKENS" and "at most 3" in err["message"], err
        assert "sess0001" not in err["message"]
    resp = await client.post("/token/points", headers=bearer(CN_TOKEN, CN_TOKEN_2, CN_TOKEN, CN_TOKEN_2))
    assert (await error_of(resp))["code"] == "TOO_MANY_TOKENS"
    assert sim.journal == []
    resp = await client.post("/token/points", headers=bearer(CN_TOKEN, CN_TOKEN_2, POOR_TOKEN))
    assert resp.status == 200 and len(await resp.json()) == 3


async def test_the_default_allows_five_tokens(client: TestClient[Any, Any]) -> None:
    five = [CN_TOKEN, CN_TOKEN_2, POOR_TOKEN, US_TOKEN, "sess0other0aaaabbbbccccdddd"]
    assert (await client.post("/token/points", headers=bearer(*five))).status == 200
    resp = await client.post("/token/points", headers=bearer(*five, "sess0sixth0aaaabbbbccccdddd"))
    assert (await error_of(resp))["code"] == "TOO_MANY_TOKENS"


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "0x7f.1", "10.1.2.3", "169.254.169.254", "[::1]", "[::ffff:127.0.0.1]", "2130706433"],
)
async def test_a_caller_proxy_at_a_private_address_is_refused(
    make_client: AppFactory, sim: Simulator, sim_server: TestServer, host: str
) -> None:
    client = await make_client(security=GUARDED)
    answers = set()
    # An open port (the simulator's) and a closed one get the same answer: no port oracle.
    for port in (sim_server.port, free_port()):
        token = f"http://user:pw@{host}:{port}@{CN_TOKEN}"
        resp = await client.post("/token/points", headers=bearer(token))
        err = await error_of(resp)
        assert err["code"] == "PROXY_NOT_ALLOWED", err
        answers.add(err["message"])
        resp = await client.post("/token/check", json={"token": token})
        err = await error_of(resp)
        assert err["code"] == "PROXY_NOT_ALLOWED", err
        answers.add(err["message"])
    assert len(answers) == 1
    (message,) = answers
    assert host.strip("[]") not in message and "pw" not in message
    assert sim.journal == []


async def test_an_allowed_proxy_passes_the_guard(make_client: AppFactory, config: Config) -> None:
    port = free_port()
    client = await make_client(
        security=SecurityConfig(allow_private_networks=False, allowed_proxies=(f"socks5://127.0.0.1:{port}",)),
        upstream=dataclasses.replace(config.upstream, read_retries=0),
    )
    resp = await client.post("/token/points", headers=bearer(f"http://u:p@127.0.0.1:{port}@{CN_TOKEN}"))
    assert resp.status == 200
    (entry,) = await resp.json()
    assert "error" in entry and "proxy" in entry["error"].lower()  # tried (nothing listens there), not refused
    resp = await client.post("/token/points", headers=bearer(f"http://127.0.0.1:{port + 1}@{CN_TOKEN}"))
    assert (await error_of(resp))["code"] == "PROXY_NOT_ALLOWED"


async def test_caller_proxies_can_be_switched_off(make_client: AppFactory, sim: Simulator) -> None:
    client = await make_client(security=SecurityConfig(allow_private_networks=True, caller_proxies=False))
    for token in (f"http://8.8.8.8:3128@{CN_TOKEN}", f"socks5://127.0.0.1:1080@{CN_TOKEN}"):
        resp = await client.post("/token/points", headers=bearer(token))
        err = await error_of(resp)
        assert err["code"] == "PROXY_NOT_ALLOWED" and "caller_proxies" in err["message"]
    resp = await client.post("/token/points", headers=bearer(CN_TOKEN))
    assert resp.status == 200


async def test_upstream_read_retries_stop_at_the_read_budget(
    make_client: AppFactory, config: Config, sim: Simulator, clock: ManualClock
) -> None:
    # 11 attempts allowed, 1 s back-off doubling each time: a 5 s budget leaves room for 3 attempts (0, 1, 3 s);
    # the next back-off (4 s) would end past it.
    upstream = dataclasses.replace(config.upstream, read_retries=10, retry_backoff=1.0, read_budget=5.0)
    client = await make_client(upstream=upstream)
    sim.inject("/user_credit", Fault(FaultKind.HTTP_500), times=100)
    start = clock.time()
    (resp,) = await drive(client.app, clock, client.post("/token/points", headers=bearer(CN_TOKEN)))
    (entry,) = await resp.json()
    assert "HTTP 500" in entry["error"]
    assert len(sim.calls("/user_credit")) == 3
    assert clock.time() - start < 5.0
