"""Browser cookie jars as account credentials (docs/protocol.md §17.6): parse, check, and hold one.

A jar comes in one of three forms, detected from its text:
- a `Cookie:` header string (`name=value; name=value`, the `Cookie:` prefix optional);
- a Netscape `cookies.txt` (7 tab-separated fields a line; `#HttpOnly_` lines are cookies, other `#` lines comments);
- the JSON export of the common browser cookie extensions: an array of objects with `name`, `value`, `domain`
  and an expiry in `expirationDate` (Cookie-Editor, EditThisCookie) or `expires` (DevTools/Playwright), or an
  object holding such an array under `cookies`.

`load_jar` refuses a jar that cannot work, with the reason (never a cookie value): no `sessionid`, no cookie of
the region's site (files and exports name their domains; a header string does not), or an expired session
(the `sessionid` cookie's own expiry, or the issue time + max age inside `sid_guard`). Cookies of other sites
and cookies that have expired are dropped, as a browser would not send them. The jar is then sent verbatim as
the `Cookie` header; `webId` is taken from its `_tea_web_id`.

A jar is a secret: `CookieJar` has no value in its `repr`, and `names()` is the only view meant for display.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from ..integers import digits_value
from .regions import Region

_EXPIRY_DIGITS = 11
"""Unix seconds up to the year 5138: a longer expiry is no date."""

# The registrable domains whose cookies an account of each region uses.
REGION_DOMAINS: dict[Region, tuple[str, ...]] = {
    Region.CN: ("jianying.com",),
    Region.US: ("capcut.com", "capcut.us"),
    Region.HK: ("capcut.com",),
    Region.JP: ("capcut.com",),
    Region.SG: ("capcut.com",),
}
# Cookies the upstream's security SDK sets in a real browser (§17.6); their presence is what makes a jar "full".
FINGERPRINT_COOKIES = ("ttwid", "fpk1", "odin_tt", "uifid")
_BAD_CHARS = frozenset(";\r\n\0")


class JarError(ValueError):
    """A cookie jar that cannot be used; the message says why and never holds a cookie value."""


@dataclass(frozen=True, slots=True)
class CookieJar:
    """A browser's cookies for one account, in the order the browser gave them, plus the browser's User-Agent.

    `user_agent` is the User-Agent of the browser the jar was taken from, when known; the client derives the
    `os` query value and the client hints from it, and sends none of them when it is unknown (a guess could
    contradict the jar, which the upstream refuses with ret 4013).
    """

    pairs: tuple[tuple[str, str], ...] = field(repr=False)
    user_agent: str | None = None

    def get(self, name: str) -> str | None:
        """The first value of cookie `name`, or None."""
        return next((value for key, value in self.pairs if key == name), None)

    def header(self) -> str:
        """The `Cookie` header value: every cookie, verbatim, in order."""
        return "; ".join(f"{name}={value}" for name, value in self.pairs)

    def names(self) -> list[str]:
        """The cookie names (safe to show; values are secrets)."""
        return list(dict.fromkeys(name for name, _ in self.pairs))

    @property
    def sessionid(self) -> str:
        """The session id the jar carries (load_jar guarantees one)."""
        return self.get("sessionid") or ""

    @property
    def web_id(self) -> str | None:
        """`_tea_web_id`: the web id the browser used, which the `webId` query must repeat."""
        return self.get("_tea_web_id")

    @property
    def is_full(self) -> bool:
        """True when the security SDK's fingerprint cookies are present (a harvested browser jar)."""
        return any(self.get(name) for name in FINGERPRINT_COOKIES)


@dataclass(frozen=True, slots=True)
class _Cookie:
    name: str
    value: str
    domain: str | None  # None: the format does not say (a header string)
    expires: float | None  # Unix seconds; None: a session cookie or not stated


def load_jar(text: str, *, region: Region, now: float, user_agent: str | None = None) -> CookieJar:
    """Parse a jar in any of the three forms and check it for `region` at time `now`. Raises JarError."""
    cookies = parse_cookies(text)
    domains = REGION_DOMAINS[region]
    stated = [c for c in cookies if c.domain is not None]
    mine = [c for c in cookies if c.domain is None or _domain_matches(c.domain, domains)]
    if stated and not any(c.domain is not None for c in mine):
        seen = sorted({c.domain or "" for c in stated})
        raise JarError(
            f"the jar holds no cookie of the {region.value} site ({' or '.join(domains)}); it has cookies of "
            f"{', '.join(seen[:5])}: export the cookies of the account's own site"
        )
    session = next((c for c in mine if c.name == "sessionid" and c.value), None)
    if session is None:
        raise JarError("the jar has no sessionid cookie: export it from a browser that is signed in to the site")
    if session.expires is not None and session.expires <= now:
        raise JarError(f"the jar's sessionid cookie expired on {_day(session.expires)}: sign in again and re-export")
    guard_end = _sid_guard_end(next((c.value for c in mine if c.name == "sid_guard"), None))
    if guard_end is not None and guard_end <= now:
        raise JarError(f"the jar's session expired on {_day(guard_end)} (sid_guard): sign in again and re-export")
    live = [c for c in mine if c.expires is None or c.expires > now]
    pairs = tuple(dict.fromkeys((c.name, c.value) for c in live))
    agent = user_agent.strip() if user_agent and user_agent.strip() else None
    if agent is not None and (not agent.isascii() or any(ch in agent for ch in "\r\n")):
        raise JarError("the User-Agent must be one line of ASCII text")
    return CookieJar(pairs=pairs, user_agent=agent)


def parse_cookies(text: str) -> list[_Cookie]:
    """The cookies of a jar in any of the three forms, unchecked. Raises JarError when the form is not known."""
    body = text.strip().lstrip("\ufeff")
    if not body:
        raise JarError("the cookie jar is empty")
    if body[0] in "[{":
        cookies = _from_json(body)
    elif body.startswith("# Netscape") or any(line.count("\t") >= 6 for line in body.splitlines()):
        cookies = _from_netscape(body)
    else:
        cookies = _from_header(body)
    for c in cookies:
        if not c.name or any(ch in _BAD_CHARS for ch in c.name + c.value) or "=" in c.name or " " in c.name:
            raise JarError("a cookie name or value holds characters a Cookie header cannot carry (';', '=', newline)")
    if not cookies:
        raise JarError("no cookies found in the jar")
    return cookies


def _from_header(body: str) -> list[_Cookie]:
    if body.lower().startswith("cookie:"):
        body = body[len("cookie:") :]
    if "\n" in body.strip():
        raise JarError("a Cookie header string must be one line (a cookies.txt has 7 tab-separated fields a line)")
    out: list[_Cookie] = []
    for part in body.split(";"):
        name, sep, value = part.strip().partition("=")
        if not sep:
            if name:
                raise JarError("a Cookie header string must be 'name=value; name=value'")
            continue
        out.append(_Cookie(name.strip(), value.strip(), None, None))
    return out


def _from_netscape(body: str) -> list[_Cookie]:
    out: list[_Cookie] = []
    for number, raw in enumerate(body.splitlines(), 1):
        line = raw.strip("\r")
        if line.startswith("#HttpOnly_"):
            line = line[len("#HttpOnly_") :]
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 7:
            raise JarError(f"cookies.txt line {number}: expected 7 tab-separated fields, got {len(fields)}")
        domain, _, _, _, expires, name, value = fields
        text = expires.strip()
        stamp = digits_value(text.removeprefix("-"), max_digits=_EXPIRY_DIGITS)
        if stamp is not None and text.startswith("-"):
            stamp = 0  # a negative expiry (some exporters write -1): a session cookie, as 0 is
        if stamp is None:
            raise JarError(
                f"cookies.txt line {number}: the expiry must be Unix seconds (up to {_EXPIRY_DIGITS} digits)"
            )
        out.append(_Cookie(name, value, domain, float(stamp) if stamp > 0 else None))
    return out


def _from_json(body: str) -> list[_Cookie]:
    try:
        data: Any = json.loads(body)
    except ValueError:
        raise JarError("the cookie export is not valid JSON") from None
    if isinstance(data, dict) and isinstance(data.get("cookies"), list):
        data = data["cookies"]
    if not isinstance(data, list):
        raise JarError("a JSON cookie export must be an array of cookies (or an object with a 'cookies' array)")
    out: list[_Cookie] = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("name", "value")):
            raise JarError(f"cookie export entry {index}: needs string 'name' and 'value'")
        domain = item.get("domain")
        out.append(_Cookie(item["name"], item["value"], domain if isinstance(domain, str) else None, _expiry(item)))
    return out


def _expiry(item: dict[str, Any]) -> float | None:
    if item.get("session") is True:
        return None
    for key in ("expirationDate", "expires"):
        value = item.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not 0 < value < 10**_EXPIRY_DIGITS:  # also NaN, Infinity and 400-digit integers: no usable date
                return None
            return float(value)
    return None


def _domain_matches(domain: str, allowed: tuple[str, ...]) -> bool:
    host = domain.strip().lstrip(".").lower()
    return any(host == d or host.endswith("." + d) for d in allowed)


def _sid_guard_end(value: str | None) -> float | None:
    """When the session in `sid_guard` (`sessionid|issued|max_age|date`, URL-encoded) ends, if it says."""
    if not value:
        return None
    parts = unquote_plus(value).split("|")
    issued = digits_value(parts[1], max_digits=_EXPIRY_DIGITS) if len(parts) >= 3 else None
    max_age = digits_value(parts[2], max_digits=_EXPIRY_DIGITS) if len(parts) >= 3 else None
    if issued is None or max_age is None:
        return None
    return float(issued + max_age)


def _day(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d")
