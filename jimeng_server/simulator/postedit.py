"""Post-edit tools in the simulator: upscale (`normal_hd`, `pro_hd`), outpaint (`painting`), detail repair
(`super_resolution`) and video frame interpolation (`insert_frame`), as ../shared/upstream-protocol.md §19.5
describes them (PY, measured 2026-09-18/20).

This module keeps its OWN fact table (`TOOLS`, below) and reads bodies only by the §19.5 field names; it never
imports the client's builders or catalogue, so a mistake there is caught here.

What the simulator does:
- accepts one `image_base_component` whose `generate_type` is a tool, the ability of the same name with a
  `postedit_param` whose `generate_type` is the tool's integer, the component `gen_type` (absent for
  super_resolution), `extend.root_model` `high_aes_general_v50`, draft `min_version` 3.2.9; `sceneOptions` may be
  left out (only pro_hd sends one, scene `ImageProHD`);
- the source is `postedit_param.origin_image` (an image this account uploaded and committed) or
  `postedit_param.item_id` + `origin_history_id` (an item of a finished record). An item of a record of another
  account, or any `origin_image` for super_resolution, is accepted and then ends in status 30 (§19.5: "with an
  uploaded uri in `origin_image` it fails"); charged nothing (PY's later zero-charge runs);
- output: normal_hd doubles each side; pro_hd makes 2160 on the long side at "2k" (4320 at "4k", our guess);
  painting widens by `up_scale` then fits the long side into 4000 (2048² at 0.9 a side measured 4000²) and makes
  4 images unless `gen_option.gen_count` says otherwise; super_resolution keeps the size;
- prices (§19.5 / §19.10, measured charges): normal_hd 0, pro_hd 1, super_resolution 0, interpolation 0;
  painting's charge was not measured: the simulator's per-image price of a generate (our choice).
- interpolation: a `video_base_component` with `process_type 3`, `gen_video.scene "insert_frame"`, the input's
  `vid` (committed to VOD by this account, or the vid of one of its video items) and
  `v2v_opt.insert_frame{enable true, target_fps 60}`; root model `dreamina_seedance_40_mini`; benefit
  `video_frame_interpolation` amount 0. The new record's video keeps the clip's length at 60 fps.
Importing this module registers the validators (after `video.py`'s `gen_video` one, which it wraps).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from . import video
from .generate import (
    DRAFT_VALIDATORS,
    SCENELESS_TYPES,
    DraftContext,
    DraftValidator,
    GenerateInvalid,
    GenerateSpec,
    integer,
    obj,
    text,
)
from .scripts import Script, Step
from .web_api import SPEC_HOOKS, Call

if TYPE_CHECKING:
    from .app import Simulator


@dataclass(frozen=True, slots=True)
class ToolFact:
    """One tool as §19.5 records it."""

    gen_type: int | None  # component `gen_type`; None = must be absent
    postedit_type: int  # postedit_param.generate_type
    price: int | None  # credits charged; None = the per-image price of a generate (not measured)
    default_count: int = 1  # images made


TOOLS: dict[str, ToolFact] = {
    "normal_hd": ToolFact(13, 13, 0),
    "pro_hd": ToolFact(35, 35, 1),
    "painting": ToolFact(8, 8, None, default_count=4),
    "super_resolution": ToolFact(None, 2, 0),
}
ROOT_MODEL = "high_aes_general_v50"
DRAFT_MIN_VERSION = "3.2.9"
PRO_HD_LONG_SIDE = {"2k": 2160, "4k": 4320}
OUTPAINT_LONG_SIDE = 4000
FAILED = Script([Step(20, 0), Step(30, 0)], "postedit-failed")

INTERPOLATION_ROOT_MODEL = "dreamina_seedance_40_mini"
INTERPOLATION_BENEFIT = "video_frame_interpolation"
INTERPOLATION_MIN_VERSION = "3.1.0"
ORIGIN_FPS = 24


def _number(value: Any, where: str) -> str:
    """An id sent as a JSON number or a numeric string."""
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise GenerateInvalid(f"{where} must be a numeric id, got {value!r}")
    return str(value)


def validate_postedit(ctx: DraftContext) -> GenerateSpec:
    """Check an image post-edit body (see the module docstring); the spec names the source in `extra`."""
    where = "component_list[0]"
    component = ctx.component
    tool = text(component, "generate_type", where)
    fact = TOOLS[tool]
    if component.get("type") != "image_base_component":
        raise GenerateInvalid(f"{where}.type must be 'image_base_component'")
    if ctx.root_model != ROOT_MODEL:
        raise GenerateInvalid(f"extend.root_model must be {ROOT_MODEL!r} for {tool}, got {ctx.root_model!r}")
    if ctx.draft.get("min_version") != DRAFT_MIN_VERSION:
        raise GenerateInvalid(f"draft_content.min_version must be {DRAFT_MIN_VERSION} for {tool}")
    if component.get("gen_type") != fact.gen_type or ("gen_type" in component) != (fact.gen_type is not None):
        want = "absent" if fact.gen_type is None else fact.gen_type
        raise GenerateInvalid(f"{where}.gen_type must be {want} for {tool}, got {component.get('gen_type')!r}")
    abilities = obj(component, "abilities", where)
    ability = obj(abilities, tool, f"{where}.abilities")
    param = obj(ability, "postedit_param", f"abilities.{tool}")
    if integer(param, "generate_type", "postedit_param") != fact.postedit_type:
        raise GenerateInvalid(f"postedit_param.generate_type must be {fact.postedit_type} for {tool}")
    if ctx.metrics.get("generateId") != ctx.submit_id:
        raise GenerateInvalid("metrics_extra.generateId must equal submit_id")
    extra: dict[str, Any] = {"tool": tool}
    if tool == "pro_hd":
        for key, kind in (("hd_scene_type", str), ("original_image_strength", float), ("detail_strength", float)):
            if not isinstance(ability.get(key), kind):
                raise GenerateInvalid(f"abilities.pro_hd.{key} must be a {kind.__name__}")
        resolution = text(ability, "resolution_type", "abilities.pro_hd", empty=False)
        if resolution not in PRO_HD_LONG_SIDE:
            raise GenerateInvalid(f"abilities.pro_hd.resolution_type must be one of {sorted(PRO_HD_LONG_SIDE)}")
        if ctx.scene.get("scene") != "ImageProHD":
            raise GenerateInvalid("sceneOptions[0].scene must be ImageProHD for pro_hd")
        extra["resolution"] = resolution
    if tool == "super_resolution":
        core = obj(ability, "core_param", "abilities.super_resolution")
        if core.get("generate_type") != 0:
            raise GenerateInvalid("abilities.super_resolution.core_param.generate_type must be 0")
    if tool == "painting":
        up = obj(ability, "up_scale", "abilities.painting")
        sides = {}
        for side in ("top", "bottom", "left", "right"):
            value = up.get(side)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 3:
                raise GenerateInvalid(f"abilities.painting.up_scale.{side} must be a number from 0 to 3")
            sides[side] = float(value)
        if not any(sides.values()):
            raise GenerateInvalid("abilities.painting.up_scale widens no side")
        integer(up, "max_size", "up_scale")
        integer(up, "image_ratio", "up_scale")
        extra["up_scale"] = sides
    count = fact.default_count
    option = abilities.get("gen_option")
    if isinstance(option, dict) and "gen_count" in option:
        count = integer(option, "gen_count", "abilities.gen_option")
        if not 1 <= count <= fact.default_count:
            raise GenerateInvalid(f"abilities.gen_option.gen_count must be 1..{fact.default_count} for {tool}")
    if "origin_image" in param:
        image = obj(param, "origin_image", "postedit_param")
        uri = text(image, "image_uri", "postedit_param.origin_image", empty=False)
        if image.get("source_from") != "upload" or not ctx.is_committed(uri):
            raise GenerateInvalid(f"origin_image {uri} was not uploaded and committed by this account")
        extra["upload"] = uri
    elif "item_id" in param:
        extra["item_id"] = _number(param.get("item_id"), "postedit_param.item_id")
        extra["origin_history_id"] = _number(param.get("origin_history_id"), "postedit_param.origin_history_id")
    else:
        raise GenerateInvalid("postedit_param needs origin_image, or item_id + origin_history_id")
    return GenerateSpec(
        kind="image",
        generate_type=tool,
        model_key=ROOT_MODEL,
        prompt="",
        submit_id=ctx.submit_id,
        resolution_type="2k",
        count=count,
        extra=extra,
    )


def _source_size(sim: Simulator, call: Call, extra: dict[str, Any]) -> tuple[int, int] | None:
    """The size of the source image, or None when the source is not this account's (the task will fail)."""
    if "upload" in extra:
        slot = sim.uploads.by_uri.get(extra["upload"])
        info = slot.info if slot is not None else None
        return (info.width, info.height) if info is not None else (1024, 1024)
    record = sim.records.get(extra["origin_history_id"])
    item = extra["item_id"]
    if record is None or record.sessionid != call.account.sessionid or record.kind != "image":
        return None
    index = item[len(record.history_id) :]
    if not item.startswith(record.history_id) or not index.isdigit() or int(index) >= record.script.max_items:
        return None
    return record.width, record.height


def _fit(width: float, height: float, long_side: int) -> tuple[int, int]:
    scale = long_side / max(width, height)
    return round(width * scale), round(height * scale)


def postedit_outcome(sim: Simulator, call: Call, spec: GenerateSpec) -> GenerateSpec:
    """Size, price and timeline of a post-edit from the source it names (SPEC_HOOKS)."""
    tool = spec.extra["tool"]
    fact = TOOLS[tool]
    size = _source_size(sim, call, spec.extra)
    if size is None or (tool == "super_resolution" and "upload" in spec.extra):
        return replace(spec, cost=0, script=FAILED, width=1024, height=1024)
    w, h = size
    if tool == "normal_hd":
        w, h = w * 2, h * 2
    elif tool == "pro_hd":
        w, h = _fit(w, h, PRO_HD_LONG_SIDE[spec.extra["resolution"]])
    elif tool == "painting":
        up = spec.extra["up_scale"]
        w, h = _fit(w * (1 + up["left"] + up["right"]), h * (1 + up["top"] + up["bottom"]), OUTPAINT_LONG_SIDE)
    cost = fact.price if fact.price is not None else sim.cost_of("image", "2k", 0, spec.count)
    return replace(spec, cost=cost, width=w, height=h)


# ---------------------------------------------------------------- frame interpolation

_VIDEO_VALIDATOR: DraftValidator = DRAFT_VALIDATORS["gen_video"]


def validate_interpolation(ctx: DraftContext) -> GenerateSpec:
    """Check an `insert_frame` body (process_type 3); the spec carries the vid and the source's fps."""
    where = "component_list[0]"
    if ctx.root_model != INTERPOLATION_ROOT_MODEL:
        raise GenerateInvalid(f"extend.root_model must be {INTERPOLATION_ROOT_MODEL!r} for frame interpolation")
    if ctx.draft.get("min_version") != INTERPOLATION_MIN_VERSION:
        raise GenerateInvalid(f"draft_content.min_version must be {INTERPOLATION_MIN_VERSION} for frame interpolation")
    extend = obj(ctx.body, "extend", "body")
    commerce = obj(extend, "m_video_commerce_info", "extend")
    if commerce.get("benefit_type") != INTERPOLATION_BENEFIT or commerce.get("amount") != 0:
        raise GenerateInvalid(f"extend.m_video_commerce_info must be benefit {INTERPOLATION_BENEFIT} with amount 0")
    gen = obj(obj(ctx.component, "abilities", where), "gen_video", f"{where}.abilities")
    if gen.get("scene") != "insert_frame":
        raise GenerateInvalid("abilities.gen_video.scene must be 'insert_frame' with process_type 3")
    params = obj(gen, "text_to_video_params", "gen_video")
    inputs = params.get("video_gen_inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise GenerateInvalid("text_to_video_params.video_gen_inputs must hold exactly one input")
    vinput = inputs[0]
    vid = text(vinput, "vid", "video_gen_inputs[0]", empty=False)
    opt = obj(obj(vinput, "v2v_opt", "video_gen_inputs[0]"), "insert_frame", "v2v_opt")
    if opt.get("enable") is not True:
        raise GenerateInvalid("v2v_opt.insert_frame.enable must be true")
    target = integer(opt, "target_fps", "insert_frame")
    if target != 60:
        raise GenerateInvalid(f"v2v_opt.insert_frame.target_fps must be 60, got {target}")
    duration_ms = integer(opt, "duration_ms", "insert_frame")
    if duration_ms <= 0:
        raise GenerateInvalid("v2v_opt.insert_frame.duration_ms must be positive")
    extra: dict[str, Any] = {"vid": vid, "fps": target, "duration_s": max(1, round(duration_ms / 1000))}
    if "video_ref_params" in gen:
        ref = obj(gen, "video_ref_params", "gen_video")
        extra["item_id"] = _number(ref.get("item_id"), "video_ref_params.item_id")
        extra["origin_history_id"] = _number(ref.get("origin_history_id"), "video_ref_params.origin_history_id")
        if vinput.get("origin_history_id") != extra["origin_history_id"]:
            raise GenerateInvalid("video_gen_inputs[0].origin_history_id must be the source's history id as a string")
    return GenerateSpec(
        kind="video",
        generate_type="insert_frame",
        model_key=INTERPOLATION_ROOT_MODEL,
        prompt="",
        submit_id=ctx.submit_id,
        width=1280,
        height=720,
        duration_s=extra["duration_s"],
        extra=extra,
    )


def validate_gen_video(ctx: DraftContext) -> GenerateSpec:
    """`gen_video` bodies: frame interpolation (process_type 3) here, every other mode in `video.py`."""
    if ctx.component.get("process_type") == 3:
        return validate_interpolation(ctx)
    return _VIDEO_VALIDATOR(ctx)


def video_vid(history_id: str, index: int) -> str:
    """The vid of a simulated video item (its `video.video_id`)."""
    return f"v{history_id}{index:02d}"


def interpolation_outcome(sim: Simulator, call: Call, spec: GenerateSpec) -> GenerateSpec:
    """A clip this account owns (an uploaded vid, or the vid of one of its video items) is interpolated for free;
    anything else fails after acceptance."""
    vid = spec.extra["vid"]
    owned = sim.uploads.committed_by(vid, call.account.sessionid)
    if "origin_history_id" in spec.extra:
        record = sim.records.get(spec.extra["origin_history_id"])
        item = spec.extra["item_id"]
        owned = (
            record is not None
            and record.sessionid == call.account.sessionid
            and record.kind == "video"
            and item.startswith(record.history_id)
            and vid == video_vid(record.history_id, int(item[len(record.history_id) :] or 0))
        )
        if owned and record is not None:
            spec = replace(spec, extra={**spec.extra, "duration_s": record.extra.get("duration_s", 5)})
    extra = {**spec.extra, "origin_fps": ORIGIN_FPS}
    return replace(spec, cost=0, extra=extra, script=None if owned else FAILED)


for _tool in TOOLS:
    DRAFT_VALIDATORS[_tool] = validate_postedit
    SPEC_HOOKS[_tool] = postedit_outcome
SCENELESS_TYPES.update(t for t in TOOLS if t != "pro_hd")
DRAFT_VALIDATORS["gen_video"] = validate_gen_video
SPEC_HOOKS["insert_frame"] = interpolation_outcome
assert video.validate_video is _VIDEO_VALIDATOR  # this module wraps video.py's validator, imported first
