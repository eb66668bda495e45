"""The "impersonate" transport: curl_cffi's asyncio client with a current Chrome's TLS and HTTP/2 fingerprint.

Since 2026 the upstream refuses some calls from a TLS stack that is not a browser's (ret 4013,
docs/protocol.md §17.6). curl_cffi (the optional `browser` extra) speaks TLS like Chrome. Everything
else is the aiohttp transport's contract: the account's proxy (http and https proxies tunnel with CONNECT,
socks5 resolves names at the proxy), the same timeouts, the same three error kinds (`transport.py`), and
exactly the client's headers: curl_cffi's own impersonation headers are off, so no header can contradict the
User-Agent the client chose (or chose not to send); `Accept-Encoding` is handed to curl so it also decodes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .identity import chrome_major
from .transport import Broken, NotDelivered, Outgoing, RawAnswer, TimedOut

if TYPE_CHECKING:
    from curl_cffi.requests import AsyncSession

# libcurl error codes after which nothing reached the upstream: DNS, connect, TLS handshake, proxy.
_NOT_DELIVERED = frozenset({5, 6, 7, 35, 53, 58, 59, 60, 66, 77, 83, 90, 91, 97})
_TIMEOUT = 28
_DESKTOP_CHROME = re.compile(r"chrome(\d+)")  # not chrome133a (a variant), _android or _macos


def available() -> bool:
    """True when curl_cffi (the `browser` extra) is installed."""
    try:
        import curl_cffi.requests  # noqa: F401
    except ImportError:
        return False
    return True


class ImpersonateTransport:
    """Sessions keyed by proxy URL and target, impersonating `target` (a curl_cffi browser name; "chrome" = the
    Chrome version of each request's User-Agent, see `target_for`)."""

    name = "impersonate"

    def __init__(self, *, target: str = "chrome", ca_file: str = "") -> None:
        self._target = target
        self._verify: Any = ca_file or True
        self._sessions: dict[tuple[str | None, str], AsyncSession[Any]] = {}

    def target_for(self, user_agent: str | None) -> str:
        """The curl_cffi target for a request: with the generic "chrome", the newest Chrome fingerprint curl_cffi
        has that is not newer than the Chrome the User-Agent claims (TLS and User-Agent then agree)."""
        major = chrome_major(user_agent) if user_agent else None
        if self._target != "chrome" or major is None:
            return self._target
        from curl_cffi.requests import BrowserType

        known = [int(m.group(1)) for b in BrowserType if (m := _DESKTOP_CHROME.fullmatch(b.value))]
        fitting = [n for n in known if n <= major]
        return f"chrome{max(fitting)}" if fitting else self._target

    def _session(self, proxy: str | None, target: str) -> AsyncSession[Any]:
        from curl_cffi.requests import AsyncSession

        session = self._sessions.get((proxy, target))
        if session is None:
            session = AsyncSession(
                impersonate=target,  # type: ignore[arg-type,unused-ignore]  # a config string
                proxy=_curl_proxy(proxy),
                verify=self._verify,
                default_headers=False,
                allow_redirects=False,
                # Accounts share a session: a cookie the upstream sets for one must never ride along on another's
                # request (each call carries its account's own Cookie header).
                discard_cookies=True,
            )
            self._sessions[(proxy, target)] = session
        return session

    async def send(self, out: Outgoing) -> RawAnswer:
        from curl_cffi.requests.exceptions import RequestException

        session = self._session(out.account.proxy, self.target_for(out.header("User-Agent")))
        encoding = out.header("Accept-Encoding")
        headers = [(k, v) for k, v in out.headers if k.lower() != "accept-encoding"]
        connect = min(out.connect_timeout, out.timeout)
        try:
            resp = await session.post(
                out.url,
                data=out.body,
                headers=headers,
                timeout=(connect, out.timeout - connect),  # curl's total is their sum
                accept_encoding=encoding,
                quote=False,
            )
        except RequestException as exc:
            code = int(getattr(exc, "code", 0) or 0)
            if code == _TIMEOUT:
                raise TimedOut(f"no answer within {out.timeout:g} s") from None
            if code in _NOT_DELIVERED:
                raise NotDelivered(f"cannot connect ({type(exc).__name__}, curl code {code})") from None
            raise Broken(f"connection failed ({type(exc).__name__}, curl code {code})") from None
        return RawAnswer(resp.status_code, resp.content)

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


def _curl_proxy(proxy: str | None) -> str | None:
    """curl's spelling of a proxy URL: socks5 and socks4 resolve names at the proxy, as the aiohttp transport does."""
    if proxy is None:
        return None
    low = proxy.lower()
    if low.startswith("socks5://"):
        return "socks5h://" + proxy[len("socks5://") :]
    if low.startswith("socks4://"):
        return "socks4a://" + proxy[len("socks4://") :]
    return proxy
