"""Image-to-image ("blend") generate validation (docs/protocol.md §7.2–7.4, §14.13).

With N input images: the draft `min_version` is the blend one (3.2.9); `abilities` holds `blend` and, as its
sibling, `gen_option`; `blend.min_version` is present iff N >= 2; `ability_list` has N `byte_edit` entries, each
naming one image URI consistently; `prompt_placeholder_info_list` has `ability_index` 0..N-1; the prompt starts
with exactly 2×N `#`; `core_param` has `image_ratio` and no `seed`; `sceneOptions[0].abilityList` has N entries;
every URI was uploaded and committed by the calling account. Model and size rules are text-to-image's; the
image count is read from `abilities.gen_option.gen_count` as in text-to-image (§17.1).
Importing this module registers the validator.
"""

from __future__ import annotations

from typing import Any

from .facts import BLEND_DEFAULT_COUNT
from .generate import (
    DRAFT_VALIDATORS,
    DraftContext,
    GenerateInvalid,
    GenerateSpec,
    check_image_model,
    check_image_size,
    image_count,
    obj,
    text,
)

BLEND_MIN_VERSION = "3.2.9"
MAX_BLEND_IMAGES = 10


def _ability_uri(ability: Any, n: int) -> str:
    where = f"blend.ability_list[{n}]"
    if not isinstance(ability, dict) or ability.get("name") != "byte_edit":
        raise GenerateInvalid(f"{where} must be an object named 'byte_edit'")
    uris = ability.get("image_uri_list")
    images = ability.get("image_list")
    if not (isinstance(uris, list) and len(uris) == 1 and isinstance(uris[0], str) and uris[0]):
        raise GenerateInvalid(f"{where}.image_uri_list must hold exactly one URI")
    if not (isinstance(images, list) and len(images) == 1 and isinstance(images[0], dict)):
        raise GenerateInvalid(f"{where}.image_list must hold exactly one image")
    image = images[0]
    uri = uris[0]
    if image.get("image_uri") != uri or image.get("uri") != uri:
        raise GenerateInvalid(f"{where}.image_list[0].image_uri and .uri must equal image_uri_list[0]")
    if image.get("type") != "image" or image.get("source_from") != "upload":
        raise GenerateInvalid(f"{where}.image_list[0] must be type 'image' with source_from 'upload'")
    strength = ability.get("strength")
    if not isinstance(strength, int | float) or isinstance(strength, bool):
        raise GenerateInvalid(f"{where}.strength must be a number")
    return uri


def validate_blend(ctx: DraftContext) -> GenerateSpec:
    """Check a blend body; the spec carries the input image URIs."""
    where = "component_list[0]"
    if ctx.component.get("type") != "image_base_component":
        raise GenerateInvalid(f"{where}.type must be 'image_base_component'")
    if ctx.draft.get("min_version") != BLEND_MIN_VERSION:
        raise GenerateInvalid(f"draft_content.min_version must be {BLEND_MIN_VERSION} in blend")
    abilities = obj(ctx.component, "abilities", where)
    blend = obj(abilities, "blend", f"{where}.abilities")
    obj(abilities, "gen_option", f"{where}.abilities")  # a sibling of blend, not inside it (it holds gen_count)
    if "gen_option" in blend:
        raise GenerateInvalid("gen_option must be a sibling of blend, not inside it")
    core = obj(blend, "core_param", "abilities.blend")
    abilities_list = blend.get("ability_list")
    if not isinstance(abilities_list, list) or not 1 <= len(abilities_list) <= MAX_BLEND_IMAGES:
        raise GenerateInvalid(f"blend.ability_list must hold 1..{MAX_BLEND_IMAGES} entries")
    count = len(abilities_list)
    uris = [_ability_uri(a, n) for n, a in enumerate(abilities_list)]
    if ("min_version" in blend) != (count >= 2) or blend.get("min_version", BLEND_MIN_VERSION) != BLEND_MIN_VERSION:
        raise GenerateInvalid(f"blend.min_version must be {BLEND_MIN_VERSION} with 2+ images and absent with 1")
    placeholders = blend.get("prompt_placeholder_info_list")
    indexes = [p.get("ability_index") if isinstance(p, dict) else None for p in placeholders or []]
    if not isinstance(placeholders, list) or indexes != list(range(count)):
        raise GenerateInvalid(f"blend.prompt_placeholder_info_list ability_index must run 0..{count - 1}")
    model, fact = check_image_model(ctx, core)
    prompt = text(core, "prompt", "core_param")
    hashes = "#" * (2 * count)
    if not prompt.startswith(hashes) or prompt[len(hashes) : len(hashes) + 1] == "#":
        raise GenerateInvalid(f"core_param.prompt must start with exactly {2 * count} '#' for {count} image(s)")
    if "seed" in core:
        raise GenerateInvalid("core_param.seed is not sent in blend")
    width, height, resolution_type = check_image_size(ctx, core, model, fact, blend=True)
    scene_abilities = ctx.scene.get("abilityList")
    if not isinstance(scene_abilities, list) or len(scene_abilities) != count:
        raise GenerateInvalid(f"sceneOptions[0].abilityList must have {count} entries")
    if ctx.scene.get("scene") != "ImageBasicGenerate" or "benefitCount" not in ctx.scene:
        raise GenerateInvalid("sceneOptions[0] must be scene ImageBasicGenerate with benefitCount in blend")
    if ctx.metrics.get("generateId") != ctx.submit_id:
        raise GenerateInvalid("metrics_extra.generateId must equal submit_id")
    for uri in uris:
        if not ctx.is_committed(uri):
            raise GenerateInvalid(f"image_uri {uri} was not uploaded and committed by this account")
    return GenerateSpec(
        kind="image",
        generate_type="blend",
        model_key=model,
        prompt=prompt,
        submit_id=ctx.submit_id,
        width=width,
        height=height,
        resolution_type=resolution_type,
        count=image_count(ctx, abilities, fact, BLEND_DEFAULT_COUNT),
        image_uris=tuple(uris),
    )


DRAFT_VALIDATORS["blend"] = validate_blend
