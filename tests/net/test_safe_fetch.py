"""The SSRF guard and bounded fetching of `jimeng_server.net`, over loopback only.

Loopback fixtures need the guard relaxed; tests that must prove the guard is ON use a fake resolver and an
address predicate that admits exactly the fixture address 127.0.0.1 and otherwise is `is_public_address`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import FakeResolver, crc32_hex, leftovers

from jimeng_server.net.errors import FetchError, TooLargeError, UnsafeURLError
from jimeng_server.net.fetcher import SafeFetcher
from jimeng_server.net.policy import FetchPolicy, IPAddress, check_url, is_public_address
from jimeng_server.net.resolver import check_url_resolves_public
from jimeng_server.net.spool import spool_chunks

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
LOCAL = FetchPolicy(allow_private_networks=True)
STRICT = FetchPolicy()
FIXTURE_IP = ipaddress.IPv4Address("127.0.0.1")


def fixture_or_public(ip: IPAddress) -> bool:
    """The real predicate, plus exactly the loopback fixture address."""
    return ip == FIXTURE_IP or is_public_address(ip)


@pytest.fixture
async def fetcher(tmp_path: Path) -> AsyncIterator[SafeFetcher]:
    f = SafeFetcher(LOCAL, temp_dir=str(tmp_path))
    yield f
    await f.close()


# ---------------------------------------------------------------------------------------------------------
# Address and URL checks (no I/O)


@pytest.mark.parametrize(
    "addr",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "198.51.100.1",
        "203.0.113.1",
        "198.18.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    ],
)
def test_non_public_addresses(addr: str) -> None:
    assert not is_public_address(ipaddress.ip_address(addr))


@pytest.mark.parametrize(
    "addr",
    ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"],
)
def test_public_addresses(addr: str) -> None:
    assert is_public_address(ipaddress.ip_address(addr))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://[fe80::1%25eth0]/x",
        "http://2130706433/x",
        "http://0x7f.1/x",
        "http://017700000001/x",
        "http://127.1/x",
        "http://127.0.0.1./x",
        "http://0/x",
        "https://localhost:8443/x",
        "http://api.localhost/x",
    ],
)
def test_check_url_refuses_private_literals(url: str) -> None:
    with pytest.raises(UnsafeURLError, match="allow_private_networks = true"):
        check_url(url, STRICT)


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "gopher://x/", "example.com/a"])
def test_check_url_refuses_other_schemes(url: str) -> None:
    for policy in (STRICT, LOCAL):
        with pytest.raises(UnsafeURLError, match="must use http or https"):
            check_url(url, policy, what="image URL")


def test_check_url_refuses_missing_host() -> None:
    with pytest.raises(UnsafeURLError, match="host"):
        check_url("http:///path", STRICT)


def test_check_url_accepts_and_normalises() -> None:
    assert str(check_url("https://example.com/a.png?x=1", STRICT)) == "https://example.com/a.png?x=1"
    assert check_url("http://93.184.216.34/", STRICT).host == "93.184.216.34"
    # Legacy numeric forms are rewritten to the address they mean, then judged.
    assert check_url("http://0x5db8d822/", STRICT).host == "93.184.216.34"
    assert check_url("http://2130706433:8080/x", LOCAL).host == "127.0.0.1"
    assert check_url("http://2130706433:8080/x", LOCAL).port == 8080


async def test_check_url_resolves_public() -> None:
    resolver = FakeResolver(
        {"good.example": ["93.184.216.34"], "bad.example": ["10.0.0.5"], "mixed.example": ["93.184.216.34", "10.0.0.1"]}
    )
    await check_url_resolves_public("https://good.example/a", STRICT, resolver)
    with pytest.raises(UnsafeURLError, match=r"bad\.example resolves to .*\(10\.0\.0\.5\)"):
        await check_url_resolves_public("https://bad.example/a", STRICT, resolver)
    with pytest.raises(UnsafeURLError, match=r"10\.0\.0\.1"):
        await check_url_resolves_public("https://mixed.example/a", STRICT, resolver)
    with pytest.raises(FetchError, match="could not resolve"):
        await check_url_resolves_public("https://nxdomain.example/a", STRICT, resolver)
    await check_url_resolves_public("https://bad.example/a", LOCAL, resolver)  # switch disables address checks


# ---------------------------------------------------------------------------------------------------------
# The guard inside the fetcher (no connection is ever attempted)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:1/x",
        "http://[::ffff:127.0.0.1]:1/x",
        "http://2130706433:1/x",
        "http://0x7f.1:1/x",
    ],
)
async def test_download_refuses_private_literals(url: str, tmp_path: Path) -> None:
    resolver = FakeResolver({})
    fetcher = SafeFetcher(STRICT, resolver=resolver, temp_dir=str(tmp_path))
    try:
        with pytest.raises(UnsafeURLError):
            await fetcher.download(url)
        with pytest.raises(UnsafeURLError):
            await fetcher.post(url, body=b"{}", headers={}, timeout=1)
    finally:
        await fetcher.close()
    assert resolver.asked == []
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("host", "addresses", "shown"),
    [
        ("intranet.example", ["10.0.0.5"], "10.0.0.5"),
        ("metadata.example", ["169.254.169.254"], "169.254.169.254"),
        ("mixed.example", ["93.184.216.34", "192.168.0.7"], "192.168.0.7"),
        ("v6.example", ["::1"], "::1"),
        ("mapped.example", ["::ffff:127.0.0.1"], "::ffff:7f00:1"),
    ],
)
async def test_download_refuses_names_resolving_private(host: str, addresses: list[str], shown: str) -> None:
    resolver = FakeResolver({host: addresses})
    fetcher = SafeFetcher(STRICT, resolver=resolver)
    try:
        with pytest.raises(UnsafeURLError, match="allow_private_networks") as info:
            await fetcher.download(f"http://{host}/image.png")
        assert shown in str(info.value)
        with pytest.raises(UnsafeURLError):
            await fetcher.post(f"https://{host}/hook", body=b"{}", headers={}, timeout=1)
    finally:
        await fetcher.close()
    assert host in resolver.asked


async def test_unresolvable_name_is_fetch_error() -> None:
    fetcher = SafeFetcher(STRICT, resolver=FakeResolver({}))
    try:
        with pytest.raises(FetchError, match="resolve") as info:
            await fetcher.download("http://nxdomain.example/a.png")
        assert not isinstance(info.value, TooLargeError)
    finally:
        await fetcher.close()


async def test_non_http_scheme_refused_even_when_private_allowed(fetcher: SafeFetcher) -> None:
    for url in ("ftp://example.com/a.png", "file:///etc/passwd"):
        with pytest.raises(UnsafeURLError, match="http or https"):
            await fetcher.download(url)


# ---------------------------------------------------------------------------------------------------------
# Redirects


def redirect_app(hits: list[str]) -> web.Application:
    async def to(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        raise web.HTTPFound(request.query["to"])

    async def hop(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(body=b"final", content_type="text/plain")
        raise web.HTTPFound(f"/hop/{n - 1}")

    app = web.Application()
    app.router.add_route("*", "/to", to)
    app.router.add_get("/hop/{n}", hop)
    return app


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[SafeFetcher]:
    """Guard ON; only the fixture address 127.0.0.1 is additionally admitted."""
    resolver = FakeResolver(
        {"files.example": ["127.0.0.1"], "metadata.example": ["169.254.169.254"], "lan.example": ["10.0.0.9"]}
    )
    f = SafeFetcher(STRICT, resolver=resolver, temp_dir=str(tmp_path), allow_address=fixture_or_public)
    yield f
    await f.close()


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.example/latest/meta-data/",
        "http://lan.example/",
        "http://10.0.0.9:80/",
        "http://[::1]/",
        "http://2852039166/",  # decimal 169.254.169.254
        "ftp://files.example/a.png",
        "file:///etc/passwd",
    ],
)
async def test_redirect_to_unsafe_target_is_refused(
    aiohttp_server: ServerFactory, guarded: SafeFetcher, target: str
) -> None:
    hits: list[str] = []
    server = await aiohttp_server(redirect_app(hits))
    url = f"http://files.example:{server.port}/to?to={target}"
    with pytest.raises(UnsafeURLError, match="redirect target"):
        await guarded.download(url)
    assert hits == ["/to"]


async def test_redirects_followed_within_limit(aiohttp_server: ServerFactory, guarded: SafeFetcher) -> None:
    hits: list[str] = []
    server = await aiohttp_server(redirect_app(hits))
    with await guarded.download(f"http://files.example:{server.port}/hop/3") as download:
        assert download.path.read_bytes() == b"final"
        assert download.final_url == f"http://files.example:{server.port}/hop/0"
        assert download.content_type == "text/plain"
    assert hits == ["/hop/3", "/hop/2", "/hop/1", "/hop/0"]


async def test_too_many_redirects(aiohttp_server: ServerFactory, guarded: SafeFetcher) -> None:
    hits: list[str] = []
    server = await aiohttp_server(redirect_app(hits))
    with pytest.raises(FetchError, match="too many redirects") as info:
        await guarded.download(f"http://files.example:{server.port}/hop/4")
    assert info.value.status == 302
    assert len(hits) == 4


async def test_post_does_not_follow_redirects(aiohttp_server: ServerFactory, fetcher: SafeFetcher) -> None:
    hits: list[str] = []
    server = await aiohttp_server(redirect_app(hits))
    result = await fetcher.post(
        str(server.make_url("/to?to=/hop/0")), body=b"{}", headers={"content-type": "application/json"}, timeout=5
    )
    assert result.status == 302
    assert result.headers["location"] == "/hop/0"
    assert result.elapsed >= 0
    assert hits == ["/to"]


# ---------------------------------------------------------------------------------------------------------
# Statuses, limits and timeouts


def body_app(payload: bytes, gate: asyncio.Event, written: list[int]) -> web.Application:
    async def blob(request: web.Request) -> web.StreamResponse:
        return web.Response(body=payload, content_type="image/png")

    async def missing(request: web.Request) -> web.StreamResponse:
        raise web.HTTPNotFound(text="nope")

    async def declared_huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 10**9
        await resp.prepare(request)
        await stream_until_closed(resp, written)
        return resp

    async def chunked_huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await stream_until_closed(resp, written)
        return resp

    async def stall(request: web.Request) -> web.StreamResponse:
        await asyncio.wait_for(gate.wait(), 5)
        return web.Response(text="late")

    async def echo(request: web.Request) -> web.StreamResponse:
        data = await request.read()
        return web.Response(body=b"got:" + data + b"x" * 5000, status=202, headers={"X-Seen": request.method})

    app = web.Application()
    app.router.add_get("/blob", blob)
    app.router.add_get("/missing", missing)
    app.router.add_get("/declared-huge", declared_huge)
    app.router.add_get("/chunked-huge", chunked_huge)
    app.router.add_route("*", "/stall", stall)
    app.router.add_post("/echo", echo)
    return app


async def stream_until_closed(resp: web.StreamResponse, written: list[int]) -> None:
    """Write up to 256 MiB in 64 KiB chunks, stopping when the client goes away."""
    chunk = b"\0" * 65536
    try:
        for _ in range(4096):
            await resp.write(chunk)
            written[0] += len(chunk)
    except (ConnectionError, RuntimeError):
        pass


@pytest.fixture
def gate() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
async def body_server(
    aiohttp_server: ServerFactory, gate: asyncio.Event
) -> AsyncIterator[tuple[TestServer, list[int]]]:
    written = [0]
    server = await aiohttp_server(body_app(PAYLOAD, gate, written))
    yield server, written
    gate.set()


PAYLOAD = os.urandom(5 * 1024 * 1024 + 123)


async def test_download_spools_large_body(body_server: tuple[TestServer, list[int]], tmp_path: Path) -> None:
    server, _ = body_server
    fetcher = SafeFetcher(LOCAL, temp_dir=str(tmp_path))
    try:
        download = await fetcher.download(str(server.make_url("/blob")))
    finally:
        await fetcher.close()
    assert download.size == len(PAYLOAD)
    assert download.crc32 == crc32_hex(PAYLOAD)
    assert download.head == PAYLOAD[:64]
    assert download.content_type == "image/png"
    assert download.final_url == str(server.make_url("/blob"))
    assert download.path.parent == tmp_path
    assert download.path.read_bytes() == PAYLOAD
    download.cleanup()
    assert not download.path.exists()
    download.cleanup()  # idempotent


async def test_404_is_fetch_error(body_server: tuple[TestServer, list[int]], fetcher: SafeFetcher) -> None:
    server, _ = body_server
    with pytest.raises(FetchError, match="404") as info:
        await fetcher.download(str(server.make_url("/missing?token=secret")))
    assert info.value.status == 404
    assert "secret" not in str(info.value)


async def test_declared_length_over_cap_refused_early(
    body_server: tuple[TestServer, list[int]], tmp_path: Path
) -> None:
    server, written = body_server
    fetcher = SafeFetcher(FetchPolicy(allow_private_networks=True, max_bytes=1024), temp_dir=str(tmp_path))
    try:
        with pytest.raises(TooLargeError, match="1 KB") as info:
            await fetcher.download(str(server.make_url("/declared-huge")))
    finally:
        await fetcher.close()
    assert info.value.limit == 1024
    assert written[0] < 64 * 1024 * 1024
    assert leftovers(tmp_path) == []


async def test_chunked_body_over_cap_aborted_while_streaming(
    body_server: tuple[TestServer, list[int]], tmp_path: Path
) -> None:
    server, written = body_server
    fetcher = SafeFetcher(FetchPolicy(allow_private_networks=True, max_bytes=256 * 1024), temp_dir=str(tmp_path))
    try:
        with pytest.raises(TooLargeError) as info:
            await fetcher.download(str(server.make_url("/chunked-huge")))
    finally:
        await fetcher.close()
    assert info.value.limit == 256 * 1024
    assert written[0] < 64 * 1024 * 1024  # the server was cut off long before its 256 MiB
    assert leftovers(tmp_path) == []


async def test_slow_server_times_out(body_server: tuple[TestServer, list[int]], tmp_path: Path) -> None:
    server, _ = body_server
    fetcher = SafeFetcher(FetchPolicy(allow_private_networks=True, total_timeout=0.2), temp_dir=str(tmp_path))
    try:
        with pytest.raises(FetchError, match="timed out"):
            await fetcher.download(str(server.make_url("/stall")))
    finally:
        await fetcher.close()
    assert leftovers(tmp_path) == []


async def test_post_returns_status_headers_and_excerpt(
    body_server: tuple[TestServer, list[int]], fetcher: SafeFetcher
) -> None:
    server, _ = body_server
    result = await fetcher.post(
        str(server.make_url("/echo")), body=b"hello", headers={"content-type": "application/json"}, timeout=5
    )
    assert result.status == 202
    assert result.headers["x-seen"] == "POST"
    assert result.body_excerpt.startswith("got:hellox")
    assert len(result.body_excerpt) == 1024


async def test_post_timeout(body_server: tuple[TestServer, list[int]], fetcher: SafeFetcher) -> None:
    server, _ = body_server
    with pytest.raises(FetchError, match=r"timed out after 0\.2 s"):
        await fetcher.post(str(server.make_url("/stall")), body=b"{}", headers={}, timeout=0.2)


async def test_connection_refused_is_fetch_error(fetcher: SafeFetcher) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError, match="could not connect") as info:
        await fetcher.download(f"http://127.0.0.1:{port}/a.png")
    assert info.value.status is None


# ---------------------------------------------------------------------------------------------------------
# Proxies: the target is checked here even though the proxy makes the connection


def proxy_app(seen: list[str]) -> web.Application:
    async def anything(request: web.Request) -> web.StreamResponse:
        seen.append(str(request.url))
        return web.Response(body=b"via proxy")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


async def test_http_proxy_checks_target(aiohttp_server: ServerFactory) -> None:
    seen: list[str] = []
    proxy = await aiohttp_server(proxy_app(seen))
    resolver = FakeResolver({"public.example": ["93.184.216.34"], "lan.example": ["10.0.0.5"]})
    fetcher = SafeFetcher(STRICT, resolver=resolver)
    proxy_url = str(proxy.make_url("/"))
    try:
        with pytest.raises(UnsafeURLError, match=r"10\.0\.0\.5"):
            await fetcher.download("http://lan.example/a.png", proxy=proxy_url)
        with pytest.raises(UnsafeURLError, match="http or https"):
            await fetcher.download("ftp://public.example/a.png", proxy=proxy_url)
        assert seen == []
        with await fetcher.download("http://public.example/a.png", proxy=proxy_url) as download:
            assert download.path.read_bytes() == b"via proxy"
        assert len(seen) == 1 and seen[0].endswith("/a.png")
        with pytest.raises(UnsafeURLError, match="proxy must be"):
            await fetcher.download("http://public.example/a.png", proxy="ftp://proxy.example")
    finally:
        await fetcher.close()


# ---------------------------------------------------------------------------------------------------------
# Spooling of multipart parts


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_spool_chunks(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    with await spool_chunks(chunks_of(data, 10_000), max_bytes=len(data), directory=str(tmp_path)) as download:
        assert download.size == len(data)
        assert download.crc32 == crc32_hex(data)
        assert download.head == data[:64]
        assert download.path.read_bytes() == data
        path = download.path
    assert not path.exists()


async def test_spool_chunks_small_head(tmp_path: Path) -> None:
    download = await spool_chunks(chunks_of(b"abc", 1), max_bytes=10, directory=str(tmp_path))
    assert (download.head, download.size, download.crc32) == (b"abc", 3, crc32_hex(b"abc"))
    download.cleanup()


async def test_spool_chunks_over_cap_stops_reading(tmp_path: Path) -> None:
    consumed = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal consumed
        while True:
            consumed += 1
            yield b"x" * 1000

    with pytest.raises(TooLargeError):
        await spool_chunks(endless(), max_bytes=5000, directory=str(tmp_path))
    assert consumed == 6
    assert leftovers(tmp_path) == []
