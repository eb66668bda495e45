"""Expiring result links in the simulator (docs/protocol.md §19.4, §19.14, §18.4) and the re-sign calls.

- Every CDN URL in a `get_history_by_ids` or `get_local_item_list` answer carries `x-expires` (unix seconds) and
  `x-signature` (over the URL's path and that expiry), appended after the URL's own parameters; base64 URLs inside
  a video item's `video_model` JSON string are signed the same way and its `url_expire` is set to their expiry.
  The lifetime is `SimSettings.result_url_ttl` seconds from the answer, or `[sim:ttl=N]` in the record's prompt.
- The CDN (`/cdn/...`) refuses a URL whose `x-expires` is past with HTTP 403 `expired` (the real CDN's refusal
  body is not recorded; 403 is what users report), and one whose `x-signature` does not match with 403
  `signature mismatch`. A URL without `x-expires` keeps the older rules of `app.py` / `video.py`.
- Image items carry `image.large_images[0].image_uri` (and `common_attr.cover_uri`): `tos-cn-i-sim/<history
  id>-<index>`, what the re-sign call takes.
- `POST /mweb/v1/get_image_by_uri {"uris": [...]}` answers `data.uri2image{<uri>: {image_uri, image_url}}` with a
  freshly signed URL. The singular key (`image_uri`, or `uri`) and a missing or empty list answer `ret 1000`
  "invalid parameter" as the real one does (§19.4). Decision (unknown upstream): uris of another account's
  records, or that name no record, are left out of `uri2image`, so a server re-signing on the wrong account is
  caught.
- Video (decision): no request or answer shape of `get_video_by_vid` / `mget_item_info` is known (§19.4), so
  videos are re-signed with `get_local_item_list` (§9.5, §19.12: SB measured it gives fresh `video_model` URLs);
  its answer's URLs are signed with a fresh expiry like the history's.

Importing this module wraps the history and local-item handlers of `web_api.WEB_HANDLERS` (after `video.py`
registered its own) and registers `get_image_by_uri`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from . import video
from .history import image_url
from .web_api import HISTORY, WEB_HANDLERS, Answer, Call, Handler

if TYPE_CHECKING:
    from .app import Simulator

IMAGE_BY_URI = "/mweb/v1/get_image_by_uri"
URI_PREFIX = "tos-cn-i-sim/"
TTL_MARKER = re.compile(r"\[sim:ttl=(\d+(?:\.\d+)?)\]")
_IMAGE_PATH = re.compile(r"/cdn/img/(\d+)/(\d+)\.png")


def ttl_of(sim: Simulator, prompt: str) -> float:
    """The lifetime of a record's links: `[sim:ttl=N]` in its prompt, else `result_url_ttl`."""
    match = TTL_MARKER.search(prompt)
    return float(match.group(1)) if match else sim.settings.result_url_ttl


def link_signature(secret: bytes, path: str, expires: int) -> str:
    """The `x-signature` of a CDN path valid until `expires`."""
    return hmac.new(secret, f"{path}|{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def sign_url(url: str, secret: bytes, expires: int) -> str:
    """`url` with `x-expires` and `x-signature` appended (its own parameters, even a literal `\\u0026`, kept)."""
    path = urlsplit(url).path
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}x-expires={expires}&x-signature={link_signature(secret, path, expires)}"


def image_uri(history_id: str, index: int) -> str:
    """The image uri of item `index` of a record."""
    return f"{URI_PREFIX}{history_id}-{index}"


def _b64(url: str) -> str:
    return base64.b64encode(url.encode()).decode()


def _unb64(value: str) -> str | None:
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _sign_video_model(text: str, cdn: str, secret: bytes, expires: int, *, videos: bool = True) -> str:
    try:
        model = json.loads(text)
    except ValueError:
        return text
    entries = model.get("video_list") if isinstance(model, dict) else None
    if not isinstance(entries, dict):
        return text
    for entry in entries.values():
        for key in ("main_url", "backup_url_1"):
            url = _unb64(entry.get(key, "")) if isinstance(entry, dict) else None
            if url is not None and url.startswith(cdn) and videos:
                entry[key] = _b64(sign_url(url, secret, expires))
    model["url_expire"] = expires
    return json.dumps(model, separators=(",", ":"))


def sign_tree(obj: Any, cdn: str, secret: bytes, expires: int, *, videos: bool = True) -> Any:
    """A copy of `obj` with every string URL under `cdn` (`<base>/cdn/`) signed until `expires`, image items
    given their `image_uri`, and `video_model` strings re-signed inside; `videos` False leaves video URLs unsigned
    (`SimSettings.video_url_expires`)."""
    if isinstance(obj, dict):
        out = {
            k: (
                _sign_video_model(v, cdn, secret, expires, videos=videos)
                if k == "video_model" and isinstance(v, str)
                else sign_tree(v, cdn, secret, expires, videos=videos)
            )
            for k, v in obj.items()
        }
        url = out.get("image_url")
        match = _IMAGE_PATH.search(urlsplit(url).path) if isinstance(url, str) and url.startswith(cdn) else None
        if match is not None and "image_uri" not in out:
            out["image_uri"] = image_uri(match.group(1), int(match.group(2)))
        return out
    if isinstance(obj, list):
        return [sign_tree(v, cdn, secret, expires, videos=videos) for v in obj]
    if isinstance(obj, str) and obj.startswith(cdn) and (videos or not obj.startswith(f"{cdn}video/")):
        return sign_url(obj, secret, expires)
    return obj


def _with_uri_in_common(record: dict[str, Any]) -> None:
    for item in record.get("item_list") or []:
        uri = ((item.get("image") or {}).get("large_images") or [{}])[0].get("image_uri")
        if uri and isinstance(item.get("common_attr"), dict):
            item["common_attr"].setdefault("cover_uri", uri)


def _signing(handler: Handler, *, history: bool) -> Handler:
    """Wrap a handler so the CDN URLs of its `data` expire (per record for history answers)."""

    async def signed(sim: Simulator, call: Call) -> Answer:
        answer = await handler(sim, call)
        payload = answer.payload
        if not isinstance(payload, dict) or payload.get("ret") != "0" or not isinstance(payload.get("data"), dict):
            return answer
        now = sim.clock.time()
        cdn = f"{call.base}/cdn/"
        videos = sim.settings.video_url_expires
        data: dict[str, Any] = payload["data"]
        if history:
            out: dict[str, Any] = {}
            for key, record in data.items():
                record_ = sim.records.get(str(key))
                ttl = ttl_of(sim, record_.prompt) if record_ is not None else sim.settings.result_url_ttl
                out[key] = sign_tree(record, cdn, sim.cdn_secret, int(now + ttl), videos=videos)
                _with_uri_in_common(out[key])
        else:
            items = data.get("item_list") or []
            ttl = min(
                (ttl_of(sim, r.prompt) for i in items if (r := sim.records.get(str(i.get("item_id", ""))[:-2]))),
                default=sim.settings.result_url_ttl,
            )
            out = sign_tree(data, cdn, sim.cdn_secret, int(now + ttl), videos=videos)
        return replace(answer, payload={**payload, "data": out})

    return signed


async def get_image_by_uri(sim: Simulator, call: Call) -> Answer:
    """`POST /mweb/v1/get_image_by_uri {"uris": [...]}` -> `data.uri2image` (see the module docstring)."""
    uris = call.body.get("uris")
    if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
        return sim.fail("1000", "invalid parameter", call.path)
    now = sim.clock.time()
    found: dict[str, Any] = {}
    for uri in dict.fromkeys(uris):
        history_id, _, index_text = uri.removeprefix(URI_PREFIX).partition("-")
        record = sim.records.get(history_id) if uri.startswith(URI_PREFIX) else None
        if record is None or record.sessionid != call.account.sessionid or not index_text.isdigit():
            continue
        index = int(index_text)
        if record.kind != "image" or index >= record.script.max_items:
            continue
        expires = int(now + ttl_of(sim, record.prompt))
        url = image_url(call.base, sim.cdn_secret, record, index).replace("\\u0026", "&")
        found[uri] = {"image_uri": uri, "image_url": sign_url(url, sim.cdn_secret, expires)}
    return sim.ok({"uri2image": found})


def refusal(sim: Simulator, request: web.Request) -> Answer | None:
    """403 for a CDN request whose signed link expired or whose `x-signature` is wrong; None otherwise
    (including URLs without `x-expires`, which the CDN handlers judge by their older rules)."""
    query = parse_qs(request.query_string.replace("\\u0026", "&"))
    expires_text = (query.get("x-expires") or [""])[-1]
    if not expires_text:
        return None
    signature = (query.get("x-signature") or [""])[-1]
    if not expires_text.isdigit() or signature != link_signature(sim.cdn_secret, request.path, int(expires_text)):
        return Answer(status=403, text="signature mismatch", content_type="text/plain")
    if sim.clock.time() > int(expires_text):
        return Answer(status=403, text="expired", content_type="text/plain")
    return None


def cdn_guard(sim: Simulator) -> Any:
    """An aiohttp middleware applying `refusal` to `/cdn/` requests (journalled like other CDN answers)."""

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/cdn/"):
            refused = refusal(sim, request)
            if refused is not None:
                return sim._finish(request, "cdn", request.path, b"", refused)
        response: web.StreamResponse = await handler(request)
        return response

    return guard


WEB_HANDLERS[HISTORY] = _signing(WEB_HANDLERS[HISTORY], history=True)
WEB_HANDLERS[video.LOCAL_ITEMS] = _signing(WEB_HANDLERS[video.LOCAL_ITEMS], history=False)
WEB_HANDLERS[IMAGE_BY_URI] = get_image_by_uri
