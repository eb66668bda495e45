"""Live model discovery: parsing the two `get_common_config` answers (docs/protocol.md §17.4). Pure.

The layout is known only from clients' tests and mocks (confidence medium), so, like zhizinan, the parser walks
the whole `data` tree and takes every object carrying `model_req_key` (or `modelReqKey`). From each it reads,
where present: a display name; image counts (`generate_count_options`, numbers or numeric strings, and
`default_generate_count`); resolutions (the inner keys of `resolution_map`, or the `enum_val.string_value` of an
`options[]` entry whose key is `resolution`); benefit types per resolution
(`commercial_config.resolution_price_configs[].{resolution, price.benefit_type}`); durations
(`duration_ms.{min,max}_duration_ms`, whole seconds) and availability (`model_status`, 0 = available).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

IMAGE_CONFIG_PATH = "/mweb/v1/get_common_config"
VIDEO_CONFIG_PATH = "/mweb/v1/video_generate/get_common_config"
IMAGE_CONFIG_BODY: Mapping[str, Any] = {"is_client_filter": False, "need_beta_model": True}
# Two `scene` values are reported (§17.4, conflicting): the first is tried first, the second on a refusal.
VIDEO_CONFIG_SCENES = ("generate_video", "video_generate")
_NAME_KEYS = ("name", "model_name", "display_name", "displayName", "title", "label", "text")


def video_config_body(scene: str) -> dict[str, Any]:
    """The body of the video `get_common_config` call for one `scene` value."""
    return {"scene": scene, "params": {"needCache": True}}


@dataclass(frozen=True, slots=True)
class DiscoveredModel:
    """One model the upstream lists (empty fields: the answer did not say)."""

    kind: str  # "image" or "video"
    key: str
    name: str = ""
    resolutions: tuple[str, ...] = ()
    counts: tuple[int, ...] = ()
    default_count: int | None = None
    benefits: Mapping[str, str] = field(default_factory=dict)  # resolution -> benefit_type
    durations: tuple[int, ...] = ()
    available: bool = True


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every object in the tree, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _resolutions(obj: dict[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    rmap = obj.get("resolution_map")
    if isinstance(rmap, dict):
        for per_ratio in rmap.values():
            if isinstance(per_ratio, dict):
                found.extend(k for k in per_ratio if isinstance(k, str))
    for option in obj.get("options") or []:
        if isinstance(option, dict) and option.get("key") == "resolution":
            values = (option.get("enum_val") or {}).get("string_value")
            found.extend(v for v in values or [] if isinstance(v, str))
    return tuple(dict.fromkeys(found))


def _benefits(obj: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    commercial = obj.get("commercial_config")
    configs = commercial.get("resolution_price_configs") if isinstance(commercial, dict) else None
    for entry in configs if isinstance(configs, list) else []:
        if not isinstance(entry, dict):
            continue
        price = entry.get("price")
        benefit = price.get("benefit_type") if isinstance(price, dict) else None
        if isinstance(entry.get("resolution"), str) and isinstance(benefit, str) and benefit:
            out[entry["resolution"]] = benefit
    return out


def _durations(obj: dict[str, Any]) -> tuple[int, ...]:
    limits = obj.get("duration_ms")
    if not isinstance(limits, dict):
        return ()
    low, high = _int(limits.get("min_duration_ms")), _int(limits.get("max_duration_ms"))
    if low is None or high is None or low > high:
        return ()
    return tuple(range(-(-low // 1000), high // 1000 + 1))


def parse_models(kind: str, data: Any) -> list[DiscoveredModel]:
    """The models of one `get_common_config` answer's `data`, first mention of each key wins."""
    models: dict[str, DiscoveredModel] = {}
    for obj in _objects(data):
        key = obj.get("model_req_key") or obj.get("modelReqKey")
        if not isinstance(key, str) or not key or key in models:
            continue
        name = next((v for k in _NAME_KEYS if isinstance(v := obj.get(k), str) and v), "")
        counts = tuple(c for c in (_int(v) for v in obj.get("generate_count_options") or []) if c and c > 0)
        status = _int(obj.get("model_status"))
        models[key] = DiscoveredModel(
            kind=kind,
            key=key,
            name=name,
            resolutions=_resolutions(obj),
            counts=tuple(sorted(set(counts))),
            default_count=_int(obj.get("default_generate_count")),
            benefits=_benefits(obj),
            durations=_durations(obj),
            available=status in (None, 0),
        )
    return list(models.values())
