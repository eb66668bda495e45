"""The guarded resolver: DNS answers are checked against the address policy before any connection is made."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from .errors import FetchError
from .policy import AddressFilter, FetchPolicy, check_resolved, check_url, is_public_address, parse_ip_literal


class LazyResolver:
    """The resolver a client looks names up with: the one its caller gave (the caller's to close), or a
    `DefaultResolver` made on first use and closed by `close()`. Safe to close twice."""

    def __init__(self, given: AbstractResolver | None) -> None:
        self._resolver = given
        self._owned = given is None

    def get(self) -> AbstractResolver:
        """The resolver (made now if none was given and none was made yet)."""
        if self._resolver is None:
            self._resolver = DefaultResolver()
        return self._resolver

    async def close(self) -> None:
        """Close the resolver if this made it."""
        if self._owned and self._resolver is not None:
            resolver, self._resolver = self._resolver, None
            await resolver.close()


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
    check_resolved(host, [r["host"] for r in results], allow_address, what)


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
        check_resolved(host, [r["host"] for r in results], self._allow, "URL")
        return results

    async def close(self) -> None:
        """Nothing to release; the owner of `inner` closes it."""
