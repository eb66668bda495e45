"""Validation of `POST /mweb/v1/aigc_draft/generate` bodies (docs/protocol.md §7, §8, §14.12–14).

`validate_generate` checks the outer body and the parts every mode shares, then hands the draft's first component
to the validator registered for its `generate_type` in `DRAFT_VALIDATORS` ("generate" = text-to-image today;
"blend" and "gen_video" validators are added by later issues as separate functions). Any violation raises
`GenerateInvalid`, answered as ret "4002" with the message as errmsg, so a client author sees what is wrong.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..upstream.regions import Region, constants
from .checks import version_tuple
from .facts import INVALID_PARAMETER, ImageFact, accepted_sizes, discovered_image_fact, image_fact
from .scripts import Script


class GenerateInvalid(ValueError):
    """The generate body breaks the protocol; the message names the problem. Answered with `ret` / `errmsg`:
    "4002" for the shape checks of §14.13."""

    ret = "4002"
    errmsg = "param error"


class InvalidParameter(GenerateInvalid):
    """A body that breaks a fact of `facts.py` (model, count, benefit type, draft field): the upstream's real
    answer, ret 1000 "invalid parameter" (sample cn_ret1000_invalid_parameter; §19.1 NT)."""

    ret, errmsg = INVALID_PARAMETER


@dataclass(frozen=True, slots=True)
class GenerateSpec:
    """What a valid generate body asks for: enough to create, price and render the record."""

    kind: str  # "image" or "video"
    generate_type: str
    model_key: str
    prompt: str
    submit_id: str
    width: int = 0
    height: int = 0
    resolution_type: str = ""
    duration_s: int = 0
    count: int = 1  # images made (and billed)
    extra: dict[str, Any] = field(default_factory=dict)
    image_uris: Sequence[str] = ()  # uploaded inputs the body references (already checked for ownership)
    cost: int | None = None  # credits charged when not the per-image / per-second price (post-edit tools)
    script: Script | None = None  # the timeline when the body decides it (a post-edit bound to fail)


@dataclass(frozen=True, slots=True)
class DraftContext:
    """The decoded parts of a generate body handed to a mode validator."""

    body: dict[str, Any]
    region: Region
    sessionid: str
    submit_id: str
    root_model: str
    metrics: dict[str, Any]
    scene: dict[str, Any]  # sceneOptions[0]
    draft: dict[str, Any]
    component: dict[str, Any]  # draft.component_list[0]
    is_committed: Callable[[str], bool] = lambda _uri: False  # uploaded + committed by this account?
    extra_image_keys: Mapping[str, str] = field(default_factory=dict)  # keys only discovery lists -> names


DraftValidator = Callable[[DraftContext], GenerateSpec]

SCENELESS_TYPES: set[str] = set()
"""Component `generate_type`s whose `metrics_extra` may leave out `sceneOptions` (most post-edit tools, §19.5);
their validator gets an empty `scene`."""


# ---------------------------------------------------------------- small typed accessors


def obj(container: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """`container[key]` as a JSON object, else GenerateInvalid naming `where.key`."""
    value = container.get(key)
    if not isinstance(value, dict):
        raise GenerateInvalid(f"{where}.{key} must be an object, got {type(value).__name__}")
    return value


def text(container: dict[str, Any], key: str, where: str, *, empty: bool = True) -> str:
    """`container[key]` as a string (non-empty unless `empty`)."""
    value = container.get(key)
    if not isinstance(value, str) or (not empty and not value):
        raise GenerateInvalid(f"{where}.{key} must be a {'' if empty else 'non-empty '}string, got {value!r}")
    return value


def integer(container: dict[str, Any], key: str, where: str) -> int:
    """`container[key]` as an integer (bool refused)."""
    value = container.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise GenerateInvalid(f"{where}.{key} must be an integer, got {value!r}")
    return value


def json_string(container: dict[str, Any], key: str, where: str) -> Any:
    """`container[key]` must be a *string* holding JSON (double encoding); return the decoded value."""
    value = container.get(key)
    if not isinstance(value, str):
        raise GenerateInvalid(f"{where}.{key} must be a JSON string (serialized), got {type(value).__name__}")
    try:
        return json.loads(value)
    except ValueError as exc:
        raise GenerateInvalid(f"{where}.{key} is not valid JSON: {exc}") from None


def is_uuid(value: object) -> bool:
    """True for a 36-character dashed UUID string."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- outer body


def validate_generate(
    body: Any,
    region: Region,
    sessionid: str,
    validators: dict[str, DraftValidator] | None = None,
    is_committed: Callable[[str], bool] | None = None,
    extra_image_keys: Mapping[str, str] | None = None,
) -> GenerateSpec:
    """Check a generate body for `region` and return its spec; raise GenerateInvalid on any violation.

    `is_committed(uri)` tells mode validators whether this account uploaded and committed an image URI.
    """
    if not isinstance(body, dict):
        raise GenerateInvalid("body must be a JSON object")
    submit_id = body.get("submit_id")
    if not is_uuid(submit_id):
        raise GenerateInvalid(f"submit_id must be a UUID string, got {submit_id!r}")
    assert isinstance(submit_id, str)
    root_model = text(obj(body, "extend", "body"), "root_model", "extend", empty=False)
    aid = obj(body, "http_common_info", "body").get("aid")
    if aid != constants(region).aid:
        raise GenerateInvalid(f"http_common_info.aid must be the number {constants(region).aid}, got {aid!r}")
    metrics = json_string(body, "metrics_extra", "body")
    if not isinstance(metrics, dict):
        raise GenerateInvalid("metrics_extra must encode a JSON object")
    draft = json_string(body, "draft_content", "body")
    if not isinstance(draft, dict):
        raise GenerateInvalid("draft_content must encode a JSON object")
    if draft.get("type") != "draft":
        raise GenerateInvalid(f"draft_content.type must be 'draft', got {draft.get('type')!r}")
    components = draft.get("component_list")
    if not isinstance(components, list) or not components or not isinstance(components[0], dict):
        raise GenerateInvalid("draft_content.component_list must be a non-empty array of objects")
    component = components[0]
    for where, value in (
        ("draft_content.version", draft.get("version")),
        ("draft_content.min_version", draft.get("min_version")),
        ("component_list[0].min_version", component.get("min_version")),
    ):
        if not isinstance(value, str) or version_tuple(value) is None:
            raise GenerateInvalid(f"{where} must be a dotted version string such as '3.0.2', got {value!r}")
    if draft.get("main_component_id") != component.get("id") or not is_uuid(component.get("id")):
        raise GenerateInvalid("draft_content.main_component_id must equal component_list[0].id (a UUID)")
    generate_type = component.get("generate_type")
    if "sceneOptions" in metrics or generate_type not in SCENELESS_TYPES:
        scenes = json_string(metrics, "sceneOptions", "metrics_extra")
        if not isinstance(scenes, list) or not scenes or not isinstance(scenes[0], dict):
            raise GenerateInvalid("metrics_extra.sceneOptions must encode a non-empty JSON array of objects")
    else:
        scenes = [{}]
    table = DRAFT_VALIDATORS if validators is None else validators
    validator = table.get(generate_type) if isinstance(generate_type, str) else None
    if validator is None:
        raise GenerateInvalid(
            f"component_list[0].generate_type {generate_type!r} is not supported; expected one of {sorted(table)}"
        )
    ctx = DraftContext(body, region, sessionid, submit_id, root_model, metrics, scenes[0], draft, component)
    if is_committed is not None:
        ctx = dataclasses.replace(ctx, is_committed=is_committed)
    if extra_image_keys:
        ctx = dataclasses.replace(ctx, extra_image_keys=extra_image_keys)
    return validator(ctx)


# ---------------------------------------------------------------- text-to-image ("generate")


def image_count(ctx: DraftContext, abilities: dict[str, Any], fact: ImageFact, default: int) -> int:
    """How many images the body makes (§17.1, §19.6): `abilities.gen_option.gen_count`, a sibling of `generate` /
    `blend`. A count anywhere else is ignored without an error, like the upstream does: the model's default
    count is made (and billed). With a count, `sceneOptions[0].benefitCount` must equal it. A key with a
    `forced_count` (mj82) makes that many whatever is asked (§19.6, measured); a count the key does not offer
    is refused with ret 1000."""
    option = abilities.get("gen_option")
    if not isinstance(option, dict) or "gen_count" not in option:
        return fact.forced_count or default
    count = integer(option, "gen_count", "abilities.gen_option")
    if count not in fact.counts:
        raise InvalidParameter(
            f"abilities.gen_option.gen_count {count} is not offered by {fact.key}; allowed: {fact.counts}"
        )
    if option.get("generate_all") is not False or option.get("type") != "" or not is_uuid(option.get("id")):
        raise GenerateInvalid("abilities.gen_option must have type '', a UUID id and generate_all false")
    if ctx.scene.get("benefitCount") != count:
        raise GenerateInvalid(
            f"sceneOptions[0].benefitCount must equal gen_option.gen_count ({count}), got "
            f"{ctx.scene.get('benefitCount')!r}"
        )
    return fact.forced_count or count


def check_image_model(ctx: DraftContext, core: dict[str, Any]) -> tuple[str, ImageFact]:
    """`core_param.model` == `extend.root_model` == `sceneOptions[0].modelReqKey`, served in the region.

    Returns the upstream key and its facts (`facts.IMAGE_FACTS`, or the assumed ones of a key only discovery
    lists).
    """
    model = text(core, "model", "core_param", empty=False)
    req_key = ctx.scene.get("modelReqKey")
    if not (ctx.root_model == model == req_key):
        raise GenerateInvalid(
            f"extend.root_model ({ctx.root_model!r}), core_param.model ({model!r}) and "
            f"sceneOptions[0].modelReqKey ({req_key!r}) must be the same upstream key"
        )
    fact = image_fact(model, ctx.region)
    if fact is None and model in ctx.extra_image_keys:
        fact = discovered_image_fact(model)
    if fact is None:
        raise GenerateInvalid(f"image model key {model!r} is not served in region {ctx.region.value}")
    return model, fact


def check_image_size(
    ctx: DraftContext, core: dict[str, Any], model: str, fact: ImageFact, *, blend: bool
) -> tuple[int, int, str]:
    """`large_image_info` and `image_ratio` against the size table (§6.2); returns width, height, resolution.

    `image_ratio` is left out exactly when `intelligent_ratio` is true, except in blend where it is always sent.
    """
    large = obj(core, "large_image_info", "core_param")
    width = integer(large, "width", "large_image_info")
    height = integer(large, "height", "large_image_info")
    resolution_type = text(large, "resolution_type", "large_image_info")
    intelligent = core.get("intelligent_ratio")
    if not isinstance(intelligent, bool):
        raise GenerateInvalid("core_param.intelligent_ratio must be a boolean")
    if intelligent and not fact.intelligent_ratio:
        raise GenerateInvalid(f"core_param.intelligent_ratio must be false for model {model!r}")
    sizes = accepted_sizes(fact, ctx.region)
    if intelligent and not blend:
        if "image_ratio" in core:
            raise GenerateInvalid("core_param.image_ratio must be left out when intelligent_ratio is true")
        if not any(k[0] == width and k[1] == height and k[3] == resolution_type for k in sizes):
            raise GenerateInvalid(
                f"large_image_info {width}x{height} {resolution_type!r} is not a size of model {model!r}"
            )
    else:
        if "image_ratio" not in core:
            rule = "in blend" if blend else "when intelligent_ratio is false"
            raise GenerateInvalid(f"core_param.image_ratio is required {rule}")
        ratio_code = integer(core, "image_ratio", "core_param")
        if (width, height, ratio_code, resolution_type) not in sizes:
            raise GenerateInvalid(
                f"large_image_info {width}x{height} {resolution_type!r} with image_ratio {ratio_code} "
                f"does not match the size table of model {model!r} in region {ctx.region.value}"
            )
    return width, height, resolution_type


def validate_text_to_image(ctx: DraftContext) -> GenerateSpec:
    """§7.2–7.5: single and multi-image text-to-image."""
    where = "component_list[0]"
    if ctx.component.get("type") != "image_base_component":
        raise GenerateInvalid(f"{where}.type must be 'image_base_component'")
    abilities = obj(ctx.component, "abilities", where)
    generate = obj(abilities, "generate", f"{where}.abilities")
    core = obj(generate, "core_param", "abilities.generate")
    model, fact = check_image_model(ctx, core)
    prompt = text(core, "prompt", "core_param")
    integer(core, "seed", "core_param")  # text-to-image always sends a seed (§7.2)

    scene = ctx.scene.get("scene")
    if scene == "ImageBasicGenerate":
        if "benefitCount" not in ctx.scene:
            raise GenerateInvalid("sceneOptions[0].benefitCount is required for scene ImageBasicGenerate")
    elif scene == "ImageMultiGenerate":
        if "benefitCount" in ctx.scene:
            raise GenerateInvalid("sceneOptions[0].benefitCount must be left out for scene ImageMultiGenerate")
        if not fact.multi_image:
            raise GenerateInvalid(f"scene ImageMultiGenerate is not offered by {model!r}")
    else:
        raise GenerateInvalid(f"sceneOptions[0].scene must be ImageBasicGenerate or ImageMultiGenerate, got {scene!r}")
    if ctx.metrics.get("generateId") != ctx.submit_id:
        raise GenerateInvalid("metrics_extra.generateId must equal submit_id")

    width, height, resolution_type = check_image_size(ctx, core, model, fact, blend=False)
    multi = scene == "ImageMultiGenerate"  # story mode: 4 images (§7.5)
    count = 4 if multi else image_count(ctx, abilities, fact, fact.default_count)
    return GenerateSpec(
        kind="image",
        generate_type="generate",
        model_key=model,
        prompt=prompt,
        submit_id=ctx.submit_id,
        width=width,
        height=height,
        resolution_type=resolution_type,
        count=count,
        extra={"scene": scene},
    )


DRAFT_VALIDATORS: dict[str, DraftValidator] = {
    "generate": validate_text_to_image,
}
