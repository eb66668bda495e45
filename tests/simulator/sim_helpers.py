"""Helpers for the simulator tests: a tiny correctly-signed upstream caller and a valid generate body builder."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp.test_utils import TestClient

from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Simulator
from jimeng_server.upstream.catalog import image_size
from jimeng_server.upstream.regions import Region, constants
from jimeng_server.upstream.signing import build_cookie, sign
from jimeng_server.upstream.sigv4 import amz_date, sign_headers

WEB_ID = "7412345678901234000"
USER_HEX = "0123456789abcdef0123456789abcdef"
CN_SESSION = "sess-cn-0001"
US_SESSION = "sess-us-0001"
HK_SESSION = "sess-hk-0001"
GENERATE = "/mweb/v1/aigc_draft/generate"
HISTORY = "/mweb/v1/get_history_by_ids"
USER_CREDIT = "/commerce/v1/benefits/user_credit"
CREDIT_RECEIVE = "/commerce/v1/benefits/credit_receive"
PASSPORT = "/passport/account/info/v2"


@dataclass
class Reply:
    """One answer: HTTP status, raw text, parsed JSON (None if not JSON)."""

    status: int
    text: str
    content_type: str

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    @property
    def ret(self) -> Any:
        body = self.json
        return body.get("ret") if isinstance(body, dict) else None

    @property
    def data(self) -> Any:
        return self.json["data"]


def default_vhost(region: Region, path: str) -> str:
    commerce = path.startswith("/commerce/")
    if region is Region.CN:
        return "cn-web"
    if region is Region.US:
        return "us-commerce" if commerce else "us-web"
    return "sg-commerce" if commerce else "sg-web"


def default_query(region: Region, path: str) -> list[tuple[str, str]]:
    """The §2.2 default query (none for user_credit, + account_sdk_source on passport)."""
    if path == USER_CREDIT:
        return []
    c = constants(region)
    q = [("aid", str(c.aid)), ("device_platform", "web"), ("region", c.region_param)]
    if c.sends_web_id:
        q.append(("webId", WEB_ID))
    q += [
        ("da_version", "3.3.9"),
        ("os", "windows"),
        ("web_component_open_flag", "1"),
        ("web_version", "7.5.0"),
        ("aigc_features", "app_lip_sync"),
    ]
    if path == PASSPORT:
        q.append(("account_sdk_source", "web"))
    return q


def signed_headers(path: str, region: Region, session: str | None, now: int, *, appvr: str = "8.4.0") -> dict[str, str]:
    """The per-request headers of §2.3 for `path` at device time `now`."""
    c = constants(region)
    headers = {
        "Appvr": appvr,
        "Pf": "7",
        "Sign-Ver": "1",
        "Device-Time": str(now),
        "Sign": sign(path, now, pf="7", appvr=appvr),
        "Appid": str(c.aid),
        "Lan": c.lan,
        "Loc": c.loc,
        "App-Sdk-Version": "48.0.0",
        "Tdid": "",
        "Referer": "http://127.0.0.1/ai-tool/image/generate",  # CN user_credit checks its path (§17.5)
    }
    if session is not None:
        headers["Cookie"] = build_cookie(session, web_id=WEB_ID, user_id=USER_HEX, now=now)
    return headers


class Upstream:
    """Calls the simulator the way a correct client would; every part can be overridden to break it."""

    def __init__(self, client: TestClient[Any, Any], sim: Simulator, clock: ManualClock) -> None:
        self.client = client
        self.sim = sim
        self.clock = clock

    async def call(
        self,
        path: str,
        body: Any = None,
        *,
        session: str | None = CN_SESSION,
        region: Region = Region.CN,
        vhost: str | None = None,
        query: list[tuple[str, str]] | None = None,
        extra_query: list[tuple[str, str]] | None = None,
        headers: dict[str, str | None] | None = None,
        method: str = "POST",
        raw_body: bytes | None = None,
        appvr: str = "8.4.0",
        device_time: int | None = None,
    ) -> Reply:
        now = int(self.clock.time()) if device_time is None else device_time
        hdrs: dict[str, str] = signed_headers(path, region, session, now, appvr=appvr)
        for name, value in (headers or {}).items():
            hdrs.pop(name, None)
            if value is not None:
                hdrs[name] = value
        q = default_query(region, path) if query is None else query
        q = q + (extra_query or [])
        url = f"/{vhost or default_vhost(region, path)}{path}" + (f"?{urlencode(q)}" if q else "")
        data: bytes | None
        if raw_body is not None:
            data = raw_body
        elif body is None and path == PASSPORT:
            data = None
        else:
            data = json.dumps({} if body is None else body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        async with self.client.request(method, url, data=data, headers=hdrs) as resp:
            return Reply(resp.status, await resp.text(), resp.content_type)

    async def generate(self, body: dict[str, Any], **kw: Any) -> Reply:
        return await self.call(GENERATE, body, **kw)

    async def history(self, ids: list[str], **kw: Any) -> Reply:
        return await self.call(HISTORY, {"history_ids": ids, "image_info": IMAGE_INFO}, **kw)


IMAGE_INFO = {
    "width": 2048,
    "height": 2048,
    "format": "webp",
    "image_scene_list": [
        {"scene": "smart_crop", "width": 360, "height": 360, "uniq_key": "smart_crop-w:360-h:360", "format": "webp"},
        {"scene": "normal", "width": 2400, "height": 2400, "uniq_key": "2400", "format": "webp"},
    ],
}

Mutator = Callable[[dict[str, Any]], None]


def image_body(
    *,
    prompt: str = "a cute cat",
    model: str = "jimeng-4.5",
    model_key: str = "high_aes_general_v40l",
    region: Region = Region.CN,
    ratio: str = "1:1",
    resolution: str = "2k",
    intelligent: bool = False,
    multi: bool = False,
    core: Mutator | None = None,
    draft: Mutator | None = None,
    metrics: Mutator | None = None,
    scene: Mutator | None = None,
    outer: Mutator | None = None,
) -> dict[str, Any]:
    """A correct text-to-image generate body (§7); the mutators break one part before serialization."""
    size = image_size(ratio, resolution, model=model, region=region)
    submit_id = str(uuid.uuid4())
    component_id = str(uuid.uuid4())
    core_param: dict[str, Any] = {
        "type": "",
        "id": str(uuid.uuid4()),
        "model": model_key,
        "prompt": prompt,
        "sample_strength": 0.5,
        "large_image_info": {
            "type": "",
            "id": str(uuid.uuid4()),
            "min_version": "3.0.2",
            "height": size.height,
            "width": size.width,
            "resolution_type": size.resolution_type,
        },
        "intelligent_ratio": intelligent,
        "negative_prompt": "",
        "seed": 2_577_444_542,
    }
    if not intelligent:
        core_param["image_ratio"] = size.ratio_code
    if core:
        core(core_param)
    draft_content: dict[str, Any] = {
        "type": "draft",
        "id": str(uuid.uuid4()),
        "min_version": "3.0.2",
        "min_features": [],
        "is_from_tsn": True,
        "version": "3.3.9",
        "main_component_id": component_id,
        "component_list": [
            {
                "type": "image_base_component",
                "id": component_id,
                "min_version": "3.0.2",
                "aigc_mode": "workbench",
                "metadata": {"type": "", "id": str(uuid.uuid4()), "created_platform": 3},
                "generate_type": "generate",
                "abilities": {
                    "type": "",
                    "id": str(uuid.uuid4()),
                    "generate": {
                        "type": "",
                        "id": str(uuid.uuid4()),
                        "core_param": core_param,
                        "gen_option": {"type": "", "id": str(uuid.uuid4()), "generate_all": False},
                    },
                },
            }
        ],
    }
    if draft:
        draft(draft_content)
    scene_option: dict[str, Any] = {
        "type": "image",
        "scene": "ImageMultiGenerate" if multi else "ImageBasicGenerate",
        "modelReqKey": model_key,
        "resolutionType": size.resolution_type,
        "abilityList": [],
        "reportParams": {"enterSource": "generate", "vipSource": "generate"},
    }
    if not multi:
        scene_option["benefitCount"] = 4
    if scene:
        scene(scene_option)
    metrics_extra: dict[str, Any] = {
        "promptSource": "custom",
        "generateCount": 1,
        "enterFrom": "click",
        "sceneOptions": json.dumps([scene_option]),
        "generateId": submit_id,
        "isRegenerate": False,
    }
    if metrics:
        metrics(metrics_extra)
    body: dict[str, Any] = {
        "extend": {"root_model": model_key},
        "submit_id": submit_id,
        "metrics_extra": json.dumps(metrics_extra),
        "draft_content": json.dumps(draft_content),
        "http_common_info": {"aid": constants(region).aid},
    }
    if outer:
        outer(body)
    return body


class SignedUploads:
    """What the ImageX and VOD test clients share: upload credentials from `get_upload_token` and SigV4 signing
    with them (each step can be broken by the caller through keyword overrides)."""

    sigv4_service = ""
    scene = 0

    def __init__(self, up: Upstream, session: str = CN_SESSION, region: Region = Region.CN) -> None:
        self.up, self.session, self.region = up, session, region
        self.creds: dict[str, Any] = {}

    async def token(self, scene: int | None = None) -> dict[str, Any]:
        body = {"scene": self.scene if scene is None else scene}
        reply = await self.up.call("/mweb/v1/get_upload_token", body, session=self.session, region=self.region)
        assert reply.ret == "0", reply.text
        self.creds = reply.data
        return self.creds

    def sign(self, method: str, params: list[tuple[str, str]], body: bytes, **over: Any) -> dict[str, str]:
        kw: dict[str, Any] = {
            "access_key": self.creds["access_key_id"],
            "secret_key": self.creds["secret_access_key"],
            "session_token": self.creds["session_token"],
            "region": constants(self.region).sigv4_region,
            "service": self.sigv4_service,
            "amz_date": amz_date(self.up.clock.time()),
        }
        kw.update(over)
        return sign_headers(method, "/", params, body, **kw)
