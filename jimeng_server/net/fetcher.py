"""The SSRF-safe client: downloads and webhook POSTs of untrusted URLs under a `FetchPolicy`, through the
guarded resolver, with checked redirects, size and time limits (design.md §3).

Guard refusals raise `UnsafeURLError`; network failures, bad statuses and timeouts raise `FetchError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp
import python_socks
from aiohttp.abc import AbstractResolver
from aiohttp_socks import ProxyConnector
from yarl import URL

from .errors import FetchError, TooLargeError, UnsafeURLError
from .policy import AddressFilter, FetchPolicy, check_url, is_public_address
from .poster import DEFAULT_USER_AGENT, PostResult, WebhookPoster, display_url
from .resolver import GuardedResolver, LazyResolver, check_url_resolves_public
from .spool import Download, spool_chunks

__all__ = ["PostResult", "SafeFetcher"]

PROXY_SCHEMES = frozenset({"http", "https", "socks4", "socks5"})
_READ_CHUNK = 64 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def _find_unsafe(exc: BaseException) -> UnsafeURLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, UnsafeURLError):
            return current
        seen.add(id(current))
        os_error = getattr(current, "os_error", None)
        if isinstance(os_error, UnsafeURLError):
            return os_error
        current = current.__cause__ or current.__context__
    return None


def _translate(exc: BaseException, url: URL, *, proxied: bool) -> Exception:
    """Map aiohttp / socket / proxy errors to UnsafeURLError or a human-readable FetchError."""
    unsafe = _find_unsafe(exc)
    if unsafe is not None:
        return unsafe
    shown = display_url(url)
    host = url.host or "?"
    if isinstance(exc, aiohttp.InvalidURL):
        return UnsafeURLError(f"URL {shown} is not valid ({exc})")
    if isinstance(exc, TimeoutError):
        return FetchError(f"request to {shown} timed out")
    if isinstance(exc, python_socks.ProxyError | aiohttp.ClientProxyConnectionError) or (
        proxied and isinstance(exc, python_socks.ProxyConnectionError)
    ):
        return FetchError(f"the proxy failed to reach {host} ({exc}); check the proxy address and that it is up")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return FetchError(f"could not resolve host {host}; check the URL")
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
        return FetchError(f"could not connect to {host}:{url.port} ({reason})")
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return FetchError(f"the connection to {host} broke while reading the response ({exc})")
    return FetchError(f"request to {shown} failed ({type(exc).__name__}: {exc})")


def _relabel(exc: Exception, label: str) -> Exception:
    """Name the URL in a resolver refusal (the resolver only knows it as "URL")."""
    if isinstance(exc, UnsafeURLError) and label != "URL" and str(exc).startswith("URL "):
        return UnsafeURLError(label + str(exc)[3:])
    return exc


_NETWORK_ERRORS = (aiohttp.ClientError, OSError, python_socks.ProxyError)


class SafeFetcher:
    """Fetches untrusted URLs under a `FetchPolicy`. Create and use inside a running loop; `await close()`.

    One ClientSession per proxy URL (plus one direct), created lazily. Direct connections resolve through a
    `GuardedResolver`; with a proxy the target is resolved and checked here first, then the proxy connects.
    Environment proxies and cookies are ignored. `resolver` replaces the DNS resolver (tests);
    `allow_address` replaces the address predicate (tests only: it must be at least as strict in production).
    """

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        resolver: AbstractResolver | None = None,
        temp_dir: str | None = None,
        allow_address: AddressFilter = is_public_address,
        user_agent: str = DEFAULT_USER_AGENT,
    ) -> None:
        self._policy = policy
        self._resolver = LazyResolver(resolver)
        self._temp_dir = temp_dir
        self._allow: AddressFilter = (lambda _ip: True) if policy.allow_private_networks else allow_address
        self._user_agent = user_agent
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._allow_address = allow_address
        self._poster: WebhookPoster | None = None

    @property
    def policy(self) -> FetchPolicy:
        """The policy in force."""
        return self._policy

    @property
    def resolver(self) -> AbstractResolver:
        """The DNS resolver the guard checks names with (the injected one, or this fetcher's own default), for
        checks made ahead of a fetch, e.g. a submitted `callback_url`. Owned and closed by the fetcher."""
        return self._inner_resolver()

    async def close(self) -> None:
        """Close every session (and the resolver if this fetcher created it). Safe to call twice."""
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            await session.close()
        if self._poster is not None:
            poster, self._poster = self._poster, None
            await poster.close()
        await self._resolver.close()

    def _inner_resolver(self) -> AbstractResolver:
        return self._resolver.get()

    def _direct_poster(self) -> WebhookPoster:
        """The keep-alive client of direct POSTs (net/poster.py), sharing this fetcher's resolver and guard."""
        if self._poster is None:
            self._poster = WebhookPoster(
                self._policy,
                resolver=self._inner_resolver(),
                allow_address=self._allow_address,
                user_agent=self._user_agent,
            )
        return self._poster

    def _session(self, proxy: str | None) -> aiohttp.ClientSession:
        key = proxy or ""
        session = self._sessions.get(key)
        if session is None or session.closed:
            session = self._new_session(proxy)
            self._sessions[key] = session
        return session

    def _new_session(self, proxy: str | None) -> aiohttp.ClientSession:
        connector: aiohttp.BaseConnector
        if proxy is None:
            guard = GuardedResolver(self._inner_resolver(), allow_address=self._allow)
            connector = aiohttp.TCPConnector(resolver=guard)
        elif URL(proxy).scheme.lower().startswith("socks"):
            # rdns=False: the name is resolved on this side, like the guard's own check just before.
            connector = ProxyConnector.from_url(proxy, rdns=False)
        else:
            # Only the (operator/user-configured) proxy host is resolved by this connector.
            connector = aiohttp.TCPConnector(resolver=self._inner_resolver())
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._policy.connect_timeout, sock_connect=self._policy.connect_timeout
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": self._user_agent},
        )

    @staticmethod
    def _check_proxy(proxy: str) -> None:
        try:
            parsed = URL(proxy)
        except ValueError:
            parsed = None
        if parsed is None or parsed.scheme.lower() not in PROXY_SCHEMES or not parsed.host:
            raise UnsafeURLError("proxy must be an http://, https://, socks4:// or socks5:// URL with a host")

    async def _prepare(self, url: str, proxy: str | None, what: str) -> URL:
        """Check a URL before each request; with a proxy also resolve and check it here."""
        target = check_url(url, self._policy, what=what, allow_address=self._allow)
        if proxy is not None:
            self._check_proxy(proxy)
            await check_url_resolves_public(
                str(target), self._policy, self._inner_resolver(), what=what, allow_address=self._allow
            )
        return target

    async def download(self, url: str, *, proxy: str | None = None, what: str = "URL") -> Download:
        """GET `url` into a temporary file under the policy, following at most `max_redirects` checked redirects.

        Raises UnsafeURLError (guard), TooLargeError (over `max_bytes`, early on Content-Length),
        FetchError (4xx/5xx with `status`, network errors, `total_timeout` exceeded).
        """
        try:
            async with asyncio.timeout(self._policy.total_timeout):
                return await self._download(url, proxy, what)
        except TimeoutError as exc:
            raise FetchError(
                f"downloading the {what} timed out after {self._policy.total_timeout:g} s; "
                "check that the server is reachable and the file is not too large"
            ) from exc

    async def _download(self, url: str, proxy: str | None, what: str) -> Download:
        current = await self._prepare(url, proxy, what)
        session = self._session(proxy)
        limit = self._policy.max_bytes
        redirects = 0
        label = what
        while True:
            try:
                async with session.get(current, allow_redirects=False, proxy=self._http_proxy(proxy)) as resp:
                    if resp.status in _REDIRECT_STATUSES:
                        location = resp.headers.get(aiohttp.hdrs.LOCATION)
                        if not location:
                            raise FetchError(
                                f"{display_url(current)} answered {resp.status} without a Location header",
                                status=resp.status,
                            )
                        if redirects >= self._policy.max_redirects:
                            raise FetchError(
                                f"too many redirects (more than {self._policy.max_redirects}) "
                                f"starting at {display_url(URL(url))}",
                                status=resp.status,
                            )
                        try:
                            next_url = current.join(URL(location))
                        except ValueError:
                            raise UnsafeURLError(
                                f"{what} redirected to an invalid Location {location[:200]!r}"
                            ) from None
                    else:
                        if not 200 <= resp.status < 300:
                            raise FetchError(
                                f"{display_url(current)} answered HTTP {resp.status} {resp.reason or ''}".rstrip()
                                + "; check that the URL is correct and publicly readable",
                                status=resp.status,
                            )
                        if resp.content_length is not None and resp.content_length > limit:
                            resp.close()
                            raise TooLargeError(limit)
                        try:
                            return await spool_chunks(
                                resp.content.iter_chunked(_READ_CHUNK),
                                max_bytes=limit,
                                directory=self._temp_dir,
                                content_type=resp.headers.get(aiohttp.hdrs.CONTENT_TYPE),
                                final_url=str(current),
                            )
                        except TooLargeError:
                            resp.close()  # drop the connection instead of draining the rest
                            raise
            except UnsafeURLError as exc:
                raise _relabel(exc, label) from None
            except FetchError:
                raise
            except _NETWORK_ERRORS as exc:
                raise _relabel(_translate(exc, current, proxied=proxy is not None), label) from exc
            redirects += 1
            label = f"{what} redirect target"
            current = await self._prepare(str(next_url), proxy, label)

    @staticmethod
    def _http_proxy(proxy: str | None) -> str | None:
        if proxy is None or URL(proxy).scheme.lower().startswith("socks"):
            return None
        return proxy

    async def post(
        self,
        url: str,
        *,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,  # noqa: ASYNC109 - the per-delivery budget is part of the API contract
        what: str = "callback_url",
    ) -> PostResult:
        """POST `body` once, never following redirects (a 3xx is returned as the status), through this fetcher's
        keep-alive `WebhookPoster` (net/poster.py: the same guard, resolver and address filter).

        Any status is a PostResult; only the first 1 KiB of the body is read. Raises UnsafeURLError on guard
        refusal and FetchError on network errors or when `timeout` seconds (the whole exchange) pass.
        """
        return await self._direct_poster().post(url, body=body, headers=headers, timeout=timeout, what=what)
