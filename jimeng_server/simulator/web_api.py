"""Handlers of the simulated Jimeng/Dreamina web API, run after every request check has passed.

Each handler gets the `Simulator` and a checked `Call` and returns an `Answer`; the dispatcher in `app.py` turns it
into a response and journals it. `WEB_HANDLERS` maps API paths to handlers; later issues add the upload paths.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..upstream.regions import Region, constants
from .checks import PASSPORT, USER_CREDIT
from .facts import OPTIONAL_VIDEO_KEYS, image_fact
from .generate import GenerateInvalid, GenerateSpec, validate_generate
from .history import queue_info, render_record
from .hosts import VHost
from .scripts import as_script, default_script, parse_markers
from .state import SimAccount, SimRecord, next_day_end, shanghai_day

if TYPE_CHECKING:
    from .app import Simulator

GENERATE = "/mweb/v1/aigc_draft/generate"
HISTORY = "/mweb/v1/get_history_by_ids"
CREDIT_RECEIVE = "/commerce/v1/benefits/credit_receive"
CREDIT_HISTORY = "/commerce/v1/benefits/user_credit_history"
MAX_HISTORY_PAGE = 100
SPEND_TITLES = {"image": "图片生成", "video": "视频生成"}  # titles seen on the real records (§19.10)
MAX_HISTORY_IDS = 100


@dataclass(frozen=True, slots=True)
class Call:
    """A web API request that passed the shape, version, Sign, cookie and region checks."""

    request: web.Request
    vhost: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    region: Region
    account: SimAccount

    @property
    def base(self) -> str:
        """`scheme://host[:port]` of the request, for URLs pointing back at the simulator."""
        return f"{self.request.scheme}://{self.request.host}"


@dataclass(frozen=True, slots=True)
class Answer:
    """What to send: a JSON `payload` (with its envelope `ret`, if any) or a plain `text` body."""

    status: int = 200
    payload: Any = None
    text: str | None = None
    ret: str | None = None
    content_type: str = "application/json"
    headers: dict[str, str] | None = None
    body_size: int | None = None  # bytes a streaming handler received (journalled instead of the read body)


Handler = Callable[["Simulator", Call], Awaitable[Answer]]
SpecHook = Callable[["Simulator", Call, GenerateSpec], GenerateSpec]
SPEC_HOOKS: dict[str, SpecHook] = {}
"""Component `generate_type` -> a hook that completes a valid spec from the simulator's state (the post-edit
tools read the record or upload they refer to); it may raise GenerateInvalid."""
# (simulator, request, vhost, path after the vhost prefix, raw body) -> answer; for the imagex / vod vhosts.
ServiceHandler = Callable[["Simulator", web.Request, VHost, str, bytes], Awaitable[Answer]]


def error_data(path: str) -> dict[str, Any]:
    """The `data` object an error envelope carries on `path`: generate refusals carry the four fields of the
    real 1000/1019/3018/5001 answers (§18.6)."""
    if path == GENERATE:
        return {"aigc_data": None, "fail_code": "", "fail_starling_key": "", "fail_starling_message": ""}
    return {}


async def user_credit(sim: Simulator, call: Call) -> Answer:
    """`POST /commerce/v1/benefits/user_credit` -> the three credit buckets; claimed gift credits that expire
    are listed in `expiring_credits` and again in `credits_detail.gift_credits` (§17.13), else `credits_detail`
    is `{}`."""
    a = call.account
    credit = {"gift_credit": a.gift_credit, "purchase_credit": a.purchase_credit, "vip_credit": a.vip_credit}
    if a.gift_expires_at is None or a.gift_credit <= 0:
        return sim.ok({"credit": credit, "credits_detail": {}})
    batch = {"credit_amount": a.gift_credit, "expire_time": a.gift_expires_at}
    detail = {"gift_credits": [{"residual_credits": a.gift_credit, "credits_life_end": a.gift_expires_at}]}
    return sim.ok({"credit": credit, "expiring_credits": [batch], "credits_detail": detail})


def spend_records(sim: Simulator, sessionid: str) -> list[dict[str, Any]]:
    """The settled spending records of an account, newest first, from the simulator's own bookkeeping: one per
    charged history record that is not refunded and whose final step is `spend_settle_seconds` old (§19.10)."""
    now = sim.clock.time()
    out: list[tuple[float, dict[str, Any]]] = []
    for record in sim.records.values():
        if record.sessionid != sessionid or record.charged <= 0 or record.refunded:
            continue
        finished = sim.finish_time(record)
        if finished is None or now < finished + sim.settings.spend_settle_seconds:
            continue  # not settled yet
        row = {
            "amount": record.charged,
            "create_time": int(record.created_at),
            "title": SPEND_TITLES.get(record.kind, "图片生成"),
            "submit_id": record.submit_id,
            "status": 1,  # the value of a settled record is not documented (§19.10); a number here
        }
        out.append((record.created_at, row))
    out.sort(key=lambda pair: pair[0], reverse=True)
    return [row for _, row in out]


async def user_credit_history(sim: Simulator, call: Call) -> Answer:
    """`POST /commerce/v1/benefits/user_credit_history` -> one page of spending records (`history_type` 2) from
    the numeric `cursor` (an offset here), with the available balance. Other history types list nothing."""
    body = call.body
    count, cursor, kind = body.get("count"), body.get("cursor"), body.get("history_type")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_HISTORY_PAGE:
        return sim.fail("4002", f"param error: count must be an integer 1-{MAX_HISTORY_PAGE}", call.path)
    if not isinstance(cursor, str) or not cursor.isdigit():
        return sim.fail("4002", "param error: cursor must be a numeric string", call.path)
    if not isinstance(kind, int) or isinstance(kind, bool):
        return sim.fail("4002", "param error: history_type must be an integer", call.path)
    rows = spend_records(sim, call.account.sessionid) if kind == 2 else []
    start = int(cursor)
    page = rows[start : start + count]
    end = start + len(page)
    data = {
        "total_credit": call.account.total,
        "records": page,
        "new_cursor": str(end),
        "has_more": end < len(rows),
    }
    return sim.ok(data)


async def credit_receive(sim: Simulator, call: Call) -> Answer:
    """`POST /commerce/v1/benefits/credit_receive` -> grant the daily quota once per Asia/Shanghai day."""
    zone = call.body.get("time_zone")
    if not isinstance(zone, str) or not zone:
        return sim.fail("4002", "param error: body.time_zone must be a non-empty string", call.path)
    day = shanghai_day(sim.clock.time())
    if day in call.account.received_days:
        return sim.fail("34010100", "param error", call.path)
    call.account.received_days.add(day)
    quota = sim.settings.receive_quota
    call.account.gift_credit += quota
    call.account.gift_expires_at = next_day_end(sim.clock.time())
    return sim.ok({"receive_quota": quota, "cur_total_credits": call.account.total, "is_first_receive": False})


async def passport_info(sim: Simulator, call: Call) -> Answer:
    """`POST /passport/account/info/v2` -> the account profile (envelope or passport style)."""
    a = call.account
    data = {
        "user_id": a.user_id,
        "user_id_str": str(a.user_id),
        "screen_name": f"sim-user-{str(a.user_id)[-4:]}",
        "name": f"sim-user-{str(a.user_id)[-4:]}",
        "avatar_url": "",
        "app_id": constants(a.region).aid,
        "is_new_user": False,
    }
    if sim.settings.passport_style:
        return Answer(payload={"message": "success", "data": data})
    return sim.ok(data)


async def generate(sim: Simulator, call: Call) -> Answer:
    """`POST /mweb/v1/aigc_draft/generate`: validate, risk control (shark.py), refuse on markers, charge, create
    the record."""
    try:
        sid = call.account.sessionid
        spec = validate_generate(
            call.body,
            call.region,
            sid,
            is_committed=lambda uri: sim.uploads.committed_by(uri, sid),
            extra_image_keys={
                str(m["model_req_key"]): str(m.get("model_name", m["model_req_key"]))
                for m in sim.settings.extra_models
                if m.get("kind") == "image" and "model_req_key" in m
            },
        )
        hook = SPEC_HOOKS.get(spec.generate_type)
        if hook is not None:
            spec = hook(sim, call, spec)
    except GenerateInvalid as exc:
        return sim.fail(exc.ret, f"{exc.errmsg}: {exc}", call.path)
    unlisted = spec.model_key in OPTIONAL_VIDEO_KEYS and spec.model_key not in sim.settings.shown_models
    if spec.model_key in sim.settings.withdrawn_models or unlisted:
        return sim.fail("2061", "model no longer available", call.path)
    refusal = sim.shark.check(
        headers=call.headers,
        query=call.query,
        raw_query=call.request.raw_path.partition("?")[2],
        sessionid=call.account.sessionid,
        account_free=call.account.free,
        model_key=spec.model_key,
        shark_models=sim.settings.shark_models,
        paid_models=sim.settings.paid_models,
    )
    if refusal is not None:
        return sim.fail(refusal.ret, refusal.errmsg, call.path)
    markers = parse_markers(spec.prompt)
    if markers.refuse:
        return sim.fail("2038", "text security block", call.path)  # §19.3 text_security_block
    count = spec.count if spec.kind == "image" else 1
    fact = image_fact(spec.model_key, call.region) if sim.settings.ignore_image_count else None
    if fact is not None and spec.kind == "image":
        count = fact.forced_count or fact.default_count  # drift "count": the count sent is ignored
    cost = spec.cost if spec.cost is not None else sim.cost_of(spec.kind, spec.resolution_type, spec.duration_s, count)
    taken = call.account.charge(cost)
    if taken is None:
        return sim.fail("5000", "not enough credits", call.path)
    if sim.next_script is not None:
        script = as_script(sim.next_script)
        sim.next_script = None
    else:
        script = markers.script or spec.script or default_script(spec.kind, spec.generate_type, count)
    hidden = markers.hidden_polls if markers.hidden_polls is not None else sim.settings.hidden_polls
    now = sim.clock.time()
    unfinished = sum(
        1 for r in sim.records.values() if not r.script.at(now - r.created_at, sim.record_step(r))[1].final
    )
    extra = {**spec.extra, "queue_ahead": unfinished + sim.settings.queue_ahead}
    if sim.settings.step_spread > 0:
        extra["step_scale"] = math.exp(sim.rng.gauss(0.0, sim.settings.step_spread))
    if spec.kind == "video":
        extra["video_model"] = sim.settings.video_model_urls
        extra["transcoded_by_resolution"] = sim.settings.transcoded_by_resolution
    record = SimRecord(
        history_id=sim.new_history_id(),
        sessionid=call.account.sessionid,
        kind=spec.kind,
        submit_id=spec.submit_id,
        model_key=spec.model_key,
        prompt=spec.prompt,
        script=script,
        created_at=sim.clock.time(),
        charged=cost,
        hidden_polls=hidden,
        expire_after_first_poll=markers.expire,
        width=spec.width,
        height=spec.height,
        resolution_type=spec.resolution_type,
        charge_taken=taken,
        extra=extra,
    )
    sim.records[record.history_id] = record
    sim.charges.append((record.sessionid, record.history_id, cost))
    aigc_data = {
        "history_record_id": record.history_id,
        "submit_id": spec.submit_id,
        "generate_type": spec.generate_type,
        "status": 20,
        "created_time": record.created_at,
        "task": {
            "task_id": f"{record.history_id}1",
            "submit_id": spec.submit_id,
            "status": 20,
            "finish_time": 0,
            "history_id": record.history_id,
        },
        **queue_info(record, record.created_at, sim.record_step(record), sim.settings.forecast_factor),
    }
    return sim.ok({"aigc_data": aigc_data, "fail_code": ""})


def _history_request_error(body: dict[str, Any]) -> str | None:
    ids = body.get("history_ids")
    if not isinstance(ids, list) or not ids:
        return "history_ids must be a non-empty array of strings"
    if len(ids) > MAX_HISTORY_IDS:
        return f"history_ids holds {len(ids)} ids; at most {MAX_HISTORY_IDS}"
    if not all(isinstance(i, str) and i for i in ids):
        return "every history_ids entry must be a non-empty string"
    if "image_info" not in body:
        return None
    info = body["image_info"]
    if not isinstance(info, dict):
        return "image_info must be an object"
    for key, kind in (("width", int), ("height", int), ("format", str)):
        if not isinstance(info.get(key), kind):
            return f"image_info.{key} must be a {kind.__name__}"
    scenes = info.get("image_scene_list")
    if not isinstance(scenes, list):
        return "image_info.image_scene_list must be an array"
    for n, scene in enumerate(scenes):
        if not isinstance(scene, dict):
            return f"image_info.image_scene_list[{n}] must be an object"
        for key, kind in (("scene", str), ("width", int), ("height", int), ("uniq_key", str), ("format", str)):
            if not isinstance(scene.get(key), kind):
                return f"image_info.image_scene_list[{n}].{key} must be a {kind.__name__}"
    return None


async def get_history_by_ids(sim: Simulator, call: Call) -> Answer:
    """`POST /mweb/v1/get_history_by_ids`: the caller's records, omitting unknown, foreign and hidden ids."""
    problem = _history_request_error(call.body)
    if problem is not None:
        return sim.fail("4002", f"param error: {problem}", call.path)
    now = sim.clock.time()
    data: dict[str, Any] = {}
    expire = False
    for history_id in dict.fromkeys(call.body["history_ids"]):
        record = sim.records.get(history_id)
        if record is None or record.sessionid != call.account.sessionid:
            continue
        record.polls += 1
        if record.polls <= record.hidden_polls:
            continue
        step_seconds = sim.record_step(record)
        rendered = render_record(record, now, step_seconds, call.base, sim.cdn_secret, sim.settings.forecast_factor)
        data[history_id] = rendered
        if rendered["status"] == 30:
            sim.maybe_refund(record)
        if record.expire_after_first_poll:
            record.expire_after_first_poll = False
            expire = True
    if expire:
        call.account.expired = True
    return sim.ok(data)


SERVICE_HANDLERS: dict[str, ServiceHandler] = {}  # vhost.service ("imagex", "vod") -> handler; uploads come later

WEB_HANDLERS: dict[str, Handler] = {
    USER_CREDIT: user_credit,
    CREDIT_RECEIVE: credit_receive,
    CREDIT_HISTORY: user_credit_history,
    PASSPORT: passport_info,
    GENERATE: generate,
    HISTORY: get_history_by_ids,
}
