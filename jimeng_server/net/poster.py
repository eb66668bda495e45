"""The lean webhook POST client: HTTP/1.1 over an asyncio Protocol, with a keep-alive pool per receiver.

`WebhookPoster.post` sends one POST to an untrusted URL under a `FetchPolicy`, the way `SafeFetcher.post` did
through aiohttp, with less work per send: the URL's guard verdict and the request's fixed lines are computed
once per callback URL (a bounded LRU), the request goes out in one `write`, the answer is parsed in place and
only its first 1 KiB is kept. The SSRF guard is the same: `check_url`, then every address the resolver gives is
checked with the address filter, and the connection goes to one of those checked addresses (no second
lookup). A pooled connection is reused only for the same scheme, host and port.

What it answers: any status (3xx included, never followed) is a `PostResult`. Refusals raise `UnsafeURLError`;
a failed lookup, connection or exchange, a malformed answer and the time limits raise `FetchError` (the whole
exchange is bounded by the send's `timeout`, the lookup and connection also by `policy.connect_timeout`).
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, cast

from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .errors import FetchError
from .policy import AddressFilter, FetchPolicy, check_resolved, check_url, is_public_address, parse_ip_literal
from .resolver import LazyResolver

EXCERPT_BYTES: Final = 1024
DEFAULT_USER_AGENT: Final = "jimeng-server/0.1"
MAX_HEAD_BYTES: Final = 64 * 1024
"""An answer's status line and headers together (or a chunk-size or trailer line) may not be longer."""

_CHECKED_URLS: Final = 1024
_NO_BODY_STATUSES: Final = frozenset({204, 304})
_RESERVED_HEADERS: Final = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True)
class PostResult:
    """Outcome of one POST: status (3xx included, never followed), headers (case-insensitive), the first 1 KiB of
    the body, seconds from the call to the answer."""

    status: int
    headers: Mapping[str, str]
    body_excerpt: str
    elapsed: float


def display_url(url: URL) -> str:
    """The URL without credentials, query or fragment, for messages (queries often carry secrets)."""
    try:
        shown = str(url.with_user(None).with_query(None).with_fragment(None))
    except ValueError:
        shown = url.host or "?"
    return shown if len(shown) <= 200 else shown[:197] + "..."


# ---------------------------------------------------------------------------------------------------------
# The answer parser (pure: bytes in, a status, headers and an excerpt out)


class BadAnswer(Exception):
    """The bytes received are not an HTTP/1.x answer (the message says what was wrong)."""


class Disconnected(Exception):
    """The receiver closed the connection before its answer was complete; `started` is False when not one byte of
    an answer had arrived."""

    def __init__(self, detail: str, *, started: bool) -> None:
        super().__init__(detail)
        self.started = started


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_EOF, _DONE = range(8)


class AnswerReader:
    """Reads one answer incrementally: `feed(bytes)` and `eof()` return True once the answer is ready, i.e.
    complete, or its first `EXCERPT_BYTES` of body are in (the rest is never buffered). Then `status`, `headers`
    and `excerpt` are final and `reusable` says whether the connection may carry another request (the body was
    read to its end, nothing extra came, and neither side asked to close). 1xx answers before the final one are
    skipped. Raises BadAnswer or Disconnected."""

    __slots__ = ("_buf", "_left", "_state", "excerpt", "headers", "reusable", "started", "status")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = _HEAD
        self._left = 0
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.excerpt = bytearray()
        self.reusable = True
        self.started = False

    @property
    def complete(self) -> bool:
        """True when the whole answer (body to its end) was read."""
        return self._state == _DONE

    def feed(self, data: bytes) -> bool:
        """Take the next bytes from the connection; True when the answer is ready."""
        self.started = True
        self._buf += data
        return self._advance()

    def eof(self) -> bool:
        """The receiver closed its side; True when that ends the answer (a body read until close)."""
        if self._state == _UNTIL_EOF:
            self._state = _DONE
            self.reusable = False
            return True
        if self._state == _DONE:
            self.reusable = False
            return True
        if not self.started:
            raise Disconnected("the receiver closed the connection without answering", started=False)
        raise Disconnected("the receiver closed the connection before its answer was complete", started=True)

    def _ready(self) -> bool:
        if len(self.excerpt) >= EXCERPT_BYTES:
            self.reusable = False  # the rest of the body is not read: the connection cannot carry another request
            return True
        return False

    def _keep(self, size: int) -> None:
        """Consume `size` body bytes from the buffer, keeping what fits in the excerpt."""
        room = EXCERPT_BYTES - len(self.excerpt)
        if room > 0:
            self.excerpt += self._buf[: min(room, size)]
        del self._buf[:size]

    def _line(self) -> bytes | None:
        end = self._buf.find(b"\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD_BYTES:
                raise BadAnswer("a line of the answer is longer than 64 KiB")
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _advance(self) -> bool:
        while True:
            state = self._state
            if state == _HEAD:
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > MAX_HEAD_BYTES:
                        raise BadAnswer("the answer's headers are longer than 64 KiB")
                    if len(self._buf) >= 5 and not self._buf.startswith(b"HTTP/"):
                        start = bytes(self._buf[:40])
                        raise BadAnswer(f"the answer does not start with an HTTP status line ({start!r})")
                    return False
                head = bytes(self._buf[:end])
                del self._buf[: end + 4]
                self._head(head)
            elif state in (_LENGTH, _CHUNK_DATA):
                if not self._buf:
                    return self._ready()
                take = min(self._left, len(self._buf))
                self._keep(take)
                self._left -= take
                if self._left:
                    return self._ready()
                self._state = _DONE if state == _LENGTH else _CHUNK_END
            elif state == _CHUNK_SIZE:
                line = self._line()
                if line is None:
                    return self._ready()
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16) if size_text and size_text.isalnum() else -1
                except ValueError:
                    size = -1
                if size < 0:
                    raise BadAnswer(f"bad chunk size {line[:40]!r}")
                self._left = size
                self._state = _CHUNK_DATA if size else _TRAILERS
            elif state == _CHUNK_END:
                if len(self._buf) < 2:
                    return self._ready()
                if self._buf[:2] != b"\r\n":
                    raise BadAnswer("a chunk is not followed by CRLF")
                del self._buf[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                line = self._line()
                if line is None:
                    return self._ready()
                if not line:
                    self._state = _DONE
            elif state == _UNTIL_EOF:
                self._keep(len(self._buf))
                return self._ready()
            else:  # _DONE
                if self._buf:
                    self.reusable = False  # bytes beyond the answer: the connection is out of step
                    self._buf.clear()
                return True

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0]
        parts = status_line.split(b" ", 2)
        version = parts[0]
        if (
            len(parts) < 2
            or len(version) != 8
            or not version.startswith(b"HTTP/1.")
            or version[7:] not in (b"0", b"1")
            or len(parts[1]) != 3
            or not parts[1].isdigit()
        ):
            raise BadAnswer(f"bad status line {status_line[:60]!r}")
        status = int(parts[1])
        headers: list[tuple[str, str]] = []
        length: bytes | None = None
        chunked = False
        coded = False
        close = version == b"HTTP/1.0"
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise BadAnswer(f"bad header line {line[:60]!r}")
            value = value.strip()
            lower = name.lower()
            if lower == b"content-length":
                if length is not None and length != value:
                    raise BadAnswer("the answer has two different Content-Length headers")
                length = value
            elif lower == b"transfer-encoding":
                coded = True
                chunked = value.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
            elif lower == b"connection":
                tokens = {t.strip().lower() for t in value.split(b",")}
                if b"close" in tokens:
                    close = True
                elif b"keep-alive" in tokens:
                    close = False
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if 100 <= status < 200 and status != 101:
            return  # an interim answer (100 Continue, 103 Early Hints): the final one follows
        self.status = status
        self.headers = headers
        if close:
            self.reusable = False
        if status == 101:
            self.reusable = False
            self._state = _DONE
        elif status in _NO_BODY_STATUSES:
            self._state = _DONE
        elif coded:
            if length is not None:
                self.reusable = False  # both framings at once: finish this answer, then drop the connection
            self._state = _CHUNK_SIZE if chunked else _UNTIL_EOF
            if not chunked:
                self.reusable = False
        elif length is not None:
            if not length.isdigit() or len(length) > 18:
                raise BadAnswer(f"bad Content-Length {length[:30]!r}")
            self._left = int(length)
            self._state = _LENGTH if self._left else _DONE
        else:
            self._state = _UNTIL_EOF
            self.reusable = False


# ---------------------------------------------------------------------------------------------------------
# One connection


class _Connection(asyncio.Protocol):
    """A client connection carrying one exchange at a time; `dead` once it cannot carry another."""

    __slots__ = ("_reader", "_transport", "_waiter", "dead", "idle_since", "key")

    def __init__(self, key: tuple[str, str, int]) -> None:
        self.key = key
        self._transport: asyncio.Transport | None = None
        self._reader: AnswerReader | None = None
        self._waiter: asyncio.Future[AnswerReader] | None = None
        self.dead = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not a subclass of asyncio.Transport, so no isinstance check).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is None:  # nothing was asked: the connection is out of step
            self.drop()
            return
        try:
            ready = reader.feed(data)
        except (BadAnswer, Disconnected) as exc:
            self._fail(exc)
            return
        if ready:
            self._finish(reader)

    def eof_received(self) -> bool:
        reader = self._reader
        self.dead = True
        if reader is not None:
            try:
                ready = reader.eof()
            except Disconnected as exc:
                self._fail(exc)
            else:
                if ready:
                    self._finish(reader)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        reader = self._reader
        if reader is not None:
            started = reader.started
            detail = f"the connection was lost ({exc})" if exc else "the receiver closed the connection"
            self._fail(Disconnected(detail + ("" if started else " without answering"), started=started))

    def _finish(self, reader: AnswerReader) -> None:
        self._reader = None
        if not reader.reusable:
            self.drop()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(reader)

    def _fail(self, exc: Exception) -> None:
        self._reader = None
        self.drop()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, request: bytes, waiter: asyncio.Future[AnswerReader]) -> None:
        """Write one request; `waiter` gets the reader once the answer is ready (or the failure)."""
        assert self._transport is not None
        self._reader = AnswerReader()
        self._waiter = waiter
        self._transport.write(request)

    @property
    def usable(self) -> bool:
        """True when the connection is open and may carry a request."""
        return not self.dead and self._transport is not None and not self._transport.is_closing()

    def drop(self) -> None:
        """Close the connection at once (unsent data is discarded)."""
        self.dead = True
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        """Close the connection after what was written."""
        self.dead = True
        if self._transport is not None:
            self._transport.close()


# ---------------------------------------------------------------------------------------------------------
# The poster


@dataclass(frozen=True, slots=True)
class _Target:
    """A checked callback URL and what every send to it shares."""

    key: tuple[str, str, int]  # scheme, host as sent (IDNA), port: connections are pooled by it
    host: str  # for messages: as the URL reads (an IPv6 literal without brackets)
    literal: bool  # the host is an address: no lookup
    shown: str  # for messages
    head: bytes  # "POST <target> HTTP/1.1" and the Host line


def _expire(waiter: asyncio.Future[AnswerReader]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class WebhookPoster:
    """POSTs to untrusted URLs under `policy` over pooled keep-alive connections. Use inside a running loop;
    `await close()` (safe twice).

    `resolver` answers DNS lookups (default: aiohttp's default resolver, created lazily and closed here; an
    injected one is not closed). `allow_address` replaces the address predicate (tests only: it must be at least
    as strict in production); with `policy.allow_private_networks` every address is allowed. At most
    `max_idle_per_host` idle connections are kept per (scheme, host, port), `max_idle` in all, each for at most
    `idle_timeout` seconds. A lookup's addresses serve new connections to that name for `dns_ttl` seconds
    (aiohttp's client cached them as long; they are checked again at each use), and connections opened at once
    share one lookup. `ssl_context` replaces the default verifying context (`ssl.create_default_context()`, the
    verification aiohttp's client applies by default).
    """

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        resolver: AbstractResolver | None = None,
        allow_address: AddressFilter = is_public_address,
        user_agent: str = DEFAULT_USER_AGENT,
        max_idle_per_host: int = 64,
        max_idle: int = 512,
        idle_timeout: float = 15.0,
        dns_ttl: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._policy = policy
        self._resolver = LazyResolver(resolver)
        self._allow: AddressFilter = (lambda _ip: True) if policy.allow_private_networks else allow_address
        self._user_agent = f"User-Agent: {user_agent}\r\n".encode("latin-1")
        self._max_idle_per_host = max_idle_per_host
        self._max_idle = max_idle
        self._idle_timeout = idle_timeout
        self._ssl = ssl_context
        self._checked: OrderedDict[tuple[str, str], _Target] = OrderedDict()
        self._names: dict[tuple[str, ...], bytes] = {}  # checked header names -> the User-Agent line to add
        self._dns_ttl = dns_ttl
        self._looked_up: dict[tuple[str, int], tuple[float, list[str]]] = {}  # -> (until, checked addresses)
        self._lookups: dict[tuple[str, int], asyncio.Task[list[str]]] = {}  # lookups under way
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._idle_count = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        self.connections_made = 0
        """How many connections were opened (a figure for tests and benches)."""

    @property
    def idle_connections(self) -> int:
        """How many open connections wait in the pool."""
        return self._idle_count

    async def close(self) -> None:
        """Close every pooled connection (and the resolver if the poster created it); later sends fail."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._idle_count = 0
        for lookup in self._lookups.values():
            lookup.cancel()
        await self._resolver.close()

    def inner_resolver(self) -> AbstractResolver:
        """The resolver lookups go through (created on first use when none was injected)."""
        return self._resolver.get()

    # ------------------------------------------------------------------ sending

    async def post(
        self,
        url: str,
        *,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,  # noqa: ASYNC109 - the per-delivery budget is part of the API contract
        what: str = "callback_url",
    ) -> PostResult:
        """POST `body` with `headers` (plus Host, User-Agent unless given, Content-Length) once; never follows a
        redirect. Raises UnsafeURLError (guard) or FetchError (lookup, connection, bad answer, `timeout`)."""
        started = time.monotonic()
        target = self._target(url, what)
        request = self._request(target, headers, body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        reused_once = False
        while True:
            conn = self._pooled(target.key)
            fresh = conn is None
            if conn is None:
                conn = await self._connect(target, loop, deadline, timeout, what)
            waiter: asyncio.Future[AnswerReader] = loop.create_future()
            timer = loop.call_at(deadline, _expire, waiter)
            done = False
            try:
                conn.send(request, waiter)
                reader = await waiter
                done = True
            except TimeoutError:
                raise FetchError(f"POST to the {what} timed out after {timeout:g} s") from None
            except Disconnected as exc:
                if not fresh and not exc.started and not reused_once:
                    reused_once = True  # a kept connection the receiver had closed meanwhile: once more, anew
                    continue
                raise FetchError(f"the connection to {target.host} broke while reading the response ({exc})") from None
            except BadAnswer as exc:
                raise FetchError(f"request to {target.shown} failed (not a valid HTTP answer: {exc})") from None
            finally:
                timer.cancel()
                if not done:
                    conn.drop()
            self._release(conn)
            return PostResult(
                status=reader.status,
                headers=CIMultiDictProxy(CIMultiDict(reader.headers)),
                body_excerpt=reader.excerpt.decode("utf-8", errors="replace"),
                elapsed=time.monotonic() - started,
            )

    def _target(self, url: str, what: str) -> _Target:
        """The checked URL (from the LRU when it was checked before: `check_url` is pure for one policy)."""
        key = (url, what)
        target = self._checked.get(key)
        if target is not None:
            self._checked.move_to_end(key)
            return target
        parsed = check_url(url, self._policy, what=what, allow_address=self._allow)
        host = parsed.host or ""
        name = parsed.raw_host or host  # what is looked up, sent in Host and checked in the certificate
        scheme = parsed.scheme.lower()
        port = parsed.port or (443 if scheme == "https" else 80)
        authority = parsed.host_port_subcomponent or host
        path = parsed.raw_path_qs or "/"
        head = f"POST {path} HTTP/1.1\r\nHost: {authority}\r\n"
        target = _Target(
            key=(scheme, name, port),
            host=host,
            literal=parse_ip_literal(name) is not None,
            shown=display_url(parsed),
            head=head.encode("ascii"),
        )
        self._checked[key] = target
        if len(self._checked) > _CHECKED_URLS:
            self._checked.popitem(last=False)
        return target

    def _request(self, target: _Target, headers: Mapping[str, str], body: bytes) -> bytes:
        """The request's bytes: the URL's fixed lines, the caller's headers, Content-Length, the body. Raises
        ValueError for a header with a line break, a bad name, or one the poster sets itself."""
        names = tuple(headers)
        agent = self._names.get(names)
        if agent is None:
            agent = self._check_names(names)
        lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        if lines.count("\n") != len(names) or lines.count("\r") != len(names):
            raise ValueError("a header value has a line break")
        return b"".join(
            (target.head, lines.encode("latin-1"), agent, b"Content-Length: %d\r\n\r\n" % len(body), body)
        )

    def _check_names(self, names: tuple[str, ...]) -> bytes:
        """Check a set of header names once (a sender uses the same few every time); the User-Agent line to add."""
        agent = self._user_agent
        for name in names:
            lower = name.lower()
            if not name or any(c in name for c in ":\r\n ") or lower in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} has a bad name or is set by the poster")
            if lower == "user-agent":
                agent = b""
        if len(self._names) < 64:
            self._names[names] = agent
        return agent

    # ------------------------------------------------------------------ connections

    async def _connect(
        self, target: _Target, loop: asyncio.AbstractEventLoop, deadline: float, budget: float, what: str
    ) -> _Connection:
        """A new connection to a checked address of the target, within the connect limit."""
        if self._closed:
            raise FetchError(f"POST to the {what} failed (the sender is shutting down)")
        limit = min(deadline, loop.time() + self._policy.connect_timeout)
        try:
            async with asyncio.timeout_at(limit):
                addresses = await self._addresses(target, what)
                return await self._open(target, addresses, loop)
        except TimeoutError:
            if limit < deadline:
                raise FetchError(f"request to {target.shown} timed out") from None
            raise FetchError(f"POST to the {what} timed out after {budget:g} s") from None

    async def _addresses(self, target: _Target, what: str) -> list[str]:
        """The addresses to connect to: the literal, or every address the lookup gave, each checked (a lookup
        younger than `dns_ttl` is reused, one under way is joined)."""
        _scheme, name, port = target.key
        if target.literal:
            return [name]
        key = (name, port)
        loop = asyncio.get_running_loop()
        known = self._looked_up.get(key)
        if known is not None and known[0] > loop.time():
            addresses = known[1]
        else:
            lookup = self._lookups.get(key)
            if lookup is None:  # a task of its own: one waiter's cancellation does not fail the others
                lookup = self._lookups[key] = loop.create_task(self._look_up(target))
                lookup.add_done_callback(functools.partial(self._looked, key))
            addresses = await asyncio.shield(lookup)
            if len(self._looked_up) >= _CHECKED_URLS:
                self._looked_up.clear()
            self._looked_up[key] = (loop.time() + self._dns_ttl, addresses)
        check_resolved(target.host, addresses, self._allow, what)
        return addresses

    def _looked(self, key: tuple[str, int], lookup: asyncio.Task[list[str]]) -> None:
        if self._lookups.get(key) is lookup:
            del self._lookups[key]
        if not lookup.cancelled():
            lookup.exception()  # retrieved here too: its waiters may all have given up

    async def _look_up(self, target: _Target) -> list[str]:
        _scheme, name, port = target.key
        try:
            results = await self.inner_resolver().resolve(name, port, socket.AF_UNSPEC)
        except OSError:
            raise FetchError(f"could not resolve host {target.host}; check the URL") from None
        if not results:
            raise FetchError(f"could not resolve host {target.host}; check the URL")
        return [r["host"] for r in results]

    async def _open(self, target: _Target, addresses: list[str], loop: asyncio.AbstractEventLoop) -> _Connection:
        scheme, name, port = target.key
        context: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        last: OSError | None = None
        for address in addresses:
            try:
                _transport, conn = await loop.create_connection(
                    lambda: _Connection(target.key),
                    address,
                    port,
                    ssl=context,
                    server_hostname=name.rstrip(".") if context is not None else None,
                )
            except OSError as exc:
                last = exc
                continue
            self.connections_made += 1
            return conn
        assert last is not None
        reason = last.strerror or str(last) or type(last).__name__
        raise FetchError(f"could not connect to {target.host}:{port} ({reason})")

    def _pooled(self, key: tuple[str, str, int]) -> _Connection | None:
        """The most recently used idle connection to `key` that is still open, if any."""
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            self._idle_count -= 1
            if conn.usable:
                return conn
        return None

    def _release(self, conn: _Connection) -> None:
        """Back to the pool after a complete exchange, or closed when it cannot be kept."""
        if not conn.usable:
            return
        conns = self._idle.setdefault(conn.key, [])
        if self._closed or len(conns) >= self._max_idle_per_host or self._idle_count >= self._max_idle:
            conn.close()
            return
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        conns.append(conn)
        self._idle_count += 1
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._idle_timeout, self._sweep)

    def _sweep(self) -> None:
        """Close the connections idle for `idle_timeout`; come back when the oldest remaining one will be."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        self.expire_idle(loop.time())
        if self._idle_count and not self._closed:
            oldest = min(conn.idle_since for conns in self._idle.values() for conn in conns)
            self._sweeper = loop.call_at(oldest + self._idle_timeout, self._sweep)

    def expire_idle(self, now: float) -> int:
        """Close the pooled connections idle since before `now - idle_timeout` (loop time) or closed by their
        receiver; returns how many were closed."""
        closed = 0
        for key in list(self._idle):
            keep: list[_Connection] = []
            for conn in self._idle[key]:
                if conn.usable and now - conn.idle_since < self._idle_timeout:
                    keep.append(conn)
                else:
                    conn.close()
                    closed += 1
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        self._idle_count -= closed
        return closed
