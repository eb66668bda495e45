"""Pure request-authentication helpers of the web API: the `Sign` header and the session cookie.

Facts: docs/protocol.md §2.4 (Sign) and §2.5 (Cookie).
"""

from __future__ import annotations

import functools
import hashlib
from urllib.parse import quote_plus

SIGN_PREFIX = "9e2c"
SIGN_SUFFIX = "11ac"
# sid_guard carries a fixed expiry literal in the web client; the upstream is not known to check it.
SID_GUARD_EXPIRY = "Mon, 03-Feb-2025 08:17:09 GMT"
SID_GUARD_MAX_AGE = 5184000


def sign(path: str, device_time: int, *, pf: str, appvr: str) -> str:
    """Return the lowercase hex MD5 `Sign` for a request path (path only, no host or query)."""
    last7 = path[-7:]
    pre_image = f"{SIGN_PREFIX}|{last7}|{pf}|{appvr}|{device_time}||{SIGN_SUFFIX}"
    return hashlib.md5(pre_image.encode("ascii"), usedforsecurity=False).hexdigest()


def sid_guard(sessionid: str, now: int) -> str:
    """The URL-encoded `sid_guard` cookie value: `sessionid|now|5184000|<expiry>`."""
    return quote_plus(f"{sessionid}|{now}|{SID_GUARD_MAX_AGE}|{SID_GUARD_EXPIRY}")


def build_cookie(sessionid: str, *, web_id: str, user_id: str, now: int) -> str:
    """Build the `Cookie` header for one account, in the order the web client sends it:
    `_tea_web_id`, `is_staff_user`, `sid_guard` (`sid_guard(sessionid, now)`), `uid_tt`, `uid_tt_ss`, `sid_tt`,
    `sessionid`, `sessionid_ss`. Only `now` changes between two calls for one account: the text around it is
    built once per account (URL quoting maps character by character, and `now`'s digits stay as they are)."""
    before, after = _cookie_around_now(sessionid, web_id, user_id)
    return f"{before}{now}{after}"


@functools.lru_cache(maxsize=1024)
def _cookie_around_now(sessionid: str, web_id: str, user_id: str) -> tuple[str, str]:
    """`build_cookie`'s text before and after `now` (remembered for the accounts seen lately, in this process's
    memory only, like `tokens._fingerprint`)."""
    before = f"_tea_web_id={web_id}; is_staff_user=false; sid_guard={quote_plus(f'{sessionid}|')}"
    tail = quote_plus(f"|{SID_GUARD_MAX_AGE}|{SID_GUARD_EXPIRY}")
    after = (
        f"{tail}; uid_tt={user_id}; uid_tt_ss={user_id}; sid_tt={sessionid}; sessionid={sessionid}; "
        f"sessionid_ss={sessionid}"
    )
    return before, after


def parse_cookie(header: str) -> dict[str, str]:
    """Split a `Cookie` header into a dict (last value wins); values are returned as sent."""
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            out[name] = value
    return out
