"""HTTP sessions for upstream traffic: one aiohttp ClientSession per proxy URL (None = direct).

Every hop that acts for an account (web API, uploads, result downloads) uses the account's proxy, so a
task never shows the upstream two different IP addresses (upstream-protocol.md §15).
"""

from __future__ import annotations

import aiohttp
from aiohttp_socks import ProxyConnector


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
            if proxy is None:
                connector = aiohttp.TCPConnector(limit_per_host=self._limit_per_host)
            else:
                # aiohttp-socks tunnels http(s) proxies with CONNECT and speaks SOCKS4/5; rdns keeps DNS at the proxy.
                url = "http://" + proxy[len("https://") :] if proxy.lower().startswith("https://") else proxy
                connector = ProxyConnector.from_url(url, rdns=True, limit_per_host=self._limit_per_host)
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(sock_connect=self._connect_timeout),
                auto_decompress=True,
            )
            self._sessions[proxy] = session
        return session

    async def close(self) -> None:
        """Close every session."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
