"""The address policy: which hosts an untrusted URL may name (public unicast only, unless private networks are
allowed), URL syntax and scheme checks without DNS, and the limits of a fetch (`FetchPolicy`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from yarl import URL

from .errors import MIB, UnsafeURLError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressFilter = Callable[[IPAddress], bool]

ALLOWED_SCHEMES = frozenset({"http", "https"})
PRIVATE_HINT = "set [security] allow_private_networks = true for local setups"

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


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for fetching untrusted URLs. `allow_private_networks` disables only the address checks."""

    allow_private_networks: bool = False
    max_bytes: int = 100 * MIB
    connect_timeout: float = 10.0
    total_timeout: float = 120.0
    max_redirects: int = 3


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


def check_resolved(host: str, addresses: list[str], allow: AddressFilter, what: str) -> None:
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise UnsafeURLError(f"{what} host {host} resolved to an unparseable address {text!r}") from None
        if not allow(ip):
            raise _refusal(what, host, ip, resolved=True)


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
