"""How web-API requests reach the upstream: one `Transport` interface and the aiohttp one.

The client builds every attempt (URL with its query, headers, body) and hands it to a transport as an
`Outgoing`; the transport returns the status and the body bytes, or raises one of three errors that tell the
client whether the request can have been delivered:
- `NotDelivered`: the connection (or TLS, or the proxy tunnel) could not be opened. Safe to send again, even
  for `aigc_draft/generate`.
- `TimedOut` / `Broken`: the request may have reached the upstream. Never re-sent when it spends credits.
A transport may also raise an `UpstreamError` of its own (the browser and the relay do), which the client passes
on unchanged. Messages never hold a URL, a proxy or a cookie: only what failed.

Transports: "aiohttp" (here), "impersonate" (`impersonate.py`, curl_cffi with a Chrome TLS fingerprint) and
"browser" (`browser.py`, the generate call from inside a headless Chromium page); `transports.py` builds them.

`SessionPool` also serves the non-web-API traffic (uploads, result downloads): one aiohttp ClientSession per
proxy URL (None = direct). Every hop that acts for an account uses the account's proxy, so a task never shows
the upstream two different IP addresses (docs/protocol.md §15).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp_socks import ProxyConnectionError, ProxyConnector, ProxyError, ProxyTimeoutError
from multidict import CIMultiDict
from yarl import URL

if TYPE_CHECKING:
    from .tokens import Account


# Calls the upstream may refuse unless a browser (or a relay) sends them: the browser transport sends these from a
# page and every other call through its fallback; a relay sees only these (docs/protocol.md §17.6-17.7).
BROWSER_ONLY_PATHS = frozenset({"/mweb/v1/aigc_draft/generate"})


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One attempt of one web-API call, ready to send: `url` already carries the encoded query."""

    account: Account
    path: str  # the API path (for messages and for the browser's choice of what it sends)
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    page: str  # the region's web page, which a browser loads before it sends
    referer: str
    timeout: float
    connect_timeout: float

    def header(self, name: str) -> str | None:
        """The value of header `name` (case-insensitive), or None."""
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), None)


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """The upstream's HTTP status and body bytes (decompressed)."""

    status: int
    body: bytes


class TransportError(Exception):
    """A request could not be completed; `reason` names what failed and never holds a secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotDelivered(TransportError):
    """Nothing reached the upstream (connect, TLS or proxy failure): safe to send again."""


class TimedOut(TransportError):
    """No answer in time; the request may have been delivered."""


class Broken(TransportError):
    """The connection failed after the request may have been delivered."""


class Transport(Protocol):
    """Sends one `Outgoing` and returns its `RawAnswer`, through the account's proxy."""

    name: str

    async def send(self, out: Outgoing) -> RawAnswer: ...

    async def close(self) -> None: ...


def tls_context(ca_file: str) -> ssl.SSLContext | None:
    """A context that trusts only the CAs of `ca_file` (a PEM bundle); None = the system's trust store."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else None


class _ProxyConnector(ProxyConnector):
    """A ProxyConnector whose proxy failures are aiohttp connection errors.

    aiohttp-socks raises its own exception types, which are not `aiohttp.ClientError`s; callers would see
    them as unexpected errors (HTTP 500). The proxy's own message may name the proxy, so it is dropped.
    """

    async def _wrap_create_connection(self, *args: Any, **kwargs: Any) -> tuple[asyncio.Transport, ResponseHandler]:
        try:
            return await super()._wrap_create_connection(*args, **kwargs)
        except (ProxyConnectionError, ProxyTimeoutError, ProxyError) as exc:
            code = getattr(exc, "error_code", None)
            what = {ProxyConnectionError: "cannot connect to the proxy", ProxyTimeoutError: "the proxy timed out"}
            reason = what.get(type(exc), "the proxy refused the tunnel") + (f" (code {code})" if code else "")
            raise aiohttp.ClientProxyConnectionError(kwargs["req"].connection_key, OSError(0, reason)) from None


class SessionPool:
    """Lazily created sessions keyed by proxy URL; `close()` closes them all. Create inside a running loop.

    `ca_file` (PEM) replaces the system trust store for TLS to the upstream (a TLS-inspecting proxy, tests).
    """

    def __init__(self, *, connect_timeout: float, limit_per_host: int = 50, ca_file: str = "") -> None:
        self._connect_timeout = connect_timeout
        self._limit_per_host = limit_per_host
        self._ssl: ssl.SSLContext | bool = tls_context(ca_file) or True
        self._sessions: dict[str | None, aiohttp.ClientSession] = {}

    def get(self, proxy: str | None) -> aiohttp.ClientSession:
        """The session for `proxy` (http, https, socks4 or socks5 URL) or for direct traffic."""
        session = self._sessions.get(proxy)
        if session is None or session.closed:
            connector: aiohttp.BaseConnector
            native: dict[str, Any] = {}
            if proxy is None:
                connector = aiohttp.TCPConnector(limit_per_host=self._limit_per_host, ssl=self._ssl)
            elif proxy.lower().startswith("https://"):
                # TLS to the proxy itself: aiohttp's own proxy support (TLS-in-TLS for https targets), so the
                # proxy credentials (taken from the URL by aiohttp) never cross the network in clear text.
                connector = aiohttp.TCPConnector(limit_per_host=self._limit_per_host, ssl=self._ssl)
                native["proxy"] = proxy
            else:
                # aiohttp-socks tunnels http proxies with CONNECT and speaks SOCKS4/5; rdns keeps DNS at the proxy.
                connector = _ProxyConnector.from_url(
                    proxy, rdns=True, limit_per_host=self._limit_per_host, ssl=self._ssl
                )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(sock_connect=self._connect_timeout),
                auto_decompress=True,
                # Many accounts share a session: a cookie the upstream sets for one must never ride along on
                # another's request (each call carries its account's own Cookie header).
                cookie_jar=aiohttp.DummyCookieJar(),
                **native,
            )
            self._sessions[proxy] = session
        return session

    async def close(self) -> None:
        """Close every session."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


# Headers aiohttp adds on its own when a request does not set them; a browser would not send aiohttp's values.
_AUTO_HEADERS = ("User-Agent", "Accept-Encoding", "Content-Type", "Accept")


class AiohttpTransport:
    """The plain aiohttp transport: sends exactly the client's headers (none of aiohttp's own defaults)."""

    name = "aiohttp"

    def __init__(self, pool: SessionPool) -> None:
        self.pool = pool

    async def send(self, out: Outgoing) -> RawAnswer:
        session = self.pool.get(out.account.proxy)
        timeout = aiohttp.ClientTimeout(total=out.timeout, sock_connect=out.connect_timeout)
        headers = CIMultiDict(out.headers)  # what aiohttp makes of any headers argument, once
        # None when the client sent all of them (a session account's call with a body): aiohttp then skips its
        # per-request copy of every header that any list, even an empty one, costs (~30 us a request).
        skip = [h for h in _AUTO_HEADERS if h not in headers] or None
        try:
            async with session.post(
                URL(out.url, encoded=True),
                data=out.body,
                headers=headers,
                timeout=timeout,
                skip_auto_headers=skip,
                allow_redirects=False,
            ) as resp:
                return RawAnswer(resp.status, await resp.read())
        except aiohttp.ClientConnectorError as exc:
            raise NotDelivered(f"cannot connect ({type(exc).__name__})") from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise TimedOut(f"no answer within {out.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise Broken(f"connection failed ({type(exc).__name__})") from None

    async def close(self) -> None:
        """The pool is shared with uploads and downloads: its owner closes it."""
