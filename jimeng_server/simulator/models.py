"""`get_common_config` in the simulator (docs/protocol.md §17.4): the image and video model lists of the
account's region, in the field names clients report from live answers, built from the simulator's own facts
(`facts.py`; withdrawn keys left out, optional ones only when `settings.shown_models` names them) plus
`settings.extra_models` (a drift: models the built-in table lacks).

Image entries: `model_req_key`, `model_name`, `feats`, `generate_count_options` (numeric strings, as seen),
`default_generate_count`, `resolution_map` (ratio -> resolution -> [w, h]), `input_image_limit`. Video entries:
`model_req_key`, `model_name`, `model_status` 0, `options[{key: "resolution", enum_val.string_value}]`,
`commercial_config.resolution_price_configs[{resolution, price.benefit_type}]`, `duration_ms`, and the §19.7
options `video_aspect_ratio`, `frames` (seconds x 24) and `input_media_type` (no `default_val_idx`: not
captured); the facts' first
listed key is the site's default model (`dreamina_seedance_45_pro`, §19.1 "the site's default video model on
2026-09-10"), so the list keeps the facts' order. The video call
takes `scene` "generate_video" or "video_generate" (the two reported values). Importing registers the handlers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..upstream.regions import Region
from .facts import IMAGE_FACTS, RATIOS, VIDEO_FACTS, ImageFact, VideoFact, wire_size
from .video import VIDEO_RATIOS
from .web_api import WEB_HANDLERS, Answer, Call

if TYPE_CHECKING:
    from .app import Simulator

IMAGE_CONFIG_PATH = "/mweb/v1/get_common_config"  # §17.4, §19.6
VIDEO_CONFIG_PATH = "/mweb/v1/video_generate/get_common_config"  # §17.4, §19.7
VIDEO_CONFIG_SCENES = ("generate_video", "video_generate")  # §19.7: zhizinan and SB (measured)
FRAMES_PER_SECOND = 24  # §19.7: the `frames` option counts frames; seconds = frames / 24


def _image_entry(fact: ImageFact, region: Region) -> dict[str, Any]:
    rmap: dict[str, dict[str, list[int]]] = {}
    for ratio in RATIOS:
        for resolution in fact.resolutions:
            size = wire_size(fact, ratio, resolution, region)
            rmap.setdefault(ratio, {})[resolution] = [size.width, size.height]
    return {
        "model_req_key": fact.key,
        "model_name": fact.key,
        "feats": {"generate": True, "byte_edit": True},
        "generate_count_options": [str(c) for c in ((fact.forced_count,) if fact.forced_count else fact.counts)],
        "default_generate_count": fact.forced_count or fact.default_count,
        "resolution_map": rmap,
        "input_image_limit": fact.max_inputs,
    }


def _video_entry(fact: VideoFact) -> dict[str, Any]:
    resolutions = list(fact.resolutions) or ["720p"]
    frames = [s * FRAMES_PER_SECOND for s in fact.seconds]
    inputs = ["prompt", "first_frame", "end_frame"] + (["unified_edit"] if fact.omni_benefits else [])
    return {
        "model_req_key": fact.key,
        "model_name": fact.key,
        "model_status": 0,
        "options": [
            # No `default_val_idx`: the site's default values are not captured (§19.7 names the field only).
            {"key": "resolution", "enum_val": {"string_value": resolutions}},
            {"key": "video_aspect_ratio", "enum_val": {"string_value": list(VIDEO_RATIOS)}},
            {"key": "frames", "enum_val": {"int_value": frames}},
            {"key": "input_media_type", "enum_val": {"string_value": inputs}},
        ],
        "commercial_config": {
            "resolution_price_configs": [
                {"resolution": r, "price": {"benefit_type": min(fact.benefits.get(r) or fact.benefits[""])}}
                for r in resolutions
            ]
        },
        "duration_ms": {"min_duration_ms": fact.seconds[0] * 1000, "max_duration_ms": fact.seconds[-1] * 1000},
    }


def model_list(sim: Simulator, kind: str, region: Region) -> list[dict[str, Any]]:
    """The region's `data.model_list` for `kind`."""
    withdrawn = sim.settings.withdrawn_models
    out: list[dict[str, Any]]
    if kind == "image":
        out = [_image_entry(f, region) for f in IMAGE_FACTS if region in f.regions and f.key not in withdrawn]
    else:
        shown = sim.settings.shown_models
        out = [
            _video_entry(f)
            for f in VIDEO_FACTS
            if region in f.regions and f.key not in withdrawn and (f.listed or f.key in shown)
        ]
    out += [{k: v for k, v in m.items() if k != "kind"} for m in sim.settings.extra_models if m.get("kind") == kind]
    return out


async def image_config(sim: Simulator, call: Call) -> Answer:
    """`POST /mweb/v1/get_common_config`: the image models."""
    if call.body.get("is_client_filter") is not False or call.body.get("need_beta_model") is not True:
        return sim.fail("4002", "param error: body must be {is_client_filter: false, need_beta_model: true}", call.path)
    return sim.ok({"model_list": model_list(sim, "image", call.region)})


async def video_config(sim: Simulator, call: Call) -> Answer:
    """`POST /mweb/v1/video_generate/get_common_config`: the video models."""
    if call.body.get("scene") not in VIDEO_CONFIG_SCENES:
        return sim.fail("4002", f"param error: scene must be one of {VIDEO_CONFIG_SCENES}", call.path)
    return sim.ok({"model_list": model_list(sim, "video", call.region)})


WEB_HANDLERS[IMAGE_CONFIG_PATH] = image_config
WEB_HANDLERS[VIDEO_CONFIG_PATH] = video_config
