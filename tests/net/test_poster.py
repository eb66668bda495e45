"""The keep-alive webhook client (`jimeng_server.net.poster`) against real receivers on loopback: an aiohttp
receiver for what a real server sees, and raw `asyncio.start_server` receivers answering hand-written bytes for
the edge cases (chunked, Connection: close, HTTP/1.0, 1xx, long bodies, garbage, silence, broken answers).

Tests that prove the guard is ON use a fake resolver and an address predicate that admits exactly the fixture
address 127.0.0.1 and otherwise is `is_public_address` (as tests/net/test_safe_fetch.py does).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult
from aiohttp.test_utils import TestServer
from support import FakeResolver
from tls_support import make_test_ca

from jimeng_server.net.errors import FetchError, UnsafeURLError
from jimeng_server.net.fetcher import SafeFetcher
from jimeng_server.net.policy import FetchPolicy, IPAddress, is_public_address
from jimeng_server.net.poster import (
    DEFAULT_USER_AGENT,
    AnswerReader,
    BadAnswer,
    Disconnected,
    PostResult,
    WebhookPoster,
)

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
LOCAL = FetchPolicy(allow_private_networks=True)
STRICT = FetchPolicy()
FIXTURE_IP = ipaddress.IPv4Address("127.0.0.1")
HEADERS = {"Content-Type": "application/json", "webhook-id": "evt_1", "webhook-timestamp": "1700000000"}


def fixture_or_public(ip: IPAddress) -> bool:
    """The real predicate, plus exactly the loopback fixture address."""
    return ip == FIXTURE_IP or is_public_address(ip)


@pytest.fixture
async def poster() -> AsyncIterator[WebhookPoster]:
    p = WebhookPoster(LOCAL)
    yield p
    await p.close()


# ---------------------------------------------------------------------------------------------------------
# Receivers


@dataclass
class Seen:
    """What a raw receiver saw: connections accepted, and each request's head and body in order."""

    url: str
    accepted: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # set when a connection ends


Answer = Callable[[int], bytes | None]
"""The bytes to answer the n-th request (0-based, over all connections) with; None: never answer; b"": close the
connection without answering."""


@asynccontextmanager
async def raw_receiver(answer: Answer, *, close_after: bool = False) -> AsyncIterator[Seen]:
    """A loopback HTTP/1.1 receiver writing `answer(n)` verbatim for the n-th request; with `close_after` it
    closes each connection after its first answer (without saying so)."""
    silent = asyncio.Event()
    handlers: set[asyncio.Task[object]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        writers.append(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                index = len(seen.requests)
                seen.requests.append((head, body))
                reply = answer(index)
                if reply is None:
                    await silent.wait()
                    return
                if not reply:
                    return
                writer.write(reply)
                try:
                    await writer.drain()
                except ConnectionError:
                    return
                if close_after:
                    return
        finally:
            writer.close()
            seen.ended.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    seen = Seen(f"http://127.0.0.1:{port}/hook?token=s3cret")
    try:
        yield seen
    finally:
        silent.set()
        server.close()
        for writer in writers:
            writer.close()
        if handlers:
            await asyncio.wait(handlers)


def fixed(reply: bytes) -> Answer:
    return lambda _n: reply


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


async def send(poster: WebhookPoster, url: str, body: bytes = b'{"a":1}', within: float = 5.0) -> PostResult:
    return await poster.post(url, body=body, headers=HEADERS, timeout=within)


# ---------------------------------------------------------------------------------------------------------
# A real aiohttp receiver: the request as a server sees it, and keep-alive reuse


def hook_app(peers: list[object], bodies: list[tuple[dict[str, str], bytes]]) -> web.Application:
    async def hook(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        bodies.append((dict(request.headers), await request.read()))
        return web.json_response({"ok": True}, status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    return app


async def test_aiohttp_receiver_gets_the_request_and_one_connection_carries_them_all(
    aiohttp_server: ServerFactory, poster: WebhookPoster
) -> None:
    peers: list[object] = []
    bodies: list[tuple[dict[str, str], bytes]] = []
    server = await aiohttp_server(hook_app(peers, bodies))
    url = str(server.make_url("/hook"))
    for n in range(5):
        result = await send(poster, url, body=b'{"n":%d}' % n)
        assert result.status == 200
        assert result.body_excerpt == '{"ok": true}'
        assert result.headers["content-type"].startswith("application/json")
        assert result.elapsed > 0
    assert [b for _, b in bodies] == [b'{"n":%d}' % n for n in range(5)]
    headers = bodies[0][0]
    assert headers["Host"] == f"127.0.0.1:{server.port}"
    assert headers["User-Agent"] == DEFAULT_USER_AGENT
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == "7"
    assert headers["webhook-id"] == "evt_1" and headers["webhook-timestamp"] == "1700000000"
    assert len(set(peers)) == 1 and poster.connections_made == 1


async def test_concurrent_sends_open_at_most_one_connection_each_then_reuse_them(
    aiohttp_server: ServerFactory, poster: WebhookPoster
) -> None:
    peers: list[object] = []
    server = await aiohttp_server(hook_app(peers, []))
    url = str(server.make_url("/hook"))
    results = await asyncio.gather(*(send(poster, url) for _ in range(4)))
    assert [r.status for r in results] == [200] * 4
    opened = poster.connections_made
    assert 1 <= opened <= 4 and poster.idle_connections == opened
    for _ in range(6):
        assert (await send(poster, url)).status == 200
    assert poster.connections_made == opened and len(set(peers)) == opened


async def test_safe_fetcher_posts_through_the_poster_and_keeps_the_connection(aiohttp_server: ServerFactory) -> None:
    peers: list[object] = []
    server = await aiohttp_server(hook_app(peers, []))
    fetcher = SafeFetcher(LOCAL)
    try:
        for _ in range(3):
            result = await fetcher.post(str(server.make_url("/hook")), body=b"{}", headers=HEADERS, timeout=5)
            assert result.status == 200
    finally:
        await fetcher.close()
    assert len(set(peers)) == 1


# ---------------------------------------------------------------------------------------------------------
# Answers in every framing


async def test_chunked_answer_with_trailers_is_read_and_the_connection_kept(poster: WebhookPoster) -> None:
    reply = (
        b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    async with raw_receiver(fixed(reply)) as seen:
        for _ in range(2):
            result = await send(poster, seen.url)
            assert (result.status, result.body_excerpt) == (202, "hello, world")
    assert seen.accepted == 1 and len(seen.requests) == 2


async def test_connection_close_is_honoured(poster: WebhookPoster) -> None:
    reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    async with raw_receiver(fixed(reply)) as seen:
        for _ in range(2):
            assert (await send(poster, seen.url)).body_excerpt == "ok"
    assert seen.accepted == 2 and poster.idle_connections == 0


async def test_http10_answer_read_until_close(poster: WebhookPoster) -> None:
    reply = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfine"
    async with raw_receiver(fixed(reply), close_after=True) as seen:
        for _ in range(2):
            result = await send(poster, seen.url)
            assert (result.status, result.body_excerpt) == (200, "fine")
    assert seen.accepted == 2


async def test_interim_100_continue_is_skipped(poster: WebhookPoster) -> None:
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-Final: yes\r\n\r\n"
    async with raw_receiver(fixed(reply)) as seen:
        result = await send(poster, seen.url)
        assert (result.status, result.headers.get("x-final"), result.body_excerpt) == (204, "yes", "")
        assert (await send(poster, seen.url)).status == 204
    assert seen.accepted == 1


async def test_long_body_cut_to_1_kib_and_its_connection_not_reused(poster: WebhookPoster) -> None:
    # Only 2 KiB of the declared 50,000 bytes ever come: the answer is ready after 1 KiB, the rest is not awaited.
    reply = b"HTTP/1.1 500 Oops\r\nContent-Length: 50000\r\n\r\n" + b"e" * 2048
    async with raw_receiver(fixed(reply)) as seen:
        for _ in range(2):
            result = await send(poster, seen.url)
            assert result.status == 500 and result.body_excerpt == "e" * 1024
    assert seen.accepted == 2 and poster.idle_connections == 0


async def test_long_chunked_body_cut_too(poster: WebhookPoster) -> None:
    chunk = b"400\r\n" + b"c" * 1024 + b"\r\n"
    reply = b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2  # no last chunk, ever
    async with raw_receiver(fixed(reply)) as seen:
        result = await send(poster, seen.url)
        assert result.status == 503 and result.body_excerpt == "c" * 1024
        assert (await send(poster, seen.url)).status == 503
    assert seen.accepted == 2 and poster.idle_connections == 0


async def test_redirect_is_a_status_never_followed(poster: WebhookPoster) -> None:
    async with raw_receiver(fixed(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n")) as seen:
        result = await send(poster, seen.url)
    assert result.status == 302 and result.headers["location"] == "/elsewhere"
    assert len(seen.requests) == 1 and seen.requests[0][0].startswith(b"POST /hook?token=s3cret HTTP/1.1\r\n")


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_found_whatever_its_case(poster: WebhookPoster, status: int) -> None:
    reply = b"HTTP/1.1 %d Slow Down\r\nretry-AFTER: 120\r\nContent-Length: 4\r\n\r\nslow" % status
    async with raw_receiver(fixed(reply)) as seen:
        result = await send(poster, seen.url)
    assert (result.status, result.headers.get("Retry-After"), result.body_excerpt) == (status, "120", "slow")


# ---------------------------------------------------------------------------------------------------------
# Failures: silence, broken and garbled answers, refused connections


async def test_receiver_that_never_answers_times_out(poster: WebhookPoster) -> None:
    async with raw_receiver(lambda _n: None) as seen:
        with pytest.raises(FetchError, match=r"^POST to the callback_url timed out after 0\.2 s$"):
            await send(poster, seen.url, within=0.2)
    assert poster.idle_connections == 0


async def test_receiver_closing_mid_answer_is_a_broken_connection(poster: WebhookPoster) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"
    async with raw_receiver(fixed(reply), close_after=True) as seen:
        broke = r"the connection to 127\.0\.0\.1 broke while reading the response"
        with pytest.raises(FetchError, match=broke) as info:
            await send(poster, seen.url)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad\r\n\r\n",
    ],
)
async def test_garbage_answer_is_a_fetch_error(poster: WebhookPoster, reply: bytes) -> None:
    async with raw_receiver(fixed(reply)) as seen:
        with pytest.raises(FetchError, match="not a valid HTTP answer") as info:
            await send(poster, seen.url)
    assert "s3cret" not in str(info.value)


async def test_connection_refused(poster: WebhookPoster) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError, match=f"could not connect to 127.0.0.1:{port}"):
        await send(poster, f"http://127.0.0.1:{port}/hook")


async def test_kept_connection_closed_by_the_receiver_is_replaced(poster: WebhookPoster) -> None:
    async with raw_receiver(fixed(OK), close_after=True) as seen:
        for _ in range(3):
            assert (await send(poster, seen.url)).status == 200
    assert seen.accepted == 3 and len(seen.requests) == 3


async def test_a_kept_connection_closed_instead_of_answering_is_retried_once_on_a_new_one(
    poster: WebhookPoster,
) -> None:
    async with raw_receiver(lambda n: b"" if n == 1 else OK) as seen:
        assert (await send(poster, seen.url)).status == 200
        assert (await send(poster, seen.url, body=b'{"n":2}')).status == 200  # request 1 dropped, sent again
    assert seen.accepted == 2 and [body for _, body in seen.requests] == [b'{"a":1}', b'{"n":2}', b'{"n":2}']


async def test_a_new_connection_closed_instead_of_answering_is_not_retried(poster: WebhookPoster) -> None:
    async with raw_receiver(lambda n: b"") as seen:
        with pytest.raises(FetchError, match=r"broke while reading the response .*without answering"):
            await send(poster, seen.url)
    assert seen.accepted == 1 and len(seen.requests) == 1


async def test_idle_connections_expire(poster: WebhookPoster) -> None:
    async with raw_receiver(fixed(OK)) as seen:
        await send(poster, seen.url)
        assert poster.idle_connections == 1
        assert poster.expire_idle(asyncio.get_running_loop().time() + 3600) == 1
        assert poster.idle_connections == 0
        await send(poster, seen.url)
    assert seen.accepted == 2


async def test_idle_connections_are_closed_by_the_sweeper() -> None:
    poster = WebhookPoster(LOCAL, idle_timeout=0.05)
    try:
        async with raw_receiver(fixed(OK)) as seen:
            await send(poster, seen.url)
            assert poster.idle_connections == 1
            await asyncio.wait_for(seen.ended.wait(), 5)  # the receiver sees the connection end
            assert poster.idle_connections == 0
    finally:
        await poster.close()


async def test_header_injection_refused(poster: WebhookPoster) -> None:
    async with raw_receiver(fixed(OK)) as seen:
        with pytest.raises(ValueError, match="line break"):
            await poster.post(seen.url, body=b"{}", headers={"webhook-id": "a\r\nX-Evil: 1"}, timeout=5)
        with pytest.raises(ValueError, match="line break"):
            await poster.post(seen.url, body=b"{}", headers={"webhook-id": "a\nX-Evil: 1"}, timeout=5)
        for bad in ({"X-Evil\r\nHost": "x"}, {"Host": "evil.example"}, {"content-length": "0"}, {"": "x"}):
            with pytest.raises(ValueError, match="bad name or is set by the poster"):
                await poster.post(seen.url, body=b"{}", headers=bad, timeout=5)
        await poster.post(seen.url, body=b"{}", headers={"user-agent": "theirs/1"}, timeout=5)
    assert len(seen.requests) == 1
    head = seen.requests[0][0].decode()
    assert "user-agent: theirs/1\r\n" in head and DEFAULT_USER_AGENT not in head


# ---------------------------------------------------------------------------------------------------------
# The SSRF guard


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "10.0.0.5", "169.254.169.254", "2130706433", "localhost"])
async def test_private_hosts_refused_without_a_lookup(host: str) -> None:
    resolver = FakeResolver({})
    poster = WebhookPoster(STRICT, resolver=resolver)
    try:
        with pytest.raises(UnsafeURLError, match="allow_private_networks"):
            await send(poster, f"http://{host}:8080/hook")
    finally:
        await poster.close()
    assert resolver.asked == [] and poster.connections_made == 0


async def test_names_resolving_to_a_private_address_refused_and_public_ones_connect_to_the_checked_address() -> None:
    async with raw_receiver(fixed(OK)) as seen:
        port = seen.url.split(":")[2].split("/")[0]
        resolver = FakeResolver(
            {"lan.example": ["93.184.216.34", "10.0.0.5"], "hooks.example": ["127.0.0.1"], "v6.example": ["::1"]}
        )
        poster = WebhookPoster(STRICT, resolver=resolver, allow_address=fixture_or_public)
        try:
            with pytest.raises(UnsafeURLError, match=r"callback_url host lan\.example resolves to .*10\.0\.0\.5"):
                await send(poster, f"http://lan.example:{port}/hook")
            with pytest.raises(UnsafeURLError, match="::1"):
                await send(poster, f"http://v6.example:{port}/hook")
            with pytest.raises(FetchError, match=r"could not resolve host nowhere\.example"):
                await send(poster, f"http://nowhere.example:{port}/hook")
            assert seen.accepted == 0
            for _ in range(2):
                assert (await send(poster, f"http://hooks.example:{port}/hook")).status == 200
        finally:
            await poster.close()
    assert resolver.asked == ["lan.example", "v6.example", "nowhere.example", "hooks.example"]  # once: reused
    assert seen.accepted == 1 and seen.requests[0][0].count(f"Host: hooks.example:{port}\r\n".encode()) == 1


class SlowResolver(FakeResolver):
    """A FakeResolver whose answers wait for `release` (to hold lookups open while others join)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        super().__init__(table)
        self.release = asyncio.Event()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answer = await super().resolve(host, port, family)
        await self.release.wait()
        return answer


async def test_connections_opened_at_once_share_one_lookup_which_is_kept_for_dns_ttl() -> None:
    async with raw_receiver(fixed(OK)) as other, raw_receiver(fixed(OK)) as seen:
        port = seen.url.split(":")[2].split("/")[0]
        other_port = other.url.split(":")[2].split("/")[0]
        resolver = SlowResolver({"hooks.example": ["127.0.0.1"]})
        poster = WebhookPoster(STRICT, resolver=resolver, allow_address=fixture_or_public)
        try:
            # Four sends need a connection at once: the lookup is held open until all four have started.
            sends = [asyncio.ensure_future(send(poster, f"http://hooks.example:{port}/hook")) for _ in range(4)]
            await asyncio.sleep(0)
            resolver.release.set()
            assert [r.status for r in await asyncio.gather(*sends)] == [200] * 4
            assert resolver.asked == ["hooks.example"]
            assert (await send(poster, f"http://hooks.example:{other_port}/hook")).status == 200
            assert resolver.asked == ["hooks.example"] * 2  # another port: another lookup
        finally:
            await poster.close()
        poster = WebhookPoster(STRICT, resolver=resolver, allow_address=fixture_or_public, dns_ttl=0.0)
        try:
            await send(poster, f"http://hooks.example:{port}/hook")
            poster.expire_idle(asyncio.get_running_loop().time() + 3600)
            await send(poster, f"http://hooks.example:{port}/hook")
        finally:
            await poster.close()
    assert resolver.asked == ["hooks.example"] * 4  # no cache: each new connection looks the name up


async def test_international_names_are_looked_up_and_sent_in_idna() -> None:
    async with raw_receiver(fixed(OK)) as seen:
        port = seen.url.split(":")[2].split("/")[0]
        resolver = FakeResolver({"xn--e1afmkfd.xn--p1ai": ["127.0.0.1"]})
        poster = WebhookPoster(STRICT, resolver=resolver, allow_address=fixture_or_public)
        try:
            assert (await send(poster, f"http://пример.рф:{port}/путь")).status == 200
        finally:
            await poster.close()
    assert resolver.asked == ["xn--e1afmkfd.xn--p1ai"]
    head = seen.requests[0][0]
    assert head.startswith(b"POST /%D0%BF%D1%83%D1%82%D1%8C HTTP/1.1\r\n")
    assert f"Host: xn--e1afmkfd.xn--p1ai:{port}\r\n".encode() in head


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "file:///etc/passwd", "gopher://example.com/"])
async def test_non_http_schemes_refused_even_when_private_allowed(poster: WebhookPoster, url: str) -> None:
    with pytest.raises(UnsafeURLError, match="http or https"):
        await send(poster, url)


async def test_https_self_signed_refused_by_default_verification(tmp_path: Path) -> None:
    server_context, _ca_path = make_test_ca(tmp_path)
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    poster = WebhookPoster(LOCAL)
    try:
        with pytest.raises(FetchError, match=f"could not connect to 127.0.0.1:{port} .*certificate verify failed"):
            await send(poster, f"https://127.0.0.1:{port}/hook")
    finally:
        await poster.close()
        server.close()


async def test_https_with_a_trusted_ca_is_sent_and_kept(tmp_path: Path, aiohttp_server: ServerFactory) -> None:
    server_context, ca_path = make_test_ca(tmp_path)
    peers: list[object] = []
    app = hook_app(peers, [])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    poster = WebhookPoster(LOCAL, ssl_context=ssl.create_default_context(cafile=ca_path))
    try:
        for _ in range(2):
            assert (await send(poster, f"https://127.0.0.1:{port}/hook")).status == 200
    finally:
        await poster.close()
        await runner.cleanup()
    assert len(set(peers)) == 1


# ---------------------------------------------------------------------------------------------------------
# The answer parser, byte by byte


def feed_bytewise(data: bytes) -> AnswerReader:
    reader = AnswerReader()
    for n in range(len(data)):
        if reader.feed(data[n : n + 1]):
            assert n == len(data) - 1, "ready before the end"
            return reader
    raise AssertionError("never ready")


def test_reader_handles_any_split() -> None:
    reader = feed_bytewise(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert (reader.status, bytes(reader.excerpt), reader.reusable, reader.complete) == (200, b"abc", True, True)
    reader = feed_bytewise(b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nxyz")
    assert (reader.status, bytes(reader.excerpt), reader.reusable) == (201, b"xyz", True)


def test_reader_keeps_a_connection_only_when_the_body_was_read_to_its_end() -> None:
    head = b"HTTP/1.1 500 Oops\r\nContent-Length: 3000\r\n\r\n"
    whole = AnswerReader()
    assert whole.feed(head + b"e" * 3000)
    assert (bytes(whole.excerpt), whole.complete, whole.reusable) == (b"e" * 1024, True, True)
    part = AnswerReader()
    assert part.feed(head + b"e" * 2048)
    assert (bytes(part.excerpt), part.complete, part.reusable) == (b"e" * 1024, False, False)
    extra = AnswerReader()
    assert extra.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
    assert (bytes(extra.excerpt), extra.reusable) == (b"ok", False)


def test_reader_refuses_bad_framing() -> None:
    with pytest.raises(BadAnswer, match="Content-Length"):
        AnswerReader().feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n")
    with pytest.raises(BadAnswer, match="chunk size"):
        AnswerReader().feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    with pytest.raises(BadAnswer, match="64 KiB"):
        AnswerReader().feed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000)
    reader = AnswerReader()
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    with pytest.raises(Disconnected) as info:
        reader.eof()
    assert info.value.started
    with pytest.raises(Disconnected) as info:
        AnswerReader().eof()
    assert not info.value.started


# ---------------------------------------------------------------------------------------------------------
# The server runs on uvloop when it is installed (`[server] event_loop = "auto"`): its transports are not
# asyncio.Transport subclasses


def test_under_uvloop_sends_keep_their_connection_and_time_out() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        poster = WebhookPoster(LOCAL)
        try:
            async with raw_receiver(fixed(OK)) as seen:
                for _ in range(3):
                    assert (await send(poster, seen.url)).body_excerpt == "ok"
            assert seen.accepted == 1
            async with raw_receiver(lambda _n: None) as seen:
                with pytest.raises(FetchError, match=r"timed out after 0\.2 s"):
                    await send(poster, seen.url, within=0.2)
        finally:
            await poster.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
