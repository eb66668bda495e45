"""Pure request checks of the web API, applied in this order (docs/protocol.md §14.2–7):

1. shape: POST only, `Content-Type: application/json` with a JSON object body (passport info/v2 may have an
   empty body), `user_credit` with no query string at all, passport with `account_sdk_source=web`  -> "4002"
2. version gate: `Appvr` header >= 8.4.0, `da_version` query >= 3.3.9 (not on user_credit), missing = too old
   -> "3018 permission denied"
3. Sign: `Sign-Ver: 1`, `Pf: 7`, integer `Device-Time` within ±sign_skew of the sim clock, `Sign` = MD5 rule
   over the API path (no vhost prefix) -> "1019 shark not pass"
4. cookie: `sessionid` == `sessionid_ss` == `sid_tt`, URL-decoded `sid_guard` starts with `<sessionid>|`; unknown or
   expired session -> "1015 login error"
5. region: `aid` query, `Appid` header (and generate's `http_common_info.aid`) equal the vhost's aid, `region`
   query is one of the vhost's values (it picks the region on sg hosts; user_credit has no query so `Loc` picks it),
   `webId` present iff CN, `Lan`/`Loc` fit the region -> "4002" (a client bug in parameters, not an IP problem);
   an account of region X used for region Y -> "3000 region not allow".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from ..upstream.regions import Region, constants
from ..upstream.signing import parse_cookie, sign
from .hosts import VHost

USER_CREDIT = "/commerce/v1/benefits/user_credit"
PASSPORT = "/passport/account/info/v2"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A check failed: answer this envelope `ret` / `errmsg`."""

    ret: str
    errmsg: str


def param_error(why: str) -> Refusal:
    """A "4002" refusal whose errmsg names the problem."""
    return Refusal("4002", f"param error: {why}")


def version_tuple(value: str) -> tuple[int, ...] | None:
    """`"8.4.0"` -> (8, 4, 0); None when not dotted integers."""
    try:
        return tuple(int(p) for p in value.strip().split("."))
    except ValueError:
        return None


def _older(value: str | None, minimum: str) -> bool:
    if value is None:
        return True
    got, need = version_tuple(value), version_tuple(minimum)
    return got is None or need is None or got < need


def check_version(
    api_path: str, headers: Mapping[str, str], query: Mapping[str, str], *, min_appvr: str, min_da: str
) -> Refusal | None:
    """The version gate (3018)."""
    if _older(headers.get("appvr"), min_appvr):
        return Refusal("3018", "permission denied")
    if api_path != USER_CREDIT and _older(query.get("da_version"), min_da):
        return Refusal("3018", "permission denied")
    return None


def check_sign(api_path: str, headers: Mapping[str, str], now: float, skew: float) -> Refusal | None:
    """Sign-Ver, Pf, Device-Time window and the Sign MD5 (1019)."""
    shark = Refusal("1019", "shark not pass")
    if headers.get("sign-ver") != "1" or headers.get("pf") != "7":
        return shark
    raw_time = headers.get("device-time", "")
    if not raw_time.isdigit():
        return shark
    device_time = int(raw_time)
    if abs(device_time - now) > skew:
        return shark
    expected = sign(api_path, device_time, pf="7", appvr=headers.get("appvr", ""))
    if headers.get("sign") != expected:
        return shark
    return None


def cookie_session(headers: Mapping[str, str]) -> str | None:
    """The sessionid of a well-formed cookie (all copies equal, sid_guard consistent), else None."""
    cookie = parse_cookie(headers.get("cookie", ""))
    sid = cookie.get("sessionid", "")
    if not sid or cookie.get("sessionid_ss") != sid or cookie.get("sid_tt") != sid:
        return None
    if not unquote_plus(cookie.get("sid_guard", "")).startswith(sid + "|"):
        return None
    return sid


def journal_session(headers: Mapping[str, str]) -> str | None:
    """The `sessionid` cookie as sent, for the journal (no consistency check)."""
    return parse_cookie(headers.get("cookie", "")).get("sessionid") or None


def request_region(
    vhost: VHost, api_path: str, headers: Mapping[str, str], query: Mapping[str, str]
) -> Region | Refusal:
    """Which of the vhost's regions the request is for, after the aid/region/webId/Lan/Loc checks (4002)."""
    aid = str(constants(vhost.regions[0]).aid)
    if api_path == USER_CREDIT:
        by_loc = [r for r in vhost.regions if constants(r).loc == headers.get("loc")]
        if not by_loc:
            return param_error(f"Loc header {headers.get('loc')!r} does not fit host {vhost.name}")
        region = by_loc[0]
    else:
        if query.get("aid") != aid:
            return param_error(f"aid query {query.get('aid')!r} must be {aid} on host {vhost.name}")
        by_param = [r for r in vhost.regions if constants(r).region_param == query.get("region")]
        if not by_param:
            allowed = "/".join(constants(r).region_param for r in vhost.regions)
            return param_error(f"region query {query.get('region')!r} must be {allowed} on host {vhost.name}")
        region = by_param[0]
        if constants(region).sends_web_id != ("webId" in query):
            return param_error("webId query must be sent on CN and only on CN")
    c = constants(region)
    if headers.get("appid") != aid:
        return param_error(f"Appid header {headers.get('appid')!r} must be {aid}")
    if headers.get("lan") != c.lan:
        return param_error(f"Lan header {headers.get('lan')!r} must be {c.lan!r} for region {region.value}")
    if headers.get("loc") != c.loc:
        return param_error(f"Loc header {headers.get('loc')!r} must be {c.loc!r} for region {region.value}")
    return region
