"""HTTP sessions for upstream traffic: one aiohttp ClientSession per proxy URL (None = direct).

Every hop that acts for an account (web API, uploads, result downloads) uses the account's proxy, so a
task never shows the upstream two different IP addresses (upstream-protocol.md §15).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp_socks import ProxyConnectionError, ProxyConnector, ProxyError, ProxyTimeoutError


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
    """Lazily created sessions keyed by proxy URL; `close()` closes them all. Create inside a running loop."""

    def __init__(self, *, connect_timeout: float, limit_per_host: int = 50) -> None:
        self._connect_timeout = connect_timeout
        self._limit_per_host = limit_per_host
        self._sessions: dict[str | None, aiohttp.ClientSession] = {}

    def get(self, proxy: str | None) -> aiohttp.ClientSession:
        """The session for `proxy` (http, https, socks4 or socks5 URL) or for direct traffic."""
        session = self._sessions.get(proxy)
        if session is None or session.closed:
            connector: aiohttp.BaseConnector
            native: dict[str, Any] = {}
            if proxy is None:
                connector = aiohttp.TCPConnector(limit_per_host=self._limit_per_host)
            elif proxy.lower().startswith("https://"):
                # TLS to the proxy itself: aiohttp's own proxy support (TLS-in-TLS for https targets), so the
                # proxy credentials (taken from the URL by aiohttp) never cross the network in clear text.
                connector = aiohttp.TCPConnector(limit_per_host=self._limit_per_host)
                native["proxy"] = proxy
            else:
                # aiohttp-socks tunnels http proxies with CONNECT and speaks SOCKS4/5; rdns keeps DNS at the proxy.
                connector = _ProxyConnector.from_url(proxy, rdns=True, limit_per_host=self._limit_per_host)
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(sock_connect=self._connect_timeout),
                auto_decompress=True,
                **native,
            )
            self._sessions[proxy] = session
        return session

    async def close(self) -> None:
        """Close every session."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
