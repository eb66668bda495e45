"""Video in the simulator: generate validation (`gen_video`, §8, §14.13), video items (§9.3, §14.18),
`get_local_item_list` (§9.5, §14.21) and the video CDN serving a real tiny MP4.

Items vary by record so a client's path precedence is exercised: records with an even history id carry the
current path `common_attr.transcoded_video.origin.video_url` plus `item_id`; odd ones carry only the older
`video.transcoded_video.origin.video_url` and only `common_attr.id`. Both also carry `video.play_url` and
`video.download_url` pointing at a *stale* URL (the CDN answers 410), so a client reading the wrong path
fails. `get_local_item_list` gives `video.download_url` = the high-quality URL (`...mp4?hq=1&sig=...`) and
`video.play_url` = the preview URL, for items of the calling account only.

Importing this module registers the validator, the renderer and the handler in their tables.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..mp4 import tiny_mp4
from .checks import version_tuple
from .facts import SEEDANCE25_DRAFT_MIN_VERSION, VideoFact, video_fact
from .generate import (
    DRAFT_VALIDATORS,
    DraftContext,
    GenerateInvalid,
    GenerateSpec,
    InvalidParameter,
    integer,
    is_uuid,
    obj,
    text,
)
from .history import ITEM_RENDERERS, item_id, url_sig
from .state import SimRecord
from .web_api import WEB_HANDLERS, Answer, Call

if TYPE_CHECKING:
    from .app import Simulator

LOCAL_ITEMS = "/mweb/v1/get_local_item_list"
OMNI_FEATURE = "AIGC_Video_UnifiedEdit"
VIDEO_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "21:9")
MAX_OMNI_VIDEO_MS = 15000


# ---------------------------------------------------------------- generate validation


def _check_commerce(ctx: DraftContext, fact: VideoFact, omni: bool, resolution: str) -> None:
    """Both commerce objects name an accepted `benefit_type` of the key (`facts.VideoFact.benefits`; ret 1000
    otherwise) and resource `generate_video` / `aigc`."""
    key = fact.key
    extend = obj(ctx.body, "extend", "body")
    accepted = fact.omni_benefits if omni else fact.benefits.get(resolution, frozenset())
    info = obj(extend, "m_video_commerce_info", "extend")
    listed = extend.get("m_video_commerce_info_list")
    if not isinstance(listed, list) or len(listed) != 1 or not isinstance(listed[0], dict):
        raise GenerateInvalid("extend.m_video_commerce_info_list must be a one-element array of objects")
    for where, entry in (("m_video_commerce_info", info), ("m_video_commerce_info_list[0]", listed[0])):
        if entry.get("benefit_type") not in accepted:
            raise InvalidParameter(
                f"extend.{where}.benefit_type must be one of {sorted(accepted)} for {key!r}"
                f"{f' at {resolution}' if resolution else ''}, got {entry.get('benefit_type')!r}"
            )
        if entry.get("resource_id") != "generate_video" or entry.get("resource_sub_type") != "aigc":
            raise GenerateInvalid(f"extend.{where} must name resource_id generate_video / resource_sub_type aigc")


def _check_frame(ctx: DraftContext, value: Any, where: str) -> str:
    if not isinstance(value, dict):
        raise GenerateInvalid(f"{where} must be an object when present (leave it out when there is no image)")
    uri = text(value, "image_uri", where, empty=False)
    if value.get("uri") != uri or value.get("type") != "image" or value.get("source_from") != "upload":
        raise GenerateInvalid(f"{where} must have uri == image_uri, type 'image' and source_from 'upload'")
    if not ctx.is_committed(uri):
        raise GenerateInvalid(f"{where}.image_uri {uri!r} was not uploaded and committed by this account")
    return uri


MATERIAL_CODES = {"image": 1, "video": 2, "audio": 3}  # sceneOptions[0].materialTypes (§8.4, §17.10)


def _check_audio(ctx: DraftContext, info: dict[str, Any], where: str) -> str:
    """An omni audio material (§17.10): type "audio", a UUID id, source_from "upload", a VOD vid this account
    committed, a duration in ms, a name; no width, height or fps. Returns the vid."""
    if info.get("type") != "audio" or info.get("source_from") != "upload" or not is_uuid(info.get("id")):
        raise GenerateInvalid(f"{where} must have type 'audio', a UUID id and source_from 'upload'")
    vid = text(info, "vid", where, empty=False)
    if not ctx.is_committed(vid):
        raise GenerateInvalid(f"{where}.vid {vid!r} was not committed to VOD by this account")
    if integer(info, "duration", where) <= 0:
        raise GenerateInvalid(f"{where}.duration must be the audio's length in milliseconds")
    text(info, "name", where)
    for field in ("width", "height", "fps"):
        if field in info:
            raise GenerateInvalid(f"{where}.{field} must be left out for audio")
    return vid


def _check_omni(ctx: DraftContext, fact: VideoFact, gen_input: dict[str, Any]) -> tuple[str, list[str], list[str], int]:
    """Omni rules; returns the prompt text, image URIs, vids and the total video milliseconds."""
    key = fact.key
    if not fact.omni_benefits:
        raise GenerateInvalid(f"omni reference (AIGC_Video_UnifiedEdit) is not offered by {key!r}")
    if ctx.metrics.get("originSubmitId") != ctx.submit_id:
        raise GenerateInvalid("metrics_extra.originSubmitId must equal submit_id in omni_reference mode")
    for field in ("resolution", "first_frame_image", "end_frame_image"):
        if field in gen_input:
            raise GenerateInvalid(f"video_gen_inputs[0].{field} must be left out in omni_reference mode")
    if gen_input.get("prompt") != "":
        raise GenerateInvalid("video_gen_inputs[0].prompt must be empty in omni mode (the text is in meta_list)")
    unified = obj(gen_input, "unified_edit_input", "video_gen_inputs[0]")
    materials = unified.get("material_list")
    metas = unified.get("meta_list")
    if not isinstance(materials, list) or not materials or not isinstance(metas, list) or not metas:
        raise GenerateInvalid("unified_edit_input.material_list and meta_list must be non-empty arrays")
    kinds: list[str] = []
    uris: list[str] = []
    vids: list[str] = []
    audio_vids: list[str] = []
    total_ms = 0
    for n, material in enumerate(materials):
        where = f"material_list[{n}]"
        if not isinstance(material, dict):
            raise GenerateInvalid(f"{where} must be an object")
        kind = material.get("material_type")
        if kind == "image":
            uris.append(_check_frame(ctx, obj(material, "image_info", where), f"{where}.image_info"))
        elif kind == "video":
            info = obj(material, "video_info", where)
            vid = text(info, "vid", f"{where}.video_info", empty=False)
            if not ctx.is_committed(vid):  # VOD commits register their vid in the same upload store
                raise GenerateInvalid(f"{where}.video_info.vid {vid!r} was not committed to VOD by this account")
            vids.append(vid)
            total_ms += integer(info, "duration", f"{where}.video_info")
        elif kind == "audio":
            audio_vids.append(_check_audio(ctx, obj(material, "audio_info", where), f"{where}.audio_info"))
        else:
            raise GenerateInvalid(f"{where}.material_type must be 'image', 'video' or 'audio', got {kind!r}")
        kinds.append(kind)
    if len(uris) > 9 or len(vids) > 3:
        raise GenerateInvalid("omni takes at most 9 images and 3 videos")
    if audio_vids and not (uris or vids):
        raise GenerateInvalid("omni audio needs at least one image or video material (audio alone is refused)")
    if total_ms > MAX_OMNI_VIDEO_MS:
        raise GenerateInvalid(f"omni videos last {total_ms} ms in total; at most {MAX_OMNI_VIDEO_MS}")
    types = ctx.scene.get("materialTypes")
    if types != [MATERIAL_CODES[k] for k in kinds]:
        raise GenerateInvalid(
            "sceneOptions[0].materialTypes must list 1 (image) / 2 (video) / 3 (audio) per material, in order"
        )
    prompt: list[str] = []
    for n, meta in enumerate(metas):
        where = f"meta_list[{n}]"
        if not isinstance(meta, dict):
            raise GenerateInvalid(f"{where} must be an object")
        meta_type = meta.get("meta_type")
        if meta_type == "text":
            prompt.append(text(meta, "text", where))
            continue
        ref = obj(meta, "material_ref", where)
        idx = integer(ref, "material_idx", f"{where}.material_ref")
        if not 0 <= idx < len(kinds):
            raise GenerateInvalid(f"{where}.material_ref.material_idx {idx} is out of range 0..{len(kinds) - 1}")
        if meta_type != kinds[idx]:
            raise GenerateInvalid(f"{where}.meta_type {meta_type!r} does not match material {idx} ({kinds[idx]})")
    return "".join(prompt), uris, vids, total_ms


def _check_draft_fields(ctx: DraftContext, fact: VideoFact, features: Any, gen_input: dict[str, Any]) -> None:
    """The draft fields a key needs (§19.1): its `min_features` (the 2.5 result action on every `seedance_45`
    key) and, for a draft ("样片") key, `video_gen_inputs[0].is_draft_mode` true with `min_version` at least
    the capture's da_version in the draft and the input alike. Missing ones are refused with ret 1000."""
    missing = [f for f in fact.features if not isinstance(features, list) or f not in features]
    if missing:
        raise InvalidParameter(f"draft_content.min_features must contain {missing} for {fact.key!r}")
    if not fact.draft_mode:
        return
    if gen_input.get("is_draft_mode") is not True:
        raise InvalidParameter(f"video_gen_inputs[0].is_draft_mode must be true for the draft model {fact.key!r}")
    need = version_tuple(SEEDANCE25_DRAFT_MIN_VERSION)
    for where, value in (
        ("draft_content.min_version", ctx.draft.get("min_version")),
        ("video_gen_inputs[0].min_version", gen_input.get("min_version")),
    ):
        got = version_tuple(value) if isinstance(value, str) else None
        if got is None or need is None or got < need:
            raise InvalidParameter(
                f"{where} must be the current da_version (at least {SEEDANCE25_DRAFT_MIN_VERSION}) for the draft "
                f"model {fact.key!r}, got {value!r}"
            )


def validate_video(ctx: DraftContext) -> GenerateSpec:
    """§8 and §14.13: text-to-video, image-to-video, first+last frame and omni reference."""
    where = "component_list[0]"
    if ctx.component.get("type") != "video_base_component":
        raise GenerateInvalid(f"{where}.type must be 'video_base_component'")
    gen_video = obj(obj(ctx.component, "abilities", where), "gen_video", f"{where}.abilities")
    params = obj(gen_video, "text_to_video_params", "abilities.gen_video")
    if gen_video.get("video_task_extra") != ctx.body.get("metrics_extra"):
        raise GenerateInvalid("gen_video.video_task_extra must be the same JSON string as metrics_extra")
    key = text(params, "model_req_key", "text_to_video_params", empty=False)
    if not (ctx.root_model == key == ctx.scene.get("modelReqKey")):
        raise GenerateInvalid(
            f"extend.root_model ({ctx.root_model!r}), model_req_key ({key!r}) and "
            f"sceneOptions[0].modelReqKey ({ctx.scene.get('modelReqKey')!r}) must be the same upstream key"
        )
    fact = video_fact(key, ctx.region)
    if fact is None:
        raise GenerateInvalid(f"video model key {key!r} is not served in region {ctx.region.value}")
    integer(params, "seed", "text_to_video_params")
    ratio = params.get("video_aspect_ratio")
    if ratio not in VIDEO_RATIOS:
        raise GenerateInvalid(f"text_to_video_params.video_aspect_ratio must be one of {VIDEO_RATIOS}, got {ratio!r}")
    inputs = params.get("video_gen_inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise GenerateInvalid("text_to_video_params.video_gen_inputs must be a one-element array of objects")
    gen_input = inputs[0]
    duration_ms = integer(gen_input, "duration_ms", "video_gen_inputs[0]")
    seconds, rest = divmod(duration_ms, 1000)
    if rest or seconds not in fact.seconds:
        raise InvalidParameter(
            f"duration_ms {duration_ms} is not offered by {key!r} ({fact.seconds[0]}-{fact.seconds[-1]} s)"
        )
    if ctx.scene.get("videoDuration") != seconds:
        raise GenerateInvalid("sceneOptions[0].videoDuration must equal duration_ms / 1000")
    features = ctx.draft.get("min_features")
    omni = isinstance(features, list) and OMNI_FEATURE in features
    _check_draft_fields(ctx, fact, features, gen_input)
    mode = ctx.metrics.get("functionMode")
    if mode != ("omni_reference" if omni else "first_last_frames"):
        raise GenerateInvalid(f"metrics_extra.functionMode {mode!r} does not fit the draft (omni={omni})")
    extra: dict[str, Any] = {"duration_s": seconds, "mode": mode}
    resolution = ""
    if omni:
        prompt, uris, vids, total_ms = _check_omni(ctx, fact, gen_input)
        extra.update(image_uris=uris, vids=vids, video_ms=total_ms)
    else:
        if ctx.metrics.get("originSubmitId") == ctx.submit_id or not is_uuid(ctx.metrics.get("originSubmitId")):
            raise GenerateInvalid("metrics_extra.originSubmitId must be a fresh UUID, not the submit_id")
        takes = bool(fact.resolutions)
        if takes != ("resolution" in gen_input) or takes != ("resolution" in ctx.scene):
            raise GenerateInvalid(
                f"resolution must be present exactly for the 3.0 / 3.0-fast and Seedance 2.x VIP/mini/2.5 keys, "
                f"not for {key!r}"
            )
        if takes:
            resolution = text(gen_input, "resolution", "video_gen_inputs[0]")
            offered = fact.resolutions
            if resolution not in offered or ctx.scene.get("resolution") != resolution:
                raise InvalidParameter(
                    f"resolution must be one of {offered} for {key!r} in both places, got {resolution!r}"
                )
            report = ctx.scene.get("reportParams")
            if not isinstance(report, dict) or report.get("extraVipFunctionKey") != f"{key}-{resolution}":
                raise GenerateInvalid(f"sceneOptions[0].reportParams.extraVipFunctionKey must be '{key}-{resolution}'")
        prompt = text(gen_input, "prompt", "video_gen_inputs[0]")
        frames = [
            _check_frame(ctx, gen_input[f], f"video_gen_inputs[0].{f}")
            for f in ("first_frame_image", "end_frame_image")
            if f in gen_input
        ]
        if "end_frame_image" in gen_input and "first_frame_image" not in gen_input:
            raise GenerateInvalid("end_frame_image needs a first_frame_image")
        extra["image_uris"] = frames
    _check_commerce(ctx, fact, omni, resolution)
    return GenerateSpec(
        kind="video",
        generate_type="gen_video",
        model_key=key,
        prompt=prompt,
        submit_id=ctx.submit_id,
        resolution_type=resolution,
        duration_s=seconds,
        extra=extra,
        image_uris=tuple(extra["image_uris"]),
    )


# ---------------------------------------------------------------- items, local items, CDN


def video_url(base: str, secret: bytes, record: SimRecord, index: int, *, hq: bool = False, clean: bool = False) -> str:
    """The signed CDN URL of video item `index`: preview, high quality (`hq`) or watermark-free (`clean`)."""
    sig = url_sig(secret, record.history_id, index)
    flag = "wm=0&" if clean else "hq=1&" if hq else ""
    return f"{base}/cdn/video/{record.history_id}/{index}.mp4?{flag}sig={sig}"


def _b64(url: str) -> str:
    return base64.b64encode(url.encode()).decode()


def video_model(base: str, secret: bytes, record: SimRecord, index: int) -> str:
    """`item.video.video_model` as the real item of §18.4 carries it: a JSON string whose `video_list` entries
    have base64 `main_url` / `backup_url_1`; the largest entry is the watermark-free URL, a smaller one the
    preview."""
    clean = video_url(base, secret, record, index, clean=True)
    preview = video_url(base, secret, record, index)
    entries = {
        "video_1": {
            "definition": "540p",
            "quality": "normal",
            "vtype": "mp4",
            "vwidth": 960,
            "vheight": 540,
            "main_url": _b64(preview),
            "backup_url_1": _b64(preview),
        },
        "video_2": {
            "definition": "origin",
            "quality": "original",
            "vtype": "mp4",
            "vwidth": 1280,
            "vheight": 720,
            "main_url": _b64(clean),
            "backup_url_1": _b64(clean),
        },
    }
    seconds = int(record.extra.get("duration_s", 5))
    model = {
        "status": 10,
        "message": "success",
        "video_id": f"v{record.history_id}{index:02d}",
        "video_duration": seconds,
        "url_expire": int(record.created_at) + 3600,
        "video_list": entries,
    }
    return json.dumps(model, separators=(",", ":"))


def stale_url(base: str, record: SimRecord, index: int) -> str:
    """A URL at an outdated item path: the CDN answers 410 Gone."""
    return f"{base}/cdn/video/{record.history_id}/{index}.mp4?stale=1"


def video_item(base: str, secret: bytes, record: SimRecord, index: int) -> dict[str, Any]:
    """One video item; the path layout depends on the parity of the history id (see the module docstring)."""
    iid = item_id(record, index)
    preview = video_url(base, secret, record, index)
    stale = stale_url(base, record, index)
    video: dict[str, Any] = {
        "play_url": stale,
        "download_url": stale,
        "width": 1280,
        "height": 720,
        "watermark_type": 1,
        "duration_ms": int(record.extra.get("duration_s", 5)) * 1000,
        "has_audio": True,
        "video_id": f"v{iid}",  # the vid (§19.12)
        "fps": int(record.extra.get("fps", 24)),  # 60 after frame interpolation (§19.5)
    }
    if record.extra.get("video_model"):
        video["video_model"] = video_model(base, secret, record, index)
    common: dict[str, Any] = {"id": iid, "item_type": 2, "status": 50}
    item: dict[str, Any] = {"common_attr": common, "video": video}
    transcoded: dict[str, Any] = {"origin": {"video_url": preview}}
    if record.extra.get("transcoded_by_resolution"):  # §19.12: keyed by resolution name; the widest is the clip
        small = f"{stale}&w=640"
        transcoded = {
            "360p": {"vid": iid, "fps": 24, "width": 640, "height": 360, "video_url": small},
            "720p": {"vid": iid, "fps": 24, "width": 1280, "height": 720, "video_url": preview},
        }
    if int(record.history_id) % 2 == 0:
        common["transcoded_video"] = transcoded
        item["item_id"] = iid
    else:
        video["transcoded_video"] = transcoded
    return item


def _local_items_problem(body: dict[str, Any]) -> str | None:
    ids = body.get("item_id_list")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i.isdigit() for i in ids):
        return "item_id_list must be a non-empty array of numeric strings"
    if body.get("pack_item_opt") != {"scene": 1, "need_data_integrity": True}:
        return "pack_item_opt must be {scene: 1, need_data_integrity: true}"
    if body.get("is_for_video_download") is not True:
        return "is_for_video_download must be true"
    return None


async def get_local_item_list(sim: Simulator, call: Call) -> Answer:
    """`POST /mweb/v1/get_local_item_list`: download-quality URLs of the caller's finished video items."""
    problem = _local_items_problem(call.body)
    if problem is not None:
        return sim.fail("4002", f"param error: {problem}", call.path)
    items = []
    for iid in call.body["item_id_list"]:
        record = sim.records.get(iid[:-2])
        index = int(iid[-2:])
        if record is None or record.sessionid != call.account.sessionid or record.kind != "video":
            continue
        if index >= record.script.max_items:
            continue
        video = {
            "download_url": video_url(call.base, sim.cdn_secret, record, index, hq=True),
            "play_url": video_url(call.base, sim.cdn_secret, record, index),
        }
        items.append({"item_id": iid, "common_attr": {"id": iid}, "video": video})
    return sim.ok({"item_list": items})


def item_mp4(record: SimRecord, index: int, *, hq: bool) -> bytes:
    """The MP4 served for an item: its real duration, tagged with the record, item and quality."""
    seconds = int(record.extra.get("duration_s", 5))
    tag = f"{record.history_id}/{index}/{'hq' if hq else 'preview'}".encode()
    return tiny_mp4(seconds * 1000, tag=tag, width=1280, height=720, fps=int(record.extra.get("fps", 24)))


async def cdn_video(sim: Simulator, request: web.Request) -> web.StreamResponse:
    """`GET /cdn/video/{history_id}/{index}.mp4`: 410 for stale paths, 403 for a wrong `sig`, else video/mp4."""
    history_id = request.match_info["history_id"]
    name = request.match_info["name"]
    path = request.path
    faulted = await sim._take_fault(path)
    if faulted is not None:
        return sim._finish(request, "cdn", path, b"", faulted)
    record = sim.records.get(history_id)
    index_text = name.removesuffix(".mp4")
    answer: Answer
    if (
        record is None
        or record.kind != "video"
        or not name.endswith(".mp4")
        or not index_text.isdigit()
        or int(index_text) >= max(1, record.script.max_items)
    ):
        answer = Answer(status=404, text="404 page not found", content_type="text/plain")
    elif "stale" in request.query:
        answer = Answer(status=410, text="this video path is no longer served", content_type="text/plain")
    elif request.query.get("sig") != url_sig(sim.cdn_secret, history_id, int(index_text)):
        answer = Answer(status=403, text="signature mismatch", content_type="text/plain")
    else:
        sim._journal(request, "cdn", path, b"", Answer(status=200, content_type="video/mp4"))
        body = item_mp4(record, int(index_text), hq=request.query.get("hq") == "1" or request.query.get("wm") == "0")
        return web.Response(body=body, content_type="video/mp4")
    return sim._finish(request, "cdn", path, b"", answer)


DRAFT_VALIDATORS["gen_video"] = validate_video
ITEM_RENDERERS["video"] = video_item
WEB_HANDLERS[LOCAL_ITEMS] = get_local_item_list
