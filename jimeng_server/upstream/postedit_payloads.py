"""Pure builders of post-edit `aigc_draft/generate` bodies: upscale, outpaint, detail repair and video frame
interpolation (../shared/upstream-protocol.md §19.5; docs/protocol.md cites it).

Every image tool is one `image_base_component` whose `generate_type` string names the tool and whose ability of
the same name carries a `postedit_param` with the tool's integer `generate_type`:

| tool | component `gen_type` | `postedit_param.generate_type` | extra ability fields |
|---|---|---|---|
| `normal_hd` (超清) | 13 | 13 | - |
| `pro_hd` (智能超清) | 35 | 35 | `hd_scene_type`, `original_image_strength`, `detail_strength`, `resolution_type` |
| `painting` (扩图) | 8 | 8 | `up_scale{top, bottom, left, right, max_size, image_ratio}` |
| `super_resolution` (细节修复) | (none) | 2 | `core_param{generate_type 0}` |

The source is an uploaded image (`postedit_param.origin_image`) or an item already in the account
(`postedit_param.item_id` + `origin_history_id`, no `origin_image`). `super_resolution` works only with the
second form (an uploaded image ends in status 30, measured), so the builder refuses the first.

Frame interpolation is a video draft (`process_type 3`, `gen_video.scene "insert_frame"`) on the root model
`dreamina_seedance_40_mini` with benefit `video_frame_interpolation` (amount 0). For a clip of the account the
input names the clip's item in `video_ref_params`; the source component itself is not replayed (it is not kept),
which §19.5 does not say is required (unverified). Randomness and time come in as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .payloads import IdFactory, ImageRef, component_metadata, dumps_compact, image_payload, new_uuid
from .regions import Region, constants


class PostEditTool(StrEnum):
    """The image post-edit tools by their component `generate_type` (§19.5)."""

    NORMAL_HD = "normal_hd"
    PRO_HD = "pro_hd"
    PAINTING = "painting"
    SUPER_RESOLUTION = "super_resolution"


@dataclass(frozen=True, slots=True)
class ToolCodes:
    """The integers a tool sends: the component's `gen_type` (None: left out) and `postedit_param.generate_type`."""

    gen_type: int | None
    postedit_type: int


TOOL_CODES: dict[PostEditTool, ToolCodes] = {
    PostEditTool.NORMAL_HD: ToolCodes(13, 13),
    PostEditTool.PRO_HD: ToolCodes(35, 35),
    PostEditTool.PAINTING: ToolCodes(8, 8),
    PostEditTool.SUPER_RESOLUTION: ToolCodes(None, 2),
}
"""§19.5 table (PY, four UI captures 2026-09-18 plus runs)."""

POSTEDIT_ROOT_MODEL = "high_aes_general_v50"  # `extend.root_model` of every image post-edit (§19.5)
POSTEDIT_DRAFT_MIN_VERSION = "3.2.9"  # the draft's `min_version` (§19.5)
PRO_HD_FIELDS: dict[str, Any] = {"hd_scene_type": "auto", "original_image_strength": 0.65, "detail_strength": 0.65}
PRO_HD_SCENE = "ImageProHD"
OUTPAINT_MAX_SIZE = 12960  # `up_scale.max_size` as captured (§19.5)

INTERPOLATION_ROOT_MODEL = "dreamina_seedance_40_mini"
INTERPOLATION_MIN_VERSION = "3.1.0"
INTERPOLATION_BENEFIT = "video_frame_interpolation"
INTERPOLATION_SCENE = "VideoFrameInterpolation"
INTERPOLATION_TARGET_FPS = 60
INTERPOLATION_ORIGIN_FPS = 24


@dataclass(frozen=True, slots=True)
class OwnItem:
    """An item already in the account: its numeric `item_id` and the history record it belongs to."""

    item_id: str
    history_id: str


@dataclass(frozen=True, slots=True)
class Expansion:
    """Outpaint: how far to widen each side, as a fraction of the source's side (0.9 = 90 %), and the
    `image_ratio` code of the target (the site sends 1 for a free expansion)."""

    top: float
    bottom: float
    left: float
    right: float
    image_ratio: int = 1


@dataclass(frozen=True, slots=True)
class PostEditJob:
    """Everything that decides an image post-edit body. `count` is sent as `abilities.gen_option.gen_count`
    when given (outpaint's `n`); `expansion` is required for `painting` and refused otherwise."""

    tool: PostEditTool
    source: ImageRef | OwnItem
    expansion: Expansion | None = None
    resolution_type: str = "2k"  # pro_hd only
    count: int | None = None


def _numeric(value: str) -> int | str:
    """Item and history ids go as JSON numbers when they are digits (they are 13-19 digit integers upstream)."""
    return int(value) if value.isdigit() else value


def _ability(job: PostEditJob, new_id: IdFactory) -> dict[str, Any]:
    codes = TOOL_CODES[job.tool]
    ability: dict[str, Any] = {"type": "", "id": new_id()}
    if job.tool is PostEditTool.PRO_HD:
        ability.update(PRO_HD_FIELDS)
        ability["resolution_type"] = job.resolution_type
    elif job.tool is PostEditTool.SUPER_RESOLUTION:
        ability["core_param"] = {"type": "", "id": new_id(), "generate_type": 0}
    elif job.tool is PostEditTool.PAINTING:
        assert job.expansion is not None
        e = job.expansion
        ability["up_scale"] = {
            "type": "",
            "id": new_id(),
            "top": e.top,
            "bottom": e.bottom,
            "left": e.left,
            "right": e.right,
            "max_size": OUTPAINT_MAX_SIZE,
            "image_ratio": e.image_ratio,
        }
    param: dict[str, Any] = {"type": "", "id": new_id(), "generate_type": codes.postedit_type}
    if isinstance(job.source, OwnItem):
        param["item_id"] = _numeric(job.source.item_id)
        param["origin_history_id"] = _numeric(job.source.history_id)
    else:
        param["origin_image"] = image_payload(job.source, new_id)
    ability["postedit_param"] = param
    return ability


def check_job(job: PostEditJob) -> None:
    """Raise ValueError for a job the upstream cannot run: repair of an uploaded image (it ends in status 30,
    §19.5), outpaint without an expansion, an expansion on another tool, a count below 1."""
    if job.tool is PostEditTool.SUPER_RESOLUTION and not isinstance(job.source, OwnItem):
        raise ValueError("super_resolution needs an item of the account (item_id + origin_history_id)")
    if (job.tool is PostEditTool.PAINTING) != (job.expansion is not None):
        raise ValueError("an expansion is given exactly for painting")
    if job.count is not None and job.count < 1:
        raise ValueError("count must be at least 1")


def build_postedit_generate(
    job: PostEditJob,
    *,
    region: Region,
    version: str,
    component_min_version: str = "3.0.2",
    now_ms: int,
    new_id: IdFactory = new_uuid,
) -> dict[str, Any]:
    """The generate body of an image post-edit (§19.5). `version` is the draft version (da_version in 2026);
    raises ValueError for a job `check_job` refuses."""
    check_job(job)
    submit_id = new_id()
    component_id = new_id()
    abilities: dict[str, Any] = {"type": "", "id": new_id(), job.tool.value: _ability(job, new_id)}
    if job.count is not None:
        abilities["gen_option"] = {"type": "", "id": new_id(), "gen_count": job.count, "generate_all": False}
    component: dict[str, Any] = {
        "type": "image_base_component",
        "id": component_id,
        "min_version": component_min_version,
        "aigc_mode": "workbench",
    }
    codes = TOOL_CODES[job.tool]
    if codes.gen_type is not None:
        component["gen_type"] = codes.gen_type
    metadata = component_metadata(now_ms, new_id)
    component.update({"metadata": metadata, "generate_type": job.tool.value, "abilities": abilities})
    draft = {
        "type": "draft",
        "id": new_id(),
        "min_version": POSTEDIT_DRAFT_MIN_VERSION,
        "min_features": [],
        "is_from_tsn": True,
        "version": version,
        "main_component_id": component_id,
        "component_list": [component],
    }
    metrics: dict[str, Any] = {
        "promptSource": "custom",
        "generateCount": job.count or 1,
        "generateId": submit_id,
        "templateId": "0",
        "enterFrom": "click",
        "isRegenerate": False,
        "isBoxSelect": False,
        "isCutout": False,
    }
    if isinstance(job.source, OwnItem):
        metrics["originItemId"] = job.source.item_id
    if job.tool is PostEditTool.PRO_HD:
        scene = {
            "type": "image",
            "scene": PRO_HD_SCENE,
            "proHDResolutionType": job.resolution_type,
            "reportParams": {"enterSource": "generate"},
        }
        metrics["sceneOptions"] = dumps_compact([scene])
    return {
        "extend": {"root_model": POSTEDIT_ROOT_MODEL},
        "submit_id": submit_id,
        "metrics_extra": dumps_compact(metrics),
        "draft_content": dumps_compact(draft),
        "http_common_info": {"aid": constants(region).aid},
    }


@dataclass(frozen=True, slots=True)
class InterpolationJob:
    """Frame interpolation of one clip: its VOD `vid`, length, and the item it is (None: an uploaded clip)."""

    vid: str
    duration_ms: int
    source: OwnItem | None = None
    origin_fps: int = INTERPOLATION_ORIGIN_FPS
    target_fps: int = INTERPOLATION_TARGET_FPS


def _commerce() -> dict[str, Any]:
    return {
        "amount": 0,
        "benefit_type": INTERPOLATION_BENEFIT,
        "resource_id": "generate_video",
        "resource_id_type": "str",
        "resource_sub_type": "aigc",
    }


def build_interpolation_generate(
    job: InterpolationJob, *, region: Region, version: str, now_ms: int, new_id: IdFactory = new_uuid
) -> dict[str, Any]:
    """The generate body of video frame interpolation (`insert_frame`, §19.5)."""
    if job.duration_ms <= 0 or not job.vid:
        raise ValueError("interpolation needs a vid and a positive duration")
    submit_id = new_id()
    component_id = new_id()
    seconds = max(1, round(job.duration_ms / 1000))
    video_input: dict[str, Any] = {
        "type": "",
        "id": new_id(),
        "min_version": INTERPOLATION_MIN_VERSION,
        "prompt": "",
        "vid": job.vid,
        "lens_motion_type": "",
        "motion_speed": "",
        "template_id": 0,
        "v2v_opt": {
            "type": "",
            "id": new_id(),
            "min_version": INTERPOLATION_MIN_VERSION,
            "insert_frame": {
                "type": "",
                "id": new_id(),
                "enable": True,
                "target_fps": job.target_fps,
                "origin_fps": job.origin_fps,
                "duration_ms": job.duration_ms,
            },
        },
    }
    scenes = [
        {"type": "video", "scene": "BasicVideoGenerateButton", "modelReqKey": INTERPOLATION_ROOT_MODEL},
        {"type": "video", "scene": INTERPOLATION_SCENE, "videoDuration": seconds},
    ]
    metrics: dict[str, Any] = {
        "promptSource": "custom",
        "isDefaultSeed": 1,
        "originSubmitId": submit_id,
        "enterFrom": "click",
        "isRegenerate": False,
        "sceneOptions": dumps_compact(scenes),
    }
    if job.source is not None:
        metrics["originId"] = job.source.item_id
    gen_video: dict[str, Any] = {
        "type": "",
        "id": new_id(),
        "text_to_video_params": {
            "type": "",
            "id": new_id(),
            "video_gen_inputs": [video_input],
            "model_req_key": INTERPOLATION_ROOT_MODEL,
            "priority": 0,
        },
        "scene": "insert_frame",
        "video_task_extra": dumps_compact(metrics),
    }
    if job.source is not None:
        video_input["origin_history_id"] = job.source.history_id
        gen_video["video_ref_params"] = {
            "type": "",
            "id": new_id(),
            "generate_type": 0,
            "item_id": _numeric(job.source.item_id),
            "origin_history_id": _numeric(job.source.history_id),
        }
    component = {
        "type": "video_base_component",
        "id": component_id,
        "min_version": "1.0.0",
        "aigc_mode": "workbench",
        "metadata": component_metadata(now_ms, new_id),
        "generate_type": "gen_video",
        "abilities": {"type": "", "id": new_id(), "gen_video": gen_video},
        "process_type": 3,
    }
    draft = {
        "type": "draft",
        "id": new_id(),
        "min_version": INTERPOLATION_MIN_VERSION,
        "min_features": [],
        "is_from_tsn": True,
        "version": version,
        "main_component_id": component_id,
        "component_list": [component],
    }
    return {
        "extend": {
            "root_model": INTERPOLATION_ROOT_MODEL,
            "m_video_commerce_info": _commerce(),
            "m_video_commerce_info_list": [_commerce()],
        },
        "submit_id": submit_id,
        "metrics_extra": gen_video["video_task_extra"],
        "draft_content": dumps_compact(draft),
        "http_common_info": {"aid": constants(region).aid},
    }


def expansion_for_ratio(width: int, height: int, ratio: tuple[int, int], ratio_code: int) -> Expansion:
    """The per-side expansion that widens a `width`x`height` image to `ratio` (w, h) by growing the short
    dimension evenly on both sides. Raises ValueError when the image already has that ratio (nothing to add)."""
    if width <= 0 or height <= 0:
        raise ValueError("the source size is unknown")
    want = ratio[0] / ratio[1]
    have = width / height
    if abs(want - have) < 0.01:
        raise ValueError(f"the image already is {ratio[0]}:{ratio[1]}")
    if want > have:
        side = round((height * want / width - 1) / 2, 4)
        return Expansion(top=0.0, bottom=0.0, left=side, right=side, image_ratio=ratio_code)
    side = round((width / want / height - 1) / 2, 4)
    return Expansion(top=side, bottom=side, left=0.0, right=0.0, image_ratio=ratio_code)


# ---------------------------------------------------------------- catalogue: where each tool runs, what it costs


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """What is known about a tool: the regions it is measured in, and its charge in credits per image or clip
    (None: not measured; the upstream's `forecast_generate_cost` overestimates 4-12x, §19.10)."""

    regions: frozenset[Region]
    credits: int | None
    note: str


TOOL_INFO: dict[str, ToolInfo] = {
    "normal_hd": ToolInfo(frozenset({Region.CN}), 0, "2048² → 4096²; forecast 9, charged 0 (measured)"),
    "pro_hd": ToolInfo(frozenset({Region.CN}), 1, "→ 2160²; forecast 91, charged 1 (measured)"),
    "painting": ToolInfo(frozenset({Region.CN}), None, "4 images; forecast 28, charge not measured"),
    "super_resolution": ToolInfo(frozenset({Region.CN}), 0, "same size; free (measured)"),
    "insert_frame": ToolInfo(frozenset({Region.CN}), 0, "60 fps; benefit amount 0 (measured)"),
}
"""§19.5 and §19.10: every measurement is of a CN account; the international site's tools are not recorded."""


def check_region(tool: str, region: Region) -> None:
    """Raise ValueError naming the regions when `tool` is not known to run in `region`."""
    info = TOOL_INFO[tool]
    if region not in info.regions:
        where = ", ".join(sorted(r.value for r in info.regions))
        raise ValueError(f"the {tool} tool is only known to work in region(s) {where}, not {region.value}")


# ---------------------------------------------------------------- what a history item says about its source


def _dig(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def item_image_size(item: dict[str, Any]) -> tuple[int, int] | None:
    """Width and height of an image item (`image.large_images[0]`, §9.3), or None."""
    images = _dig(item, "image", "large_images")
    first = images[0] if isinstance(images, list) and images else None
    width, height = _dig(first, "width"), _dig(first, "height")
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return width, height
    return None


@dataclass(frozen=True, slots=True)
class ItemVideo:
    """What frame interpolation needs of a video item."""

    vid: str
    duration_ms: int
    fps: int


def item_video(item: dict[str, Any]) -> ItemVideo | None:
    """The vid, length (ms) and frame rate of a video item: `video.video_id` (§19.12), else a `vid` of a
    `transcoded_video` value; the length from `video.duration_ms` (5 s when absent); the rate from `video.fps`
    or a `transcoded_video` value (24 when absent). None without a vid."""
    video = _dig(item, "video")
    transcoded = _dig(video, "transcoded_video")
    values = [v for v in transcoded.values() if isinstance(v, dict)] if isinstance(transcoded, dict) else []
    vid = _dig(video, "video_id")
    if not isinstance(vid, str) or not vid:
        vid = next((v["vid"] for v in values if isinstance(v.get("vid"), str) and v["vid"]), None)
    if not vid:
        return None
    duration = _dig(video, "duration_ms")
    rates = [_dig(video, "fps"), *(v.get("fps") for v in values)]
    fps = next((r for r in rates if isinstance(r, int) and not isinstance(r, bool) and r > 0), INTERPOLATION_ORIGIN_FPS)
    return ItemVideo(vid, duration if isinstance(duration, int) and duration > 0 else 5000, fps)
