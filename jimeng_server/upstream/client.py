"""The upstream web-API client: thin I/O around the pure protocol helpers.

One `call()` builds the URL, default query, headers, `Sign` (fresh `Device-Time` on every attempt) and
cookie (a jar account's jar, verbatim), hands each attempt to the account's transport (which sends it through
the account's proxy), and unwraps the envelope. Reads are retried with backoff on
transport failures; `aigc_draft/generate` is never re-sent once it may have reached the upstream
(it spends credits), only when the connection could not be opened at all.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from yarl import URL

from .. import jsonfast
from ..clock import Clock
from ..config import UpstreamConfig
from ..metrics import instrument_upstream
from . import audits, content_check, discovery
from .codes import CodeClass, StatusPolicy, ret_overrides
from .envelope import unwrap
from .errors import (
    UpstreamBadResponse,
    UpstreamError,
    UpstreamHttpError,
    UpstreamRetError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from .history import forecast_left
from .identity import BrowserIdentity, BrowserProfile, derive_identity, profile_for
from .links import IMAGE_BY_URI_PATH, image_by_uri_body, parse_uri2image
from .payloads import dumps_compact
from .regions import Region, constants
from .signing import build_cookie, sign
from .spending import CREDIT_HISTORY_PATH, SpendPage, credit_history_body, parse_credit_history
from .tokens import Account
from .transport import AiohttpTransport, Broken, NotDelivered, Outgoing, SessionPool, TimedOut, Transport

log = logging.getLogger(__name__)

GENERATE_PATH = "/mweb/v1/aigc_draft/generate"
HISTORY_PATH = "/mweb/v1/get_history_by_ids"
LOCAL_ITEMS_PATH = "/mweb/v1/get_local_item_list"
UPLOAD_TOKEN_PATH = "/mweb/v1/get_upload_token"
ALGO_PROXY_PATH = "/mweb/v1/algo_proxy"
USER_CREDIT_PATH = "/commerce/v1/benefits/user_credit"
CREDIT_RECEIVE_PATH = "/commerce/v1/benefits/credit_receive"
ACCOUNT_INFO_PATH = "/passport/account/info/v2"

_URL_CACHE = 4096
"""How many distinct encoded call URLs (base, path, query) a client keeps."""

_JSON_BODY = (("Content-Type", "application/json"),)

_WIRE_CACHE = 4096
"""How many accounts' unchanging request parts (`_AccountWire`) a client keeps."""

_ACCEPT_LANGUAGE = {
    Region.CN: "zh-CN,zh;q=0.9",
    Region.US: "en-US,en;q=0.9",
    Region.HK: "en-US,en;q=0.9,zh-HK;q=0.8",
    Region.JP: "ja-JP,ja;q=0.9,en;q=0.8",
    Region.SG: "en-US,en;q=0.9",
}


def accept_language(region: Region) -> str:
    """The `Accept-Language` of the region's browser identity (web calls and uploads alike)."""
    return _ACCEPT_LANGUAGE[region]


class TransportChooser(Protocol):
    """Picks the transport of an account (its own choice, else the configured one); see `transports.py`."""

    def for_account(self, account: Account) -> Transport: ...


class Harvester(Protocol):
    """What can load the region's page for an account and hand back the cookies it then holds (the browser)."""

    async def harvest(self, out: Outgoing) -> str: ...


@dataclass(frozen=True, slots=True)
class SingleTransport:
    """Every account uses one transport (the default: aiohttp over the client's session pool)."""

    transport: Transport

    def for_account(self, account: Account) -> Transport:
        return self.transport


@dataclass(frozen=True, slots=True)
class ExpiringCredit:
    """One batch of credits that expires: how many are left, when (Unix seconds), and which list said so."""

    amount: int
    expires_at: int
    source: str  # "expiring_credits", "gift_credits" or "vip_credits"

    def as_point(self) -> dict[str, Any]:
        return {"amount": self.amount, "expiresAt": self.expires_at, "source": self.source}


@dataclass(frozen=True, slots=True)
class Credits:
    """An account's credit buckets (docs/protocol.md §4.1) and the batches that expire (§17.13, §18.7)."""

    gift: int
    purchase: int
    vip: int
    expiring: tuple[ExpiringCredit, ...] = ()

    @property
    def total(self) -> int:
        return self.gift + self.purchase + self.vip

    def as_points(self) -> dict[str, Any]:
        """The jimeng-api `/token/points` shape, plus `expiringCredits` (soonest first) and `nextExpiry` (the
        soonest batch, or null) where the upstream gives them."""
        soonest = min(self.expiring, key=lambda e: e.expires_at, default=None)
        return {
            "giftCredit": self.gift,
            "purchaseCredit": self.purchase,
            "vipCredit": self.vip,
            "totalCredit": self.total,
            "expiringCredits": [e.as_point() for e in sorted(self.expiring, key=lambda e: e.expires_at)],
            "nextExpiry": soonest.as_point() if soonest is not None else None,
        }


def generated_record(data: Any) -> dict[str, Any] | None:
    """The new record of a generate answer's `data`: `aigc_data` (§3), or `data` itself as in a real capture
    (§18.3); None when neither is an object."""
    aigc = data.get("aigc_data") if isinstance(data, dict) else None
    source = aigc if isinstance(aigc, dict) else data
    return source if isinstance(source, dict) else None


def generated_history_id(data: Any) -> str | None:
    """The history record id of a generate answer's `data` (`generated_record`); None when absent."""
    source = generated_record(data)
    value = source.get("history_record_id") if source is not None else None
    return str(value) if value else None


@dataclass(frozen=True, slots=True)
class Generated:
    """An accepted generate: its history record id and the upstream's forecast of the seconds it will take from
    the answer (`history.forecast_left` of the new record; None when the answer gives none)."""

    history_id: str
    forecast: float | None = None


def _batches(items: Any, source: str, amount_key: str, time_key: str) -> list[ExpiringCredit]:
    out = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and _int(item.get(amount_key)) > 0 and _int(item.get(time_key)) > 0:
            out.append(ExpiringCredit(_int(item.get(amount_key)), _int(item.get(time_key)), source))
    return out


def parse_credits(data: Any) -> Credits:
    """The balance of a `user_credit` answer's `data` (after `ret` was checked: a 1015 answer also carries zero
    buckets, §18.7). Expiring batches come from `expiring_credits[]` when present, else from the
    `credits_detail.gift_credits[]` / `vip_credits[]` batches (the same batch appears in both lists, §17.13);
    every list is optional."""
    credit = data.get("credit") if isinstance(data, dict) else None
    if not isinstance(credit, dict):
        raise UpstreamBadResponse(f"{USER_CREDIT_PATH}: no credit object")
    assert isinstance(data, dict)
    expiring = _batches(data.get("expiring_credits"), "expiring_credits", "credit_amount", "expire_time")
    if not expiring:
        detail = data.get("credits_detail")
        detail = detail if isinstance(detail, dict) else {}
        for name in ("gift_credits", "vip_credits"):
            expiring += _batches(detail.get(name), name, "residual_credits", "credits_life_end")
    return Credits(
        gift=_int(credit.get("gift_credit")),
        purchase=_int(credit.get("purchase_credit")),
        vip=_int(credit.get("vip_credit")),
        expiring=tuple(expiring),
    )


@dataclass(frozen=True, slots=True)
class _AccountWire:
    """What every call of one account sends unchanged while the configuration stands: its default query (§2.2),
    the headers from `Accept` to `User-Agent` (§2.3, §17.6), and its cookie parts. Built once per account by
    `JimengClient._wire`; a call adds only what moves (Origin, Referer, Device-Time, Sign, a session's cookie)."""

    query: Mapping[str, str]
    lead: tuple[tuple[str, str], ...]
    jar_cookie: str | None  # a jar account's Cookie header, verbatim; None: built from the session and `now`
    web_id: str
    user_id: str
    appid: str
    lan: str
    loc: str


class JimengClient:
    """Calls the web API on behalf of accounts. Owns no sessions: they come from the injected pool."""

    def __init__(
        self,
        config: UpstreamConfig,
        pool: SessionPool,
        clock: Clock,
        *,
        identity_salt: bytes | None = None,
        transports: TransportChooser | None = None,
    ) -> None:
        self.config = config
        self.pool = pool
        self.transports: TransportChooser = transports or SingleTransport(AiohttpTransport(pool))
        self.clock = clock
        self._salt = identity_salt if identity_salt is not None else secrets.token_bytes(32)
        self._identities: dict[str, BrowserIdentity] = {}
        self._origins: dict[str, str] = {}  # base URL -> its origin
        self._urls: dict[tuple[str, str, tuple[tuple[str, str], ...]], str] = {}  # (base, path, query) -> URL
        self._wires: dict[tuple[Account, object], _AccountWire] = {}  # (account, its jar) -> unchanging parts
        self._ret_classes = ret_overrides(config.ret_4001)

    # ------------------------------------------------------------------ plumbing

    @property
    def statuses(self) -> StatusPolicy:
        """The meanings of the disputed task statuses (`[upstream] status_10`, `status_45`)."""
        return StatusPolicy(self.config.status_10, self.config.status_45)

    @property
    def ret_classes(self) -> dict[str, CodeClass]:
        """The operator's classes of disputed `ret` codes (`[upstream] ret_4001`)."""
        return self._ret_classes

    def identity(self, account: Account) -> BrowserIdentity:
        """The account's own web id and user id (never shared between accounts)."""
        ident = self._identities.get(account.fingerprint)
        if ident is None:
            ident = self._identities[account.fingerprint] = derive_identity(self._salt, account.fingerprint)
        return ident

    def web_id(self, account: Account) -> str:
        """The `webId` query value: a jar's `_tea_web_id` (the upstream wants them equal, §17.6), else derived."""
        jar_id = account.jar.web_id if account.jar is not None else None
        return jar_id or self.identity(account).web_id

    def profile(self, account: Account) -> BrowserProfile:
        """The browser claims of the account's requests: the configured browser (`user_agent`, `os`) for a bare
        session id;
        for a jar, those its User-Agent implies, and none at all when the jar came without one."""
        if account.jar is not None:
            return profile_for(account.jar.user_agent)
        cfg = self.config
        platform = '"macOS"' if cfg.os == "mac" else '"Windows"'  # [upstream] os, checked against user_agent
        hints = (("Sec-Ch-Ua", cfg.sec_ch_ua), ("Sec-Ch-Ua-Mobile", "?0"), ("Sec-Ch-Ua-Platform", platform))
        return BrowserProfile(cfg.user_agent, cfg.os, hints)

    def base_url(self, account: Account, path: str) -> str:
        hosts = self.config.hosts(account.region)
        return hosts.commerce if path.startswith("/commerce/") else hosts.web

    def page_host(self, region: Region) -> str:
        return self.config.hosts(region).page

    def _origin(self, base: str) -> str:
        """The origin (scheme, host, port) of a configured base URL; computed once per base."""
        origin = self._origins.get(base)
        if origin is None:
            origin = self._origins[base] = str(URL(base).origin())
        return origin

    def _url(self, base: str, path: str, query: Mapping[str, str]) -> str:
        """`base` + `path` with `query` encoded; an account asks for the same few URLs again and again, so the
        last _URL_CACHE distinct ones are kept (a URL holds no secret: the session travels in the Cookie)."""
        key = (base, path, tuple(query.items()))
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) >= _URL_CACHE:
                self._urls.clear()
            url = self._urls[key] = str(URL(base.rstrip("/") + path).with_query(query))
        return url

    def default_params(self, account: Account) -> dict[str, str]:
        """The default query of every web call, in the web client's order (§2.2); `os` follows the profile."""
        return dict(self._wire(account).query)

    def headers(self, account: Account, path: str, origin: str, referer: str | None, now: int) -> dict[str, str]:
        """All headers of one attempt; `now` is both Device-Time and the Sign input (§2.3, §2.4).

        A jar account sends its jar verbatim and, like the browser it came from, no `Accept-Encoding`,
        `Cache-Control` or `Pragma`; User-Agent and client hints only when known (§17.6).
        """
        return dict(self._header_items(self._wire(account), account, path, origin, referer, now))

    def _header_items(
        self, wire: _AccountWire, account: Account, path: str, origin: str, referer: str | None, now: int
    ) -> tuple[tuple[str, str], ...]:
        """`headers()` as items in their order: the account's unchanging lead, then what this attempt adds."""
        cfg = self.config
        cookie = wire.jar_cookie
        if cookie is None:
            cookie = build_cookie(account.sessionid, web_id=wire.web_id, user_id=wire.user_id, now=now)
        return (
            *wire.lead,
            ("Origin", origin),
            ("Referer", referer or origin),
            ("App-Sdk-Version", cfg.app_sdk_version),
            ("Appid", wire.appid),
            ("Cookie", cookie),
            ("Device-Time", str(now)),
            ("Lan", wire.lan),
            ("Loc", wire.loc),
            ("Sign", sign(path, now, pf=cfg.pf, appvr=cfg.appvr)),
            ("Sign-Ver", "1"),
            ("Tdid", ""),
        )

    def _wire(self, account: Account) -> _AccountWire:
        """The account's unchanging request parts, built once (keyed by the account AND its jar: an account's
        equality leaves the jar out). At most _WIRE_CACHE accounts are kept; the cache only holds what the
        account objects already carry."""
        key = (account, account.jar)
        wire = self._wires.get(key)
        if wire is None:
            if len(self._wires) >= _WIRE_CACHE:
                self._wires.clear()
            wire = self._wires[key] = self._build_wire(account)
        return wire

    def _build_wire(self, account: Account) -> _AccountWire:
        rc = constants(account.region)
        cfg = self.config
        profile = self.profile(account)
        jar = account.jar
        query = {"aid": str(rc.aid), "device_platform": "web", "region": rc.region_param}
        if rc.sends_web_id:
            query["webId"] = self.web_id(account)
        query["da_version"] = cfg.da_version
        if profile.os is not None:
            query["os"] = profile.os
        query.update(
            {"web_component_open_flag": "1", "web_version": cfg.web_version, "aigc_features": cfg.aigc_features}
        )
        lead: list[tuple[str, str]] = [("Accept", "application/json, text/plain, */*")]
        if jar is None:
            lead.append(("Accept-Encoding", "gzip, deflate"))
        lead.append(("Accept-Language", accept_language(account.region)))
        if jar is None:
            lead.append(("Cache-Control", "no-cache"))
        lead.append(("Appvr", cfg.appvr))
        if jar is None:
            lead.append(("Pragma", "no-cache"))
        lead += [("Priority", "u=1, i"), ("Pf", cfg.pf), *profile.hints]
        lead += [("Sec-Fetch-Dest", "empty"), ("Sec-Fetch-Mode", "cors"), ("Sec-Fetch-Site", "same-origin")]
        if profile.user_agent is not None:
            lead.append(("User-Agent", profile.user_agent))
        ident = self.identity(account)
        return _AccountWire(
            query=query,
            lead=tuple(lead),
            jar_cookie=jar.header() if jar is not None else None,
            web_id=ident.web_id,
            user_id=ident.user_id,
            appid=str(rc.aid),
            lan=rc.lan,
            loc=rc.loc,
        )

    async def harvest_jar(self, account: Account, browser: Harvester) -> str:
        """A fresh full cookie jar for `account` (a `Cookie` header string): the region's page loaded in a real
        browser (`browser`, the browser transport) with the account's cookies, proxy and identity, after its
        security script ran (§17.6). Raises the browser's UpstreamError (BROWSER_UNAVAILABLE)."""
        page = self.page_host(account.region).rstrip("/") + "/"
        origin = str(URL(page).origin())
        headers = self.headers(account, "/", origin, page, int(self.clock.time()))
        out = Outgoing(
            account=account,
            path="/",
            url=page,
            headers=tuple(headers.items()),
            body=b"",
            page=page,
            referer=page,
            timeout=self.config.timeout,
            connect_timeout=self.config.connect_timeout,
        )
        return await browser.harvest(out)

    @instrument_upstream
    async def call(
        self,
        account: Account,
        path: str,
        body: Any | None = None,
        *,
        params: Mapping[str, str] | None = None,
        default_params: bool = True,
        referer: str | None = None,
        resend_safe: bool = True,
    ) -> Any:
        """POST `body` as JSON to `path` for `account` and return the envelope's `data`.

        `resend_safe=False` marks calls that spend credits: they are retried only when the connection
        could not be opened, never after the request may have been delivered. The account's transport
        (`transports.for_account`) sends each attempt; an `UpstreamError` it raises itself (browser, relay)
        ends the call at once.
        """
        base = self.base_url(account, path)
        origin = self._origin(base)
        wire = self._wire(account)
        query: Mapping[str, str] = wire.query if default_params else {}
        if params:
            query = {**query, **params}
        url = self._url(base, path, query)
        data = b"" if body is None else dumps_compact(body).encode()
        transport = self.transports.for_account(account)
        page = self.page_host(account.region).rstrip("/") + "/"
        attempts = 1 + max(0, self.config.read_retries)
        deadline = self.clock.time() + self.config.read_budget  # all attempts and back-offs together
        last: UpstreamError | None = None
        for attempt in range(attempts):
            if attempt:
                backoff = self.config.retry_backoff * (2 ** (attempt - 1))
                if self.clock.time() + backoff >= deadline:
                    attempts = attempt
                    break  # no time left in [upstream] read_budget for another attempt
                await self.clock.sleep(backoff)
            timeout = min(self.config.timeout, deadline - self.clock.time())
            now = int(self.clock.time())
            headers = self._header_items(wire, account, path, origin, referer, now)
            if body is not None:
                headers += _JSON_BODY
            out = Outgoing(
                account=account,
                path=path,
                url=url,
                headers=headers,
                body=data,
                page=page,
                referer=referer or origin,
                timeout=timeout,
                connect_timeout=self.config.connect_timeout,
            )
            try:
                answer = await transport.send(out)
            except NotDelivered as exc:
                last = UpstreamUnavailable(f"{path}: {exc.reason}")
                continue  # nothing was delivered: safe to retry even for generate
            except TimedOut:
                last = UpstreamTimeout(f"{path}: no answer within {timeout:g} s")
                if not resend_safe:
                    raise last from None
                continue
            except Broken as exc:
                last = UpstreamUnavailable(f"{path}: {exc.reason}")
                if not resend_safe:
                    raise last from None
                continue
            if answer.status >= 400:
                last = UpstreamHttpError(answer.status, f"{path}: HTTP {answer.status}")
                if resend_safe and (answer.status == 429 or answer.status >= 500):
                    continue
                raise last
            try:
                parsed = jsonfast.loads(answer.body)
            except ValueError:
                raise UpstreamBadResponse(f"{path}: the answer is not JSON") from None
            return unwrap(parsed, path=path, overrides=self.ret_classes)
        assert last is not None
        log.warning(
            "upstream %s failed after %d attempts for %s via %s: %s",
            path,
            attempts,
            account.masked,
            transport.name,
            last.reason,
        )
        raise last

    # ------------------------------------------------------------------ endpoints

    async def get_credits(self, account: Account) -> Credits:
        """The account's balance. `user_credit` is sent with no query string at all (§4.1)."""
        referer = (
            f"{self.page_host(account.region)}/ai-tool/image/generate"
            if account.region is Region.CN
            else f"{self.page_host(account.region)}/"
        )
        data = await self.call(account, USER_CREDIT_PATH, {}, default_params=False, referer=referer)
        return parse_credits(data)

    async def get_credit_history(self, account: Account, cursor: str = "0") -> SpendPage:
        """One page of the account's spending records, newest first (§19.10); `cursor` "0" is the newest page.
        A read: retried like any other. Records settle late (spending.py)."""
        data = await self.call(account, CREDIT_HISTORY_PATH, credit_history_body(cursor))
        return parse_credit_history(data)

    async def receive_credits(self, account: Account) -> int:
        """Claim the daily credits; returns the amount granted (§4.2)."""
        referer = (
            f"{self.page_host(account.region)}/ai-tool/home"
            if account.region is Region.CN
            else f"{self.page_host(account.region)}/"
        )
        data = await self.call(
            account, CREDIT_RECEIVE_PATH, {"time_zone": "Asia/Shanghai"}, referer=referer, resend_safe=False
        )
        return _int(data.get("receive_quota")) if isinstance(data, dict) else 0

    async def account_user_id(self, account: Account) -> str | None:
        """The account's user id when the session is live, else None (§5). Accepts both response shapes."""
        data = await self.call(account, ACCOUNT_INFO_PATH, None, params={"account_sdk_source": "web"})
        if not isinstance(data, dict):
            return None
        inner = data.get("data") if isinstance(data.get("data"), dict) else None
        user_id = data.get("user_id") or (inner or {}).get("user_id")
        return str(user_id) if user_id else None

    async def generate(self, account: Account, body: dict[str, Any], *, kind: str, input_video: bool = False) -> str:
        """Submit a generation; returns the history record id (`generate_task` without the forecast)."""
        return (await self.generate_task(account, body, kind=kind, input_video=input_video)).history_id

    async def generate_task(
        self, account: Account, body: dict[str, Any], *, kind: str, input_video: bool = False
    ) -> Generated:
        """Submit a generation; returns its history record id and the upstream's forecast. Never re-sent once
        delivered. `input_video` (a video material attached) adds `commerce_with_input_video` when configured
        (§17.5)."""
        referer = f"{self.page_host(account.region)}/ai-tool/generate?type={kind}"
        params = None
        if kind == "video":
            params = {
                "aigc_features": self.config.aigc_features,
                "web_version": self.config.web_version,
                "da_version": self.config.da_version,
            }
            if input_video and self.config.commerce_with_input_video:
                params["commerce_with_input_video"] = self.config.commerce_with_input_video
        data = await self.call(account, GENERATE_PATH, body, params=params, referer=referer, resend_safe=False)
        history_id = generated_history_id(data)
        if not history_id:
            raise UpstreamBadResponse(f"{GENERATE_PATH}: no history_record_id in the answer")
        return Generated(history_id, forecast_left(generated_record(data)))

    async def get_history(
        self, account: Account, history_ids: list[str], *, image_info: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Records keyed by history id for many ids in one call; missing ids are simply absent (§9)."""
        body: dict[str, Any] = {"history_ids": history_ids}
        if image_info is not None:
            body["image_info"] = image_info
        data = await self.call(account, HISTORY_PATH, body)
        if not isinstance(data, dict):
            raise UpstreamBadResponse(f"{HISTORY_PATH}: data is not an object")
        return data

    async def discover_models(self, account: Account) -> list[discovery.DiscoveredModel]:
        """The image and video models the upstream lists for the account's region (§17.4): two
        `get_common_config` calls; the video call retries with the other `scene` value on a refusal."""
        referer = f"{self.page_host(account.region)}/ai-tool/generate"
        image = await self.call(
            account,
            discovery.IMAGE_CONFIG_PATH,
            dict(discovery.IMAGE_CONFIG_BODY),
            params={"needCache": "true", "needRefresh": "false"},
            referer=referer,
        )
        video: Any = None
        for n, scene in enumerate(discovery.VIDEO_CONFIG_SCENES):
            try:
                video = await self.call(
                    account, discovery.VIDEO_CONFIG_PATH, discovery.video_config_body(scene), referer=referer
                )
                break
            except UpstreamRetError:
                if n == len(discovery.VIDEO_CONFIG_SCENES) - 1:
                    raise
        return discovery.parse_models("image", image) + discovery.parse_models("video", video)

    async def get_local_items(self, account: Account, item_ids: list[str]) -> Any:
        """The download-quality item list for finished video items (§9.5)."""
        body = {
            "item_id_list": item_ids,
            "pack_item_opt": {"scene": 1, "need_data_integrity": True},
            "is_for_video_download": True,
        }
        return await self.call(account, LOCAL_ITEMS_PATH, body)

    async def get_images_by_uri(self, account: Account, uris: list[str]) -> dict[str, str]:
        """Freshly signed URLs of image uris (free, read-only; §19.4): uri -> URL, unknown uris absent."""
        return parse_uri2image(await self.call(account, IMAGE_BY_URI_PATH, image_by_uri_body(uris)))

    async def get_upload_token(self, account: Account, *, scene: int) -> dict[str, Any]:
        """Temporary upload credentials: scene 2 = ImageX image, 1 = VOD video (§11.1)."""
        data = await self.call(account, UPLOAD_TOKEN_PATH, {"scene": scene})
        if not isinstance(data, dict):
            raise UpstreamBadResponse(f"{UPLOAD_TOKEN_PATH}: data is not an object")
        return data

    async def check_image_content(self, account: Account, image_uri: str) -> None:
        """Run the CN content check on a committed image (§10). Returns on `ret "0"`; a verdict or an
        outage raises (UpstreamRetError carries the verdict; `content_check.is_risk` tells them apart)."""
        referer = f"{self.page_host(account.region)}/ai-tool/generate"
        await self.call(
            account,
            ALGO_PROXY_PATH,
            content_check.check_body(image_uri),
            params={"babi_param": content_check.babi_param()},
            referer=referer,
        )


    async def submit_audit_job(self, account: Account, image_uri: str) -> None:
        """Hand a committed image to the site's audit (§19.8; the answer's `ret` is empty: nothing is read)."""
        referer = f"{self.page_host(account.region)}/ai-tool/generate"
        await self.call(account, audits.SUBMIT_AUDIT_PATH, audits.submit_audit_body(image_uri), referer=referer)

    async def execute_generate_audit(
        self, account: Account, model_key: str, materials: list[audits.AuditMaterial]
    ) -> list[int]:
        """Ask the audit about a generate's materials before it is sent (§19.8); the refused positions."""
        referer = f"{self.page_host(account.region)}/ai-tool/generate"
        body = audits.generate_audit_body(model_key, materials)
        data = await self.call(account, audits.GENERATE_AUDIT_PATH, body, referer=referer)
        return audits.refused_materials(data)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
