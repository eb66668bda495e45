"""The exact bytes the upstream receives: request line, headers (names, order, values) and body of an async image
submit through the server, and of the client's calls for a session account and a cookie-jar account, captured at
a loopback HTTP CONNECT proxy in front of the simulator and compared with the recorded wire text in
tests/fixtures/request_bytes/. Work that makes the submit path cheaper must not change a byte of them.

What differs between runs is masked before comparing: the random UUIDs and the seed of a generate body, and the
loopback ports. Set JIMENG_RECORD_WIRE=1 to write the fixtures anew (after a deliberate protocol change only).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from proxies import ConnectProxy
from support import CN_TOKEN, bearer, drive, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.config import Config
from jimeng_server.simulator import Simulator
from jimeng_server.upstream.client import JimengClient
from jimeng_server.upstream.cookies import load_jar
from jimeng_server.upstream.errors import UpstreamError
from jimeng_server.upstream.regions import Region
from jimeng_server.upstream.tokens import Account
from jimeng_server.upstream.transport import SessionPool
from jimeng_server.upstream.transports import Transports

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "request_bytes"
RECORD = os.environ.get("JIMENG_RECORD_WIRE") == "1"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"
)

_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_SEED = re.compile(rb'(\\?"seed\\?":)\d+')


def masked(raw: bytes, ports: list[int]) -> str:
    """`raw` with what changes between runs replaced by placeholders (same length classes are kept visible)."""
    out = _SEED.sub(rb"\1<seed>", _UUID.sub(b"<uuid>", raw))
    for port in ports:
        out = out.replace(f"127.0.0.1:{port}".encode(), b"127.0.0.1:<port>")
    return out.decode("utf-8")


def requests_of(tunnel: bytes) -> list[bytes]:
    """The tunnel's bytes cut into HTTP requests (each head plus its Content-Length body)."""
    out: list[bytes] = []
    rest = tunnel
    while rest:
        head, sep, tail = rest.partition(b"\r\n\r\n")
        assert sep, f"an incomplete request head in the tunnel: {rest[:200]!r}"
        length = re.search(rb"\r\nContent-Length: (\d+)", head, re.IGNORECASE)
        size = int(length.group(1)) if length else 0
        out.append(head + sep + tail[:size])
        rest = tail[size:]
    return out


def check(name: str, requests: list[bytes], ports: list[int]) -> None:
    text = "\n\n=====\n\n".join(masked(r, ports) for r in requests) + "\n"
    path = FIXTURES / f"{name}.txt"
    if RECORD:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    assert text == path.read_bytes().decode("utf-8")


@pytest.fixture
async def proxy() -> AsyncIterator[ConnectProxy]:
    p = ConnectProxy()
    await p.start()
    yield p
    await p.close()


async def test_an_async_image_submit_sends_the_recorded_bytes(
    make_client: Any, clock: ManualClock, sim_server: TestServer, proxy: ConnectProxy
) -> None:
    client: TestClient[Any, Any] = await make_client()
    token = f"http://127.0.0.1:{proxy.port}@{CN_TOKEN}"
    body = {"prompt": "一只猫 on the wire", "ratio": "16:9", "n": 2, "negative_prompt": "dogs"}
    post = client.post("/v1/async/images/generations", json=body, headers=bearer(token))
    (resp,) = await drive(client.app, clock, post)
    assert resp.status == 200, await resp.text()
    answer = await json_of(resp)
    assert answer["status"] == "submitted" and answer["history_id"], answer
    check("async_image_submit", requests_of(bytes(proxy.sent)), [proxy.port, sim_server.port])


async def test_session_and_jar_accounts_send_the_recorded_bytes(
    config: Config, clock: ManualClock, sim: Simulator, sim_server: TestServer, proxy: ConnectProxy
) -> None:
    up = config.upstream
    pool = SessionPool(connect_timeout=up.connect_timeout)
    transports = Transports(up, config.browser, pool)
    api = JimengClient(up, pool, clock, identity_salt=b"test-salt", transports=transports)
    via = f"http://127.0.0.1:{proxy.port}"
    session = Account(sessionid=CN_TOKEN, region=Region.CN, proxy=via)
    jar = load_jar(sim.issue_jar(CN_TOKEN), region=Region.CN, now=clock.time(), user_agent=CHROME)
    jar_account = Account.from_jar(jar, Region.CN, proxy=via)
    generate = {"submit_id": "s-1", "extend": {"root_model": "m"}, "draft_content": '{"k":"值"}'}
    try:
        for who in (session, jar_account):
            await api.get_credits(who)
            await api.get_history(who, ["123"])
            for kind in ("image", "video"):
                with contextlib.suppress(UpstreamError):  # the simulator may refuse this body: the bytes count
                    await api.generate_task(who, dict(generate), kind=kind, input_video=kind == "video")
    finally:
        await transports.close()
        await pool.close()
    check("client_calls", requests_of(bytes(proxy.sent)), [proxy.port, sim_server.port])
