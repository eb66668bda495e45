"""SSRF-safe fetching of untrusted URLs: guarded DNS, manual redirects, size and time limits, spooling to disk.

Every download of a user-supplied URL and every webhook delivery goes through this module (design.md §3).
Guard refusals raise `UnsafeURLError`; network failures, bad statuses and timeouts raise `FetchError`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import aiohttp
import python_socks
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from aiohttp_socks import ProxyConnector
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from jimeng_server.upstream.sigv4 import Crc32

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressFilter = Callable[[IPAddress], bool]

MIB = 1024 * 1024
HEAD_BYTES = 64
EXCERPT_BYTES = 1024
ALLOWED_SCHEMES = frozenset({"http", "https"})
PROXY_SCHEMES = frozenset({"http", "https", "socks4", "socks5"})
DEFAULT_USER_AGENT = "jimeng-server/0.1"
PRIVATE_HINT = "set [security] allow_private_networks = true for local setups"

_READ_CHUNK = 64 * 1024
# Chunks are collected up to this size and written from a worker thread, so memory stays bounded.
_FLUSH_BYTES = 1 * MIB
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Ranges refused on top of `is_global` (whose exact definition has changed between Python releases).
_BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata 169.254.169.254
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes broadcast
    )
)
_BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # unspecified, loopback, deprecated IPv4-compatible
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, includes Teredo 2001::/32
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # deprecated site-local
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeURLError(ValueError):
    """A URL the guard refuses: bad syntax, a scheme other than http/https, or a non-public address."""


class FetchError(Exception):
    """A fetch that failed: network error, timeout, or (for downloads) a 4xx/5xx status.

    `status` is the HTTP status when the server answered, else None; `reason` is the human-readable message.
    """

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class TooLargeError(FetchError):
    """The body exceeded the byte cap (`limit` bytes); nothing more was read."""

    def __init__(self, limit: int, reason: str | None = None) -> None:
        super().__init__(reason or f"the file is larger than the limit of {_human_size(limit)}")
        self.limit = limit


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for fetching untrusted URLs. `allow_private_networks` disables only the address checks."""

    allow_private_networks: bool = False
    max_bytes: int = 100 * MIB
    connect_timeout: float = 10.0
    total_timeout: float = 120.0
    max_redirects: int = 3


def _human_size(n: int) -> str:
    if n >= MIB and n % MIB == 0:
        return f"{n // MIB} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} bytes"


# ---------------------------------------------------------------------------------------------------------
# Address classification


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a v6 address stands for: IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 (2002::/16)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def is_public_address(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses.

    Refuses loopback, private, CGNAT, link-local (incl. metadata), unique-local, unspecified, multicast,
    reserved, documentation and benchmarking ranges, Teredo; IPv4-mapped, NAT64 and 6to4 addresses are
    judged by the IPv4 address they embed.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(int(ip))  # drop any %scope
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(embedded)
        if any(ip in net for net in _BLOCKED_V6):
            return False
    elif any(ip in net for net in _BLOCKED_V4):
        return False
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


def _parse_legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse the inet_aton forms (`2130706433`, `0x7f.1`, `017700000001`, `127.1`) the C resolver accepts."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        text = part.lower()
        if text.startswith("0x"):
            digits, base, alphabet = text[2:], 16, "0123456789abcdef"
        elif len(text) > 1 and text.startswith("0"):
            digits, base, alphabet = text[1:], 8, "01234567"
        else:
            digits, base, alphabet = text, 10, "0123456789"
        if (not digits and base != 16) or any(c not in alphabet for c in digits):
            return None
        values.append(int(digits, base) if digits else 0)
    *leading, last = values
    if any(v > 255 for v in leading) or last >= 256 ** (5 - len(values)):
        return None
    number = 0
    for v in leading:
        number = (number << 8) | v
    number = (number << (8 * (5 - len(values)))) | last
    return ipaddress.IPv4Address(number)


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a URL host denotes literally (incl. legacy numeric IPv4 forms), or None for a name."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if ":" in text:
        return None
    return _parse_legacy_ipv4(text.removesuffix("."))


def _refusal(what: str, host: str, ip: object, *, resolved: bool) -> UnsafeURLError:
    verb = "resolves to" if resolved else "is"
    return UnsafeURLError(
        f"{what} host {host} {verb} a private or reserved address ({ip}), which is not allowed; {PRIVATE_HINT}"
    )


def _check_resolved(host: str, addresses: list[str], allow: AddressFilter, what: str) -> None:
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise UnsafeURLError(f"{what} host {host} resolved to an unparseable address {text!r}") from None
        if not allow(ip):
            raise _refusal(what, host, ip, resolved=True)


# ---------------------------------------------------------------------------------------------------------
# URL checks and the guarded resolver


def check_url(
    url: str,
    policy: FetchPolicy,
    *,
    what: str = "URL",
    allow_address: AddressFilter = is_public_address,
) -> URL:
    """Validate a URL without DNS: syntax, http/https scheme, a host, and a public address if it is an IP literal.

    Legacy numeric IPv4 hosts (`2130706433`, `0x7f.1`) are normalised to dotted quads in the returned URL.
    `localhost` names are refused unless private networks are allowed. `what` names the URL in messages
    (e.g. "image URL", "callback_url"). Raises UnsafeURLError.
    """
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as exc:
        raise UnsafeURLError(f"{what} is not a valid URL ({exc})") from None
    scheme = parsed.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        got = f"got {scheme}://" if scheme else "no scheme given"
        raise UnsafeURLError(f"{what} must use http or https ({got}), e.g. https://example.com/image.png")
    host = parsed.host
    if not host:
        raise UnsafeURLError(f"{what} must include a host name, e.g. https://example.com/image.png")
    ip = parse_ip_literal(host)
    if ip is not None and isinstance(ip, ipaddress.IPv4Address) and str(ip) != host:
        parsed = parsed.with_host(str(ip))
    if policy.allow_private_networks:
        return parsed
    if ip is not None:
        if not allow_address(ip):
            raise _refusal(what, host, ip, resolved=False)
    elif host.rstrip(".").lower() == "localhost" or host.rstrip(".").lower().endswith(".localhost"):
        raise UnsafeURLError(f"{what} host {host} is a local name, which is not allowed; {PRIVATE_HINT}")
    return parsed


async def check_url_resolves_public(
    url: str,
    policy: FetchPolicy,
    resolver: AbstractResolver | None = None,
    *,
    what: str = "URL",
    allow_address: AddressFilter = is_public_address,
) -> None:
    """Full guard check: `check_url`, then resolve the host and require EVERY address to be public.

    Uses `resolver` (a default resolver, created and closed here, when None). Raises UnsafeURLError on
    refusal and FetchError when the name cannot be resolved. A no-op for addresses when private networks
    are allowed.
    """
    parsed = check_url(url, policy, what=what, allow_address=allow_address)
    host = parsed.host
    if policy.allow_private_networks or host is None or parse_ip_literal(host) is not None:
        return
    own = resolver is None
    active = resolver if resolver is not None else DefaultResolver()
    try:
        results = await active.resolve(host, parsed.port or 0, socket.AF_UNSPEC)
    except OSError as exc:
        raise FetchError(f"could not resolve the {what} host {host} ({exc.strerror or exc})") from exc
    finally:
        if own:
            await active.close()
    if not results:
        raise FetchError(f"could not resolve the {what} host {host} (no addresses)")
    _check_resolved(host, [r["host"] for r in results], allow_address, what)


class GuardedResolver(AbstractResolver):
    """Resolver for the connector: delegates to `inner` and refuses the host if ANY address is not allowed.

    Raises UnsafeURLError (aiohttp lets non-OSError exceptions through unwrapped). Does not close `inner`.
    """

    def __init__(self, inner: AbstractResolver, *, allow_address: AddressFilter = is_public_address) -> None:
        self._inner = inner
        self._allow = allow_address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve through the inner resolver, then check every address."""
        results = await self._inner.resolve(host, port, family)
        if not results:
            raise OSError(f"{host} has no addresses")
        _check_resolved(host, [r["host"] for r in results], self._allow, "URL")
        return results

    async def close(self) -> None:
        """Nothing to release; the owner of `inner` closes it."""


# ---------------------------------------------------------------------------------------------------------
# Spooling


@dataclass
class Download:
    """A body spooled to a temporary file. The caller owns the file: call `cleanup()` or use `with`."""

    path: Path
    size: int
    crc32: str
    content_type: str | None
    head: bytes
    final_url: str

    def cleanup(self) -> None:
        """Delete the temporary file; safe to call more than once."""
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Download:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def _open_temp(directory: str | None) -> tuple[Path, IO[bytes]]:
    fd, name = tempfile.mkstemp(prefix="jimeng-", suffix=".part", dir=directory)
    return Path(name), os.fdopen(fd, "wb")


async def spool_chunks(
    chunks: AsyncIterator[bytes],
    *,
    max_bytes: int,
    directory: str | None = None,
    content_type: str | None = None,
    final_url: str = "",
) -> Download:
    """Write `chunks` to a new temporary file (in `directory`), computing size, CRC-32 and the first 64 bytes.

    Raises TooLargeError as soon as more than `max_bytes` arrive, without reading further. On any error
    the temporary file is deleted. Memory use is bounded by about 1 MiB regardless of the body size.
    """
    # Opened inline, not in a worker thread: a cancellation during `to_thread` would leak the open file.
    path, file = _open_temp(directory)
    done = False
    try:
        crc = Crc32()
        size = 0
        head = b""
        pending = bytearray()
        async for chunk in chunks:
            if not chunk:
                continue
            size += len(chunk)
            if size > max_bytes:
                raise TooLargeError(max_bytes)
            crc.update(chunk)
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            pending += chunk
            if len(pending) >= _FLUSH_BYTES:
                await asyncio.to_thread(file.write, pending)
                pending.clear()
        if pending:
            await asyncio.to_thread(file.write, pending)
        await asyncio.to_thread(file.close)
        done = True
        return Download(
            path=path,
            size=size,
            crc32=crc.hexdigest(),
            content_type=content_type,
            head=head,
            final_url=final_url,
        )
    finally:
        if not done:
            file.close()
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------
# The fetcher


@dataclass(frozen=True)
class PostResult:
    """Outcome of one POST: status (3xx included, never followed), headers, the first 1 KiB of the body."""

    status: int
    headers: Mapping[str, str]
    body_excerpt: str
    elapsed: float


def _display(url: URL) -> str:
    """The URL without credentials, query or fragment, for messages (queries often carry secrets)."""
    try:
        shown = str(url.with_user(None).with_query(None).with_fragment(None))
    except ValueError:
        shown = url.host or "?"
    return shown if len(shown) <= 200 else shown[:197] + "..."


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
    shown = _display(url)
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
        self._resolver = resolver
        self._owns_resolver = resolver is None
        self._temp_dir = temp_dir
        self._allow: AddressFilter = (lambda _ip: True) if policy.allow_private_networks else allow_address
        self._user_agent = user_agent
        self._sessions: dict[str, aiohttp.ClientSession] = {}

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
        if self._owns_resolver and self._resolver is not None:
            resolver, self._resolver = self._resolver, None
            await resolver.close()

    def _inner_resolver(self) -> AbstractResolver:
        if self._resolver is None:
            self._resolver = DefaultResolver()
        return self._resolver

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
                                f"{_display(current)} answered {resp.status} without a Location header",
                                status=resp.status,
                            )
                        if redirects >= self._policy.max_redirects:
                            raise FetchError(
                                f"too many redirects (more than {self._policy.max_redirects}) "
                                f"starting at {_display(URL(url))}",
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
                                f"{_display(current)} answered HTTP {resp.status} {resp.reason or ''}".rstrip()
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
        proxy: str | None = None,
        what: str = "callback_url",
    ) -> PostResult:
        """POST `body` once, never following redirects (a 3xx is returned as the status).

        Any status is a PostResult; only the first 1 KiB of the body is read. Raises UnsafeURLError on guard
        refusal and FetchError on network errors or when `timeout` seconds (the whole exchange) pass.
        """
        started = time.monotonic()
        connect = min(self._policy.connect_timeout, timeout)
        try:
            async with asyncio.timeout(timeout):
                target = await self._prepare(url, proxy, what)
                session = self._session(proxy)
                try:
                    async with session.post(
                        target,
                        data=body,
                        headers=dict(headers),
                        allow_redirects=False,
                        proxy=self._http_proxy(proxy),
                        timeout=aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect),
                    ) as resp:
                        excerpt = bytearray()
                        while len(excerpt) < EXCERPT_BYTES:
                            chunk = await resp.content.read(EXCERPT_BYTES - len(excerpt))
                            if not chunk:
                                break
                            excerpt += chunk
                        return PostResult(
                            status=resp.status,
                            headers=CIMultiDictProxy(CIMultiDict(resp.headers)),
                            body_excerpt=excerpt.decode("utf-8", errors="replace"),
                            elapsed=time.monotonic() - started,
                        )
                except UnsafeURLError as exc:
                    raise _relabel(exc, what) from None
                except FetchError:
                    raise
                except _NETWORK_ERRORS as exc:
                    raise _relabel(_translate(exc, target, proxied=proxy is not None), what) from exc
        except TimeoutError as exc:
            raise FetchError(f"POST to the {what} timed out after {timeout:g} s") from exc
