"""`get_common_config` in the simulator (docs/protocol.md §17.4): the image and video model lists of the
account's region, in the field names clients report from live answers, built from the catalogue (aliases once,
withdrawn keys left out) plus `settings.extra_models` (a drift: models the built-in table lacks).

Image entries: `model_req_key`, `model_name`, `feats`, `generate_count_options` (numeric strings, as seen),
`default_generate_count`, `resolution_map` (ratio -> resolution -> [w, h]), `input_image_limit`. Video entries:
`model_req_key`, `model_name`, `model_status` 0, `options[{key: "resolution", enum_val.string_value}]`,
`commercial_config.resolution_price_configs[{resolution, price.benefit_type}]`, `duration_ms`. The video call
takes `scene` "generate_video" or "video_generate" (the two reported values). Importing registers the handlers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..upstream import catalog
from ..upstream.discovery import IMAGE_CONFIG_PATH, VIDEO_CONFIG_PATH, VIDEO_CONFIG_SCENES
from ..upstream.regions import Region
from .web_api import WEB_HANDLERS, Answer, Call

if TYPE_CHECKING:
    from .app import Simulator


def _image_entry(name: str, spec: catalog.ModelSpec, key: str, region: Region) -> dict[str, Any]:
    rmap: dict[str, dict[str, list[int]]] = {}
    for ratio in catalog.RATIOS:
        for resolution in spec.resolutions:
            size = catalog.image_size(ratio, resolution, model=name, region=region)
            rmap.setdefault(ratio, {})[resolution] = [size.width, size.height]
    return {
        "model_req_key": key,
        "model_name": name,
        "feats": {"generate": True, "byte_edit": True},
        "generate_count_options": [str(c) for c in spec.counts],
        "default_generate_count": spec.default_count,
        "resolution_map": rmap,
        "input_image_limit": 10,
    }


def _video_entry(name: str, spec: catalog.ModelSpec, key: str) -> dict[str, Any]:
    resolutions = list(spec.resolutions) or ["720p"]
    durations = catalog.allowed_durations(name)
    return {
        "model_req_key": key,
        "model_name": name,
        "model_status": 0,
        "options": [{"key": "resolution", "enum_val": {"string_value": resolutions}}],
        "commercial_config": {
            "resolution_price_configs": [
                {"resolution": r, "price": {"benefit_type": catalog.video_benefit_type(key, r)}} for r in resolutions
            ]
        },
        "duration_ms": {"min_duration_ms": durations[0] * 1000, "max_duration_ms": durations[-1] * 1000},
    }


def model_list(sim: Simulator, kind: str, region: Region) -> list[dict[str, Any]]:
    """The region's `data.model_list` for `kind`."""
    specs = catalog.IMAGE_SPECS if kind == "image" else catalog.VIDEO_SPECS
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for name, spec in specs.items():
        key = spec.keys.get(region)
        if key is None or key in seen or spec.alias_of or key in sim.settings.withdrawn_models:
            continue
        seen.add(key)
        out.append(_image_entry(name, spec, key, region) if kind == "image" else _video_entry(name, spec, key))
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
