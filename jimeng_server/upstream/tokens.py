"""The downstream token grammar: `[proxy@][us-|hk-|jp-|sg-]sessionid`, comma lists (docs/protocol.md §1.1).

Tokens are secrets. `Account.masked` is the only form that may appear in logs or responses.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

from yarl import URL

from ..net.policy import parse_ip_literal
from .cookies import CookieJar
from .regions import Region

PROXY_SCHEMES = ("http://", "https://", "socks://", "socks4://", "socks5://")
_REGION_PREFIXES = {f"{r.value}-": r for r in Region if r is not Region.CN}


class TokenError(ValueError):
    """A token string that cannot be used; the message never contains the token."""


class ProxyPrefixError(TokenError):
    """A token whose `proxy@` prefix is not a usable proxy URL; the message never contains it."""


@dataclass(frozen=True, slots=True)
class Account:
    """One upstream credential: a session id, its region and an optional proxy URL.

    `jar`, when set, is the account's full browser cookie jar (its `sessionid` is the jar's): the client sends
    it verbatim instead of building a cookie from the session id. `transport` names the account's own
    transport ("aiohttp", "impersonate", "browser"); None uses `[upstream] transport`. Neither has a token
    form: the account pool sets them.
    """

    sessionid: str = field(repr=False)
    region: Region
    proxy: str | None = field(default=None, repr=False)
    jar: CookieJar | None = field(default=None, repr=False, compare=False)
    transport: str | None = None

    @classmethod
    def from_jar(
        cls, jar: CookieJar, region: Region, *, proxy: str | None = None, transport: str | None = None
    ) -> Account:
        """An account whose credential is a checked cookie jar (`cookies.load_jar`)."""
        return cls(sessionid=jar.sessionid, region=region, proxy=proxy, jar=jar, transport=transport)

    @property
    def fingerprint(self) -> str:
        """A stable, non-reversible id of the session (sha256 prefix); safe to store and log."""
        return _fingerprint(self.region, self.sessionid)

    @property
    def token(self) -> str:
        """The token string that re-parses to this account (a secret: never log it)."""
        prefix = "" if self.region is Region.CN else f"{self.region.value}-"
        proxy = f"{self.proxy}@" if self.proxy else ""
        return f"{proxy}{prefix}{self.sessionid}"

    @property
    def masked(self) -> str:
        """A display form that reveals neither the session nor proxy credentials."""
        return mask_secret(self.sessionid, region=self.region)

    def __str__(self) -> str:
        return self.masked


@functools.lru_cache(maxsize=4096)
def _fingerprint(region: Region, sessionid: str) -> str:
    """`Account.fingerprint` (pure; remembered for the sessions seen lately: ownership checks ask per request)."""
    return hashlib.sha256(f"{region.value}:{sessionid}".encode()).hexdigest()[:24]


def mask_secret(sessionid: str, *, region: Region = Region.CN) -> str:
    """Mask a session id: keep at most the first 4 and last 4 characters of long ids."""
    prefix = "" if region is Region.CN else f"{region.value}-"
    if len(sessionid) <= 12:
        return f"{prefix}***"
    return f"{prefix}{sessionid[:4]}...{sessionid[-4:]}"


def parse_proxy(text: str) -> str:
    """A proxy URL checked for shape only: an http, https, socks4, socks5 (or socks, taken as socks5) scheme,
    a host, a port 1-65535, nothing but printable ASCII; returned with `socks://` made `socks5://`.
    Raises ProxyPrefixError without echoing it (it may hold credentials). Whether its address may be used is
    the caller's decision (the address guard)."""
    bad = ProxyPrefixError(
        "the proxy is not a valid proxy URL: expected scheme://[user:pass@]host:port with scheme http, https, "
        "socks4 or socks5 (in a token: proxy@sessionid)"
    )
    if not text.isascii() or not text.isprintable() or " " in text or not text.lower().startswith(PROXY_SCHEMES):
        raise bad
    if text.lower().startswith("socks://"):
        text = "socks5://" + text[len("socks://") :]
    try:
        url = URL(text)
        port = url.port
    except (ValueError, TypeError):
        raise bad from None
    host = url.host
    if not host or port is None or not 0 < port < 65536 or url.path not in ("", "/") or url.query_string:
        raise bad
    last_label = host.rstrip(".").rsplit(".", 1)[-1]
    if last_label.isdigit() and parse_ip_literal(host) is None:
        raise bad  # e.g. 999.999.999.999: all-numeric names are neither IP addresses nor host names
    return text


def parse_token(item: str) -> Account:
    """Parse one token item (proxy, region prefix, session id). Raises TokenError."""
    text = item.strip()
    proxy: str | None = None
    if text.lower().startswith(PROXY_SCHEMES):
        at = text.rfind("@")
        if 0 < at < len(text) - 1:
            proxy, text = parse_proxy(text[:at]), text[at + 1 :]
    region = Region.CN
    head = text[:3].lower()
    if head in _REGION_PREFIXES:
        region = _REGION_PREFIXES[head]
        text = text[3:]
    sessionid = text.strip()
    if not sessionid:
        raise TokenError("a token is empty: expected [proxy@][us-|hk-|jp-|sg-]sessionid")
    if any(c.isspace() or c in ",;\"'" for c in sessionid) or not sessionid.isascii() or not sessionid.isprintable():
        raise TokenError(
            "a token contains characters a session id cannot hold (spaces, quotes, ';', control characters "
            "or non-ASCII)"
        )
    return Account(sessionid=sessionid, region=region, proxy=proxy)


def parse_token_list(value: str) -> list[Account]:
    """Parse a comma list of tokens; empty items are skipped, duplicates collapse (first kept)."""
    accounts: list[Account] = []
    seen: set[str] = set()
    for item in value.split(","):
        if not item.strip():
            continue
        account = parse_token(item)
        if account.fingerprint not in seen:
            seen.add(account.fingerprint)
            accounts.append(account)
    return accounts


def parse_authorization(header: str | None) -> list[Account]:
    """Parse an `Authorization: Bearer TOKEN[,TOKEN...]` header. Raises TokenError when unusable.

    Asked twice per request (the caller guard, then the handler), mostly with the same few headers: the
    parses of the last 256 distinct headers are remembered, in this process's memory only (refusals are not
    remembered). Each call returns a new list of the same immutable accounts."""
    if header is None:
        raise TokenError("missing Authorization header: send 'Authorization: Bearer <sessionid>'")
    return list(_parse_authorization(header))


@functools.lru_cache(maxsize=256)
def _parse_authorization(header: str) -> tuple[Account, ...]:
    if not header.strip():
        raise TokenError("missing Authorization header: send 'Authorization: Bearer <sessionid>'")
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not rest.strip():
        raise TokenError("the Authorization header must be 'Bearer <sessionid>[,<sessionid>...]'")
    accounts = parse_token_list(rest)
    if not accounts:
        raise TokenError("the Authorization header holds no token: send 'Bearer <sessionid>'")
    return tuple(accounts)
