"""Per-token proxies: a token `proxy@sessionid` sends its account's upstream traffic through that proxy, over
real loopback HTTP CONNECT and SOCKS5 proxies written here; proxy credentials never leak."""

from __future__ import annotations

import asyncio
import base64
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support import CN_TOKEN, bearer, drive, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Simulator

URL = "/v1/images/generations"
PASSWORD = "s3cretPW0xyz"


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, sink: bytearray | None) -> None:
    try:
        while data := await src.read(65536):
            if sink is not None:
                sink.extend(data)
            dst.write(data)
            await dst.drain()
    except ConnectionError:
        pass
    finally:
        dst.close()


class _LoopbackProxy:
    """Base: an asyncio server on 127.0.0.1 that records tunnel targets and the bytes clients send through."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.sent = bytearray()  # client -> target bytes of every tunnel
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        await self._server.wait_closed()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            target = await self.handshake(reader, writer)
            if target is None:
                return
            host, port = target
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError:
                await self.refuse_target(writer)
                return
            self._writers.add(up_writer)
            await self.accept(writer)
            await asyncio.gather(_pipe(reader, up_writer, self.sent), _pipe(up_reader, writer, None))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, int] | None:
        raise NotImplementedError

    async def accept(self, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def refuse_target(self, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class ConnectProxy(_LoopbackProxy):
    """An HTTP CONNECT proxy; with `require_auth` set, CONNECT without that Proxy-Authorization gets 407."""

    def __init__(self, require_auth: str | None = None) -> None:
        super().__init__()
        self.require_auth = require_auth
        self.auth: list[str | None] = []

    async def handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, int] | None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = head.split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
        self.targets.append(target)
        self.auth.append(headers.get("proxy-authorization"))
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return None
        if self.require_auth is not None and headers.get("proxy-authorization") != self.require_auth:
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
            )
            await writer.drain()
            return None
        host, _, port = target.rpartition(":")
        return host.strip("[]"), int(port)

    async def accept(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

    async def refuse_target(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()


class Socks5Proxy(_LoopbackProxy):
    """A SOCKS5 proxy (RFC 1928) with optional username/password auth (RFC 1929)."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.credentials = credentials
        self.logins: list[tuple[str, str]] = []

    async def handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, int] | None:
        version, n = await reader.readexactly(2)
        methods = await reader.readexactly(n)
        assert version == 5
        want = 2 if self.credentials else 0
        if want not in methods:
            writer.write(b"\x05\xff")
            return None
        writer.write(bytes([5, want]))
        if want == 2:
            _, ulen = await reader.readexactly(2)
            user = (await reader.readexactly(ulen)).decode()
            (plen,) = await reader.readexactly(1)
            password = (await reader.readexactly(plen)).decode()
            self.logins.append((user, password))
            ok = (user, password) == self.credentials
            writer.write(b"\x01\x00" if ok else b"\x01\x01")
            if not ok:
                return None
        _, cmd, _, atyp = await reader.readexactly(4)
        if atyp == 1:
            host = socket.inet_ntoa(await reader.readexactly(4))
        elif atyp == 3:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode()
        else:
            host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
        (port,) = struct.unpack(">H", await reader.readexactly(2))
        self.targets.append(f"{host}:{port}")
        if cmd != 1:
            writer.write(b"\x05\x07\x00\x01" + bytes(6))
            return None
        return host, port

    async def accept(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x05\x00\x00\x01" + bytes(6))
        await writer.drain()

    async def refuse_target(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x05\x05\x00\x01" + bytes(6))
        await writer.drain()


@pytest.fixture
async def http_proxy() -> AsyncIterator[ConnectProxy]:
    proxy = ConnectProxy()
    await proxy.start()
    yield proxy
    await proxy.close()


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


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    port = closed_port()
    status, body, text = await generate(client, clock, f"http://user:{PASSWORD}@127.0.0.1:{port}@{CN_TOKEN}")
    assert status == 502, body
    assert body["error"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert body["error"]["type"] == "upstream_error"
    assert "proxy" in body["error"]["message"].lower()
    assert PASSWORD not in text and "user:" not in text
    assert all(PASSWORD not in r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert sim.journal == [] and sim.generate_count == 0


async def test_unreachable_proxy_on_token_points(client: TestClient[Any, Any], clock: ManualClock) -> None:
    token = f"http://user:{PASSWORD}@127.0.0.1:{closed_port()}@{CN_TOKEN}"
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
    status, body, text = await generate(client, clock, f"https://user:{PASSWORD}@127.0.0.1:{closed_port()}@{CN_TOKEN}")
    assert status == 502 and body["error"]["code"] == "UPSTREAM_UNAVAILABLE", body
    assert PASSWORD not in text and "user:" not in text
    assert all(PASSWORD not in r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert sim.journal == [] and sim.generate_count == 0

