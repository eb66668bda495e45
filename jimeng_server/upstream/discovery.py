"""Live model discovery: parsing the two `get_common_config` answers (docs/protocol.md §17.4). Pure.

The layout is known only from clients' tests and mocks (confidence medium), so, like zhizinan, the parser walks
the whole `data` tree and takes every object carrying `model_req_key` (or `modelReqKey`). From each it reads,
where present: a display name; image counts (`generate_count_options`, numbers or numeric strings, and
`default_generate_count`); resolutions (the inner keys of `resolution_map`, or the `enum_val.string_value` of an
`options[]` entry whose key is `resolution`); benefit types per resolution
(`commercial_config.resolution_price_configs[].{resolution, price.benefit_type}`); durations
(`duration_ms.{min,max}_duration_ms`, whole seconds) and availability (`model_status`, 0 = available).

Video entries (§19.7, NT code) also carry `options[]{key, enum_val{string_value[], int_value[], default_val_idx}}`:
`resolution` (strings), `video_aspect_ratio` (strings), `frames` (frame counts; seconds = frames / 24, kept only
when whole) and `input_media_type` (strings such as `prompt`, `first_frame`, `end_frame`). `default_val_idx` names
the site's default value of an option. Durations from `frames` win over `duration_ms` when both are given (the
frame list is the enumeration the page offers).

The site's default video model (`default_video`): the first available entry flagged `is_default` / `default`,
else the first available video entry in the answer's order (the page's own model picker lists its default
first; an assumption, no source states the flag).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
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
    ratios: tuple[str, ...] = ()  # video: `video_aspect_ratio` option
    inputs: tuple[str, ...] = ()  # video: `input_media_type` option (prompt, first_frame, end_frame, ...)
    default_resolution: str | None = None  # video: the `resolution` option's `default_val_idx`
    default_duration: int | None = None  # video: the `frames` option's `default_val_idx`, in seconds
    flagged_default: bool = False  # the entry says it is the default (`is_default` / `default` true)


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


def _option(obj: dict[str, Any], key: str, kind: str) -> tuple[list[Any], Any]:
    """The `enum_val.<kind>` values of the `options[]` entry named `key` (first one), and its default value
    (`default_val_idx` into them; None when absent or out of range)."""
    options = obj.get("options")
    for option in options if isinstance(options, list) else []:
        if not isinstance(option, dict) or option.get("key") != key:
            continue
        enum = option.get("enum_val")
        values = enum.get(kind) if isinstance(enum, dict) else None
        values = values if isinstance(values, list) else []
        index = _int(enum.get("default_val_idx")) if isinstance(enum, dict) else None
        return values, values[index] if index is not None and 0 <= index < len(values) else None
    return [], None


def _strings(obj: dict[str, Any], key: str) -> tuple[tuple[str, ...], str | None]:
    values, default = _option(obj, key, "string_value")
    found = tuple(dict.fromkeys(v for v in values if isinstance(v, str) and v))
    return found, default if isinstance(default, str) and default in found else None


def _seconds_of_frames(frames: Any) -> int | None:
    """Whole seconds of a frame count at 24 frames per second, else None."""
    count = _int(frames)
    return count // 24 if count is not None and count > 0 and count % 24 == 0 else None


def _resolutions(obj: dict[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    rmap = obj.get("resolution_map")
    if isinstance(rmap, dict):
        for per_ratio in rmap.values():
            if isinstance(per_ratio, dict):
                found.extend(k for k in per_ratio if isinstance(k, str))
    found.extend(_strings(obj, "resolution")[0])
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
    frames, _ = _option(obj, "frames", "int_value")
    seconds = sorted({s for s in (_seconds_of_frames(f) for f in frames) if s is not None})
    if seconds:
        return tuple(seconds)
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
        ratios, _ = _strings(obj, "video_aspect_ratio")
        inputs, _ = _strings(obj, "input_media_type")
        _, default_resolution = _strings(obj, "resolution")
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
            ratios=ratios,
            inputs=inputs,
            default_resolution=default_resolution,
            default_duration=_seconds_of_frames(_option(obj, "frames", "int_value")[1]),
            flagged_default=any(obj.get(flag) is True for flag in ("is_default", "default")),
        )
    return list(models.values())


def default_video(found: Sequence[DiscoveredModel]) -> DiscoveredModel | None:
    """The site's default video model in one region's discovered list (see the module docstring), else None."""
    videos = [m for m in found if m.kind == "video" and m.available]
    return next((m for m in videos if m.flagged_default), videos[0] if videos else None)
