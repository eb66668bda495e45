"""The `Simulator`: state, fault plan, journal and the aiohttp app that serves every virtual host.

Routing: `/{vhost}/{api path}` for the hosts of `hosts.VHOSTS`, plus `GET /cdn/img/{history_id}/{index}.png`
(and `GET /cdn/video/{history_id}/{index}.mp4`, see `video.py`)
(no vhost, no cookie; when the URL carries `sig`, it must be the one the history gave, with a `t` parameter, else
HTTP 403, so a client that forgets to replace the literal `\u0026` fails; a hand-made URL without `sig` is served).
Web API paths dispatch through `web_api.WEB_HANDLERS`; the imagex/vod/upload vhosts dispatch to
`web_api.SERVICE_HANDLERS[service]` (404 while none is registered); a `streaming` vhost's body is not read
before dispatch (its handler streams it and reports the size it received for the journal).
Unknown vhosts or paths, `/commerce/` paths on a host without commerce and other paths on a commerce-only host get
HTTP 404 with a plain-text body. Everything is journalled, faults included.

Decisions where upstream behaviour is unknown (docs/protocol.md §16):
- A repeated `submit_id` is NOT de-duplicated: it creates a second record and a second charge, so a client that
  re-sends generate is caught (`generate_count`, `charges`).
- `generate_count` counts accepted generates (records created); `calls(GENERATE)` lists every attempt.
- Passport-style answers (`settings.passport_style`) replace only the success and the session-error (1015) answers of
  passport info/v2; shape, version, Sign and region refusals keep the envelope.
- Journal: CDN requests are journalled with vhost "cdn" and the full path; a RESET fault is journalled with status 0.
- With `refund_on_failure`, the refund happens when a poll first observes status 30; it is appended to `charges`
  as a negative amount and goes back to the buckets it came from.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ..clock import Clock, SystemClock
from ..upstream.identity import chrome_major
from ..upstream.regions import Region
from . import (  # noqa: F401 - importing registers algo_proxy, audits, blend, discovery, links, VOD, post-edit
    algo,
    audits,
    blend,
    links,  # expiring result links and the re-sign calls
    models,
    postedit,
    vod,
)
from .checks import (
    PASSPORT,
    USER_CREDIT,
    check_sign,
    check_version,
    cookie_session,
    journal_session,
    request_region,
)
from .faults import Fault, FaultKind, FaultPlan
from .history import url_sig
from .hosts import VHOSTS
from .media import item_png
from .scripts import Script, Step
from .shark import PAGE_HTML, SCRIPT_PATH, Shark
from .state import JournalEntry, SimAccount, SimRecord, SimSettings
from .uploads import UploadStore
from .video import cdn_video
from .web_api import SERVICE_HANDLERS, WEB_HANDLERS, Answer, Call, error_data

_RESET = Answer(status=0)  # marker: close the connection without answering
CREDIT_REFERER = "/ai-tool/image/generate"  # the path of the Referer CN user_credit must carry


class Simulator:
    """A strict fake of the Jimeng/Dreamina upstream; see the package docstring for the API."""

    def __init__(self, clock: Clock | None = None, settings: SimSettings | None = None, seed: int = 0) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.settings = settings if settings is not None else SimSettings()
        self.rng = random.Random(seed)
        self.accounts: dict[str, SimAccount] = {}
        self.records: dict[str, SimRecord] = {}
        self.journal: list[JournalEntry] = []
        self.charges: list[tuple[str, str, int]] = []
        self.faults = FaultPlan()
        self.uploads = UploadStore()
        self.shark = Shark(self.rng)
        self.next_script: Script | Sequence[Step] | None = None
        self.cdn_secret = self.rng.randbytes(16)
        self._next_history = self.rng.randrange(8_000_000_000_000, 8_900_000_000_000)

    # ------------------------------------------------------------ public API

    def create_app(self) -> web.Application:
        """A fresh aiohttp application serving this simulator (state is shared by every app made)."""
        app = web.Application(client_max_size=200 * 1024 * 1024, middlewares=[links.cdn_guard(self)])
        app.router.add_get("/cdn/img/{history_id}/{name}", self._cdn)
        app.router.add_get("/cdn/video/{history_id}/{name}", functools.partial(cdn_video, self))
        for vhost in (v for v in VHOSTS.values() if v.web):  # the site's page and its security script
            app.router.add_get(f"/{vhost.name}/", functools.partial(self._page, vhost.name))
            app.router.add_get(f"/{vhost.name}{SCRIPT_PATH}", functools.partial(self._page, vhost.name))
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    def add_account(
        self,
        sessionid: str,
        region: Region = Region.CN,
        gift: int = 0,
        purchase: int = 0,
        vip: int = 100,
        user_id: int | None = None,
    ) -> SimAccount:
        """Register an account under its raw sessionid (no region prefix)."""
        if sessionid in self.accounts:
            raise ValueError(f"account {sessionid!r} already exists")
        uid = user_id if user_id is not None else self.rng.randrange(10**15, 10**16)
        account = SimAccount(sessionid, region, uid, gift_credit=gift, purchase_credit=purchase, vip_credit=vip)
        self.accounts[sessionid] = account
        return account

    def account(self, sessionid: str) -> SimAccount:
        """The account of `sessionid` (KeyError if unknown)."""
        return self.accounts[sessionid]

    def expire_session(self, sessionid: str) -> None:
        """Make every later call with this session answer ret "1015"."""
        self.accounts[sessionid].expired = True

    def calls(self, path_suffix: str, *, vhost: str | None = None) -> list[JournalEntry]:
        """Journal entries whose API path ends with `path_suffix` (optionally on one vhost)."""
        return [e for e in self.journal if e.path.endswith(path_suffix) and (vhost is None or e.vhost == vhost)]

    @property
    def generate_count(self) -> int:
        """How many generate calls were accepted (records created)."""
        return len(self.records)

    def mark_risky(self, image_uri: str) -> None:
        """Make algo_proxy answer "risk not pass" for this uploaded image."""
        self.uploads.risky_uris.add(image_uri)

    def inject(self, path_suffix: str, fault: Fault, *, times: int = 1, skip: int = 0) -> None:
        """Give the next `times` calls whose API path ends with `path_suffix` (after `skip` of them) `fault`."""
        self.faults.add(path_suffix, fault, times=times, skip=skip)

    # ------------------------------------------------------------ helpers for handlers

    def ok(self, data: Any) -> Answer:
        """A success envelope."""
        return self._envelope("0", "success", data)

    def fail(self, ret: str, errmsg: str, path: str) -> Answer:
        """An error envelope with the `data` object usual on `path`."""
        return self._envelope(ret, errmsg, error_data(path))

    def _envelope(self, ret: str, errmsg: str, data: Any) -> Answer:
        now = self.clock.time()
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H%M%S")
        logid = f"{stamp}{self.rng.getrandbits(72):018X}"
        payload = {"ret": ret, "errmsg": errmsg, "systime": str(int(now)), "logid": logid, "data": data}
        return Answer(payload=payload, ret=ret)

    def cost_of(self, kind: str, resolution_type: str, duration_s: int, count: int = 1) -> int:
        """Credits one generation costs: per second of video, or per image made (§17.1)."""
        if kind == "video":
            return self.settings.video_cost_per_second * duration_s
        per_image = self.settings.image_cost_4k if resolution_type == "4k" else self.settings.image_cost
        return per_image * count

    def step_seconds(self, kind: str) -> float:
        """Seconds per script step for records of `kind`."""
        return self.settings.video_step_seconds if kind == "video" else self.settings.image_step_seconds

    def record_step(self, record: SimRecord) -> float:
        """Seconds per script step of `record`: its kind's, times its own spread factor (`step_spread`)."""
        return self.step_seconds(record.kind) * float(record.extra.get("step_scale", 1.0))

    def finish_time(self, record: SimRecord) -> float | None:
        """When `record` reaches its final step on the sim clock (None: its script never ends)."""
        final = record.script.final_index
        return None if final is None else record.created_at + final * self.record_step(record)

    def new_history_id(self) -> str:
        """A fresh 13-digit numeric history id."""
        self._next_history += self.rng.randrange(1, 5000)
        return str(self._next_history)

    def maybe_refund(self, record: SimRecord) -> None:
        """Refund a failed record once, when `refund_on_failure` is set."""
        if not self.settings.refund_on_failure or record.refunded:
            return
        record.refunded = True
        account = self.accounts.get(record.sessionid)
        if account is not None:
            account.refund(record.charge_taken)
        self.charges.append((record.sessionid, record.history_id, -record.charged))

    # ------------------------------------------------------------ request pipeline

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        vhost_name, _, rest = request.path.lstrip("/").partition("/")
        api_path = "/" + rest
        vhost = VHOSTS.get(vhost_name)
        raw = b"" if vhost is not None and vhost.streaming else await request.read()
        answer = await self._route(request, vhost_name, api_path, raw)
        return self._finish(request, vhost_name, api_path, raw, answer)

    async def _route(self, request: web.Request, vhost_name: str, api_path: str, raw: bytes) -> Answer:
        vhost = VHOSTS.get(vhost_name)
        if vhost is not None and vhost.service != "web":
            service = SERVICE_HANDLERS.get(vhost.service)
            if service is None:
                return _not_found()
            faulted = await self._take_fault(api_path)
            if faulted is not None:
                return faulted
            return await service(self, request, vhost, api_path, raw)
        handler = WEB_HANDLERS.get(api_path)
        if vhost is None or handler is None:
            return _not_found()
        commerce = api_path.startswith("/commerce/")
        if (commerce and not vhost.commerce) or (not commerce and not vhost.web):
            return _not_found()
        faulted = await self._take_fault(api_path)
        if faulted is not None:
            return faulted
        headers = _lower_headers(request)
        query = dict(request.query)
        # 1. shape
        body, problem = _shape(request, api_path, raw, headers)
        if problem is None and api_path == USER_CREDIT and request.raw_path.partition("?")[2]:
            problem = "user_credit takes no query string at all"
        if problem is None and api_path == PASSPORT and query.get("account_sdk_source") != "web":
            problem = "passport info/v2 needs the query account_sdk_source=web"
        if problem is not None:
            return self.fail("4002", f"param error: {problem}", api_path)
        # 2. version, 3. sign
        s = self.settings
        refusal = check_version(api_path, headers, query, min_appvr=s.min_appvr, min_da=s.min_da_version)
        refusal = refusal or check_sign(api_path, headers, self.clock.time(), s.sign_skew)
        if refusal is not None:
            return self.fail(refusal.ret, refusal.errmsg, api_path)
        # 4. cookie and session
        sid = cookie_session(headers)
        account = self.accounts.get(sid) if sid is not None else None
        if account is None or account.expired:
            if api_path == PASSPORT and s.passport_style:
                data = {"name": "session_expired", "description": "session expired, please log in", "error_code": 4}
                return Answer(payload={"message": "error", "data": data})
            return self.fail("1015", "login error", api_path)
        # 5. region
        region = request_region(VHOSTS[vhost_name], api_path, headers, query)
        if not isinstance(region, Region):
            return self.fail(region.ret, region.errmsg, api_path)
        if account.region is not region:
            return self.fail("3000", "region not allow", api_path)
        if api_path == USER_CREDIT and region is Region.CN and not headers.get("referer", "").endswith(CREDIT_REFERER):
            return self.fail("1014", "system busy", api_path)  # the request frame is checked (§17.5, measured)
        call = Call(request, vhost_name, api_path, query, headers, body, region, account)
        return await handler(self, call)

    async def _take_fault(self, path: str) -> Answer | None:
        """The answer of an injected fault for this call, or None to go on (after a DELAY's real sleep)."""
        fault = self.faults.take(path)
        if fault is None:
            return None
        if fault.kind is FaultKind.DELAY:
            await asyncio.sleep(fault.delay)
            return None
        if fault.kind is FaultKind.HOLD:
            if fault.hold is not None:
                await fault.hold.wait()
            return None
        return self._fault_answer(fault, path)

    def _fault_answer(self, fault: Fault, api_path: str) -> Answer:
        if fault.kind is FaultKind.HTTP_500:
            return Answer(
                status=500, text="<html><body>500 Internal Server Error</body></html>", content_type="text/html"
            )
        if fault.kind is FaultKind.HTTP_429:
            return Answer(status=429, text="Too Many Requests", content_type="text/plain", headers={"Retry-After": "1"})
        if fault.kind is FaultKind.RESET:
            return _RESET
        if fault.kind is FaultKind.RET:
            return self.fail(fault.ret, fault.errmsg, api_path)
        if fault.kind is FaultKind.MALFORMED_JSON:
            return Answer(text='{"ret": "0", "errmsg": "success", "data": {', content_type="application/json")
        return self.ok({})  # MISSING_AIGC_DATA

    def _finish(self, request: web.Request, vhost: str, path: str, raw: bytes, answer: Answer) -> web.StreamResponse:
        self._journal(request, vhost, path, raw, answer)
        if answer is _RESET:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing can be sent on an aborted transport
        if answer.text is not None:
            return web.Response(
                status=answer.status, text=answer.text, content_type=answer.content_type, headers=answer.headers
            )
        return web.json_response(answer.payload, status=answer.status, headers=answer.headers)

    def _journal(self, request: web.Request, vhost: str, path: str, raw: bytes, answer: Answer) -> None:
        headers = _lower_headers(request)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.journal.append(
            JournalEntry(
                time=self.clock.time(),
                method=request.method,
                vhost=vhost,
                path=path,
                query=dict(request.query),
                raw_query=request.raw_path.partition("?")[2],
                headers=headers,
                body=body,
                body_size=answer.body_size if answer.body_size is not None else len(raw),
                status=answer.status,
                ret=answer.ret,
                sessionid=journal_session(headers),
                peer=_peer(request),
            )
        )

    def issue_jar(self, sessionid: str, *, chrome: int = 142) -> str:
        """A full browser cookie jar (a `Cookie` header string) for the account, harvested from Chrome `chrome`."""
        account = self.accounts[sessionid]
        return self.shark.issue_jar(sessionid, user_id=str(account.user_id), now=int(self.clock.time()), chrome=chrome)

    async def _page(self, vhost: str, request: web.Request) -> web.StreamResponse:
        """The web page of a web vhost, or its security script (shark.py); journalled with the GET's path."""
        path = "/" + request.path.lstrip("/").partition("/")[2]
        if path == SCRIPT_PATH:
            answer = Answer(text=self.shark.script(), content_type="application/javascript")
        else:
            answer = Answer(text=PAGE_HTML, content_type="text/html")
        response = self._finish(request, vhost, path, b"", answer)
        session = request.cookies.get("sessionid")
        if path == "/" and session in self.accounts and request.cookies.get("ttwid") not in self.shark.jars:
            # The real page's security SDK sets its fingerprint cookies in a signed-in browser that has none yet.
            chrome = chrome_major(request.headers.get("User-Agent", "")) or 0
            web_id = request.cookies.get("_tea_web_id")
            for name, value in self.shark.page_cookies(session, chrome=chrome, web_id=web_id).items():
                response.set_cookie(name, value, path="/")
        return response

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        history_id = request.match_info["history_id"]
        name = request.match_info["name"]
        path = request.path
        answer: Answer
        faulted = await self._take_fault(path)
        if faulted is not None:
            return self._finish(request, "cdn", path, b"", faulted)
        record = self.records.get(history_id)
        index_text = name.removesuffix(".png")
        if (
            record is None
            or not name.endswith(".png")
            or not index_text.isdigit()
            or int(index_text) >= max(1, record.script.max_items)
        ):
            answer = _not_found()
        elif "sig" in request.query and (
            request.query["sig"] != url_sig(self.cdn_secret, history_id, int(index_text)) or "t" not in request.query
        ):
            # A URL whose literal `\u0026` was not replaced arrives as sig="<hex>\u0026t=<n>" and no `t`.
            answer = Answer(status=403, text="signature mismatch", content_type="text/plain")
        else:
            self._journal(request, "cdn", path, b"", Answer(status=200, content_type="image/png"))
            body = item_png(history_id, int(index_text), total_bytes=self.settings.item_image_bytes)
            return web.Response(body=body, content_type="image/png")
        return self._finish(request, "cdn", path, b"", answer)


def _not_found() -> Answer:
    return Answer(status=404, text="404 page not found", content_type="text/plain")


def _peer(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else ""


def _lower_headers(request: web.Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def _shape(request: web.Request, api_path: str, raw: bytes, headers: dict[str, str]) -> tuple[Any, str | None]:
    """The parsed JSON object body, or a description of what is wrong with the request shape."""
    if request.method != "POST":
        return None, f"{request.method} is not allowed; web API calls are POST"
    if api_path == PASSPORT and not raw.strip():
        return {}, None  # the web client sends passport info/v2 with no body
    if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return None, "Content-Type must be application/json"
    try:
        body = json.loads(raw)
    except ValueError:
        return None, "body is not valid JSON"
    if not isinstance(body, dict):
        return None, "body must be a JSON object"
    return body, None


def seed_demo(sim: Simulator) -> str:
    """Add a demo CN account with credits (for `--simulate`) and return its token (the sessionid)."""
    token = f"simdemo{sim.rng.getrandbits(96):024x}"
    sim.add_account(token, region=Region.CN, gift=60, purchase=0, vip=200)
    return token
