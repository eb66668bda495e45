"""Loopback proxies for tests: an HTTP proxy (CONNECT and absolute-form) and a SOCKS5 proxy, both recording what
went through them (targets, request lines, outbound sockets, tunnelled bytes)."""

from __future__ import annotations

import asyncio
import socket
import struct

from yarl import URL


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
    """Base: an asyncio server on 127.0.0.1 that records tunnel targets, the bytes clients send through and the
    local address of every outbound socket (what the target sees as the peer)."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.outbound: set[str] = set()
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
            local = up_writer.get_extra_info("sockname")
            self.outbound.add(f"{local[0]}:{local[1]}")
            await self.accept(writer, up_writer)
            await asyncio.gather(_pipe(reader, up_writer, self.sent), _pipe(up_reader, writer, None))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, int] | None:
        raise NotImplementedError

    async def accept(self, writer: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def refuse_target(self, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class ConnectProxy(_LoopbackProxy):
    """An HTTP proxy: CONNECT tunnels, and absolute-form requests (`GET http://host/...`) forwarded as they came;
    `requests` lists each request line. With `require_auth` set, a request without that Proxy-Authorization
    gets 407."""

    def __init__(self, require_auth: str | None = None) -> None:
        super().__init__()
        self.require_auth = require_auth
        self.auth: list[str | None] = []
        self.requests: list[str] = []
        self._writer_heads: dict[asyncio.StreamWriter, bytes] = {}

    async def handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, int] | None:
        raw = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = raw.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
        self.requests.append(f"{method} {target}")
        self.auth.append(headers.get("proxy-authorization"))
        if method != "CONNECT":
            url = URL(target)
            if not url.absolute or url.host is None:
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                return None
            self.targets.append(f"{url.host}:{url.port}")
            self._writer_heads[writer] = raw  # forwarded as it came once the target is connected
            return url.host, url.port or 80
        self.targets.append(target)
        if self.require_auth is not None and headers.get("proxy-authorization") != self.require_auth:
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
            )
            await writer.drain()
            return None
        host, _, port = target.rpartition(":")
        return host.strip("[]"), int(port)

    async def accept(self, writer: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        head = self._writer_heads.pop(writer, None)
        if head is not None:
            upstream.write(head)  # an absolute-form request: pass it on
            await upstream.drain()
            return
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

    async def accept(self, writer: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        writer.write(b"\x05\x00\x00\x01" + bytes(6))
        await writer.drain()

    async def refuse_target(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x05\x05\x00\x01" + bytes(6))
        await writer.drain()
