"""What a caller may ask of this server through its tokens: how many in one request, and which proxies.

A `proxy@token` prefix makes the server open connections to an address the caller chose, so it passes the
same address guard as caller URLs (net/policy): its host must be (or resolve only to) public addresses,
unless it is one of the operator's `[security] allowed_proxies` or private networks are allowed;
`[security] caller_proxies = false` refuses every proxy prefix. A refusal is one fixed message, whatever the
reason (private address, unresolvable name), so it tells nothing about the target.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractResolver

from ..config import SecurityConfig, proxy_address
from ..errors import BadRequest, Handler
from ..net.errors import FetchError, UnsafeURLError
from ..net.policy import FetchPolicy
from ..net.resolver import check_url_resolves_public
from ..upstream.tokens import TokenError, parse_authorization
from .appkeys import CONFIG, FETCHER

PROXY_REFUSED = (
    "the proxy in the token is not allowed: caller proxies must be at public addresses (the operator can "
    "list its own in [security] allowed_proxies)"
)
PROXIES_DISABLED = (
    "this server does not accept proxies in tokens ([security] caller_proxies = false); send the token alone"
)


async def check_caller_proxy(proxy: str, security: SecurityConfig, resolver: AbstractResolver | None) -> None:
    """Raise BadRequest (PROXY_NOT_ALLOWED) unless `proxy` (a URL already checked for shape by the token
    parser) may be used for a caller. Names are resolved with `resolver` (None: the system resolver)."""
    if not security.caller_proxies:
        raise BadRequest(PROXIES_DISABLED, code="PROXY_NOT_ALLOWED")
    address = proxy_address(proxy)
    if address is None:
        raise BadRequest(PROXY_REFUSED, code="PROXY_NOT_ALLOWED")
    if address in {proxy_address(entry) for entry in security.allowed_proxies}:
        return
    host, port = address
    shown = f"[{host}]" if ":" in host else host
    policy = FetchPolicy(allow_private_networks=security.allow_private_networks)
    try:
        await check_url_resolves_public(f"http://{shown}:{port}/", policy, resolver, what="proxy")
    except (UnsafeURLError, FetchError):
        raise BadRequest(PROXY_REFUSED, code="PROXY_NOT_ALLOWED") from None


def count_tokens(header: str) -> int:
    """How many comma-separated items the credentials part of an Authorization header holds."""
    _, _, rest = header.strip().partition(" ")
    return sum(1 for item in rest.split(",") if item.strip())


@web.middleware
async def caller_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Before any handler: at most `max_tokens_per_request` tokens in the Authorization header (400
    TOO_MANY_TOKENS), and every proxy prefix passes `check_caller_proxy`. A header that does not parse is
    left to the handler, which answers it."""
    header = request.headers.get("Authorization")
    if header:
        security = request.app[CONFIG].security
        count = count_tokens(header)
        if count > security.max_tokens_per_request:
            raise BadRequest(
                f"the Authorization header holds {count} tokens; at most {security.max_tokens_per_request} "
                "per request ([security] max_tokens_per_request)",
                code="TOO_MANY_TOKENS",
            )
        try:
            accounts = parse_authorization(header)
        except TokenError:
            accounts = []
        for account in accounts:
            if account.proxy is not None:
                await check_caller_proxy(account.proxy, security, request.app[FETCHER].resolver)
    return await handler(request)
