"""Pure builders of `aigc_draft/generate` bodies (docs/protocol.md §7, §8).

Randomness (uuids, seeds) and time come in as arguments so the builders are deterministic under test.
`metrics_extra` and `draft_content` are JSON *strings*, as the upstream requires.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..randomid import random_hex
from .catalog import ImageSize
from .regions import Region, constants

IdFactory = Callable[[], str]

# A made-up browser blob URL the web client puts in blend metrics; it names the Dreamina host even on CN (§7.4).
BLOB_URL_PREFIX = "blob:https://dreamina.capcut.com/"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
"""A random hex digit as the RFC 4122 variant digit (`10xx`) that keeps its two low bits."""


def new_uuid() -> str:
    """A fresh UUID v4 string, as the web client makes: `str(uuid.uuid4())` (16 random bytes with the version and
    RFC 4122 variant bits set), from `randomid.random_hex` (read in blocks) without building a `uuid.UUID` (a
    generate body takes nine)."""
    h = random_hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""One encoder for every compact dump (`json.dumps` with arguments builds a new one per call)."""


def dumps_compact(value: Any) -> str:
    """Compact JSON, non-ASCII kept: the form of the JSON-string fields (`metrics_extra`, `draft_content`), and
    of whole request bodies (`json.dumps(value, ensure_ascii=False, separators=(",", ":"))`, byte for byte)."""
    return _COMPACT.encode(value)


@dataclass(frozen=True, slots=True)
class DraftVersions:
    """Image draft version strings; config, since the upstream bumps them (§15; images 3.0.2 since 2026, §17.1)."""

    version: str = "3.0.2"
    min_version: str = "3.0.2"
    blend_min_version: str = "3.2.9"


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A committed ImageX image: its URI and, when known, the size and format ImageX read at commit."""

    uri: str
    width: int = 0
    height: int = 0
    format: str = ""


def image_payload(ref: ImageRef, new_id: IdFactory) -> dict[str, Any]:
    """The `image` object generate payloads carry for an uploaded image (blend inputs, video frames, omni)."""
    return {
        "type": "image",
        "id": new_id(),
        "source_from": "upload",
        "platform_type": 1,
        "name": "",
        "image_uri": ref.uri,
        "width": ref.width,
        "height": ref.height,
        "format": ref.format,
        "uri": ref.uri,
    }


@dataclass(frozen=True, slots=True)
class ImageJob:
    """Everything that decides a text-to-image or blend generate body."""

    model_key: str
    prompt: str
    size: ImageSize
    negative_prompt: str = ""
    sample_strength: float = 0.5
    intelligent_ratio: bool = False
    multi_image: bool = False
    # The number of images asked for (`n`); None = the model's default count, as before 2026 (§17.1).
    count: int | None = None
    # Blend only: the committed input images, in order.
    images: tuple[ImageRef, ...] = field(default_factory=tuple)

    @property
    def is_blend(self) -> bool:
        return bool(self.images)


def component_metadata(now_ms: int, new_id: IdFactory) -> dict[str, Any]:
    """The `metadata` object of a draft component (the same in image, video and post-edit drafts)."""
    return {
        "type": "",
        "id": new_id(),
        "created_platform": 3,
        "created_platform_version": "",
        "created_time_in_ms": str(now_ms),
        "created_did": "",
    }


def _core_param(job: ImageJob, new_id: IdFactory, versions: DraftVersions, seed: int | None) -> dict[str, Any]:
    prompt = "##" * len(job.images) + job.prompt if job.is_blend else job.prompt
    core: dict[str, Any] = {
        "type": "",
        "id": new_id(),
        "model": job.model_key,
        "prompt": prompt,
        "sample_strength": job.sample_strength,
        "large_image_info": {
            "type": "",
            "id": new_id(),
            "min_version": versions.min_version,
            "height": job.size.height,
            "width": job.size.width,
            "resolution_type": job.size.resolution_type,
        },
        "intelligent_ratio": job.intelligent_ratio,
    }
    if job.is_blend or not job.intelligent_ratio:
        core["image_ratio"] = job.size.ratio_code
    core["negative_prompt"] = job.negative_prompt
    if seed is not None:
        core["seed"] = seed
    return core


def _blend_abilities(job: ImageJob, core: dict[str, Any], new_id: IdFactory, versions: DraftVersions) -> dict[str, Any]:
    # Unlike the reference (which sends 0/0/""), the real size and format from the commit go along (§15).
    ability_list = [
        {
            "type": "",
            "id": new_id(),
            "name": "byte_edit",
            "image_uri_list": [image.uri],
            "image_list": [image_payload(image, new_id)],
            "strength": job.sample_strength,
        }
        for image in job.images
    ]
    blend: dict[str, Any] = {"type": "", "id": new_id()}
    if len(job.images) >= 2:
        blend["min_version"] = versions.blend_min_version
    blend.update(
        {
            "min_features": [],
            "core_param": core,
            "ability_list": ability_list,
            "prompt_placeholder_info_list": [
                {"type": "", "id": new_id(), "ability_index": i} for i in range(len(job.images))
            ],
            "postedit_param": {"type": "", "id": new_id(), "generate_type": 0},
        }
    )
    return {"type": "", "id": new_id(), "blend": blend, "gen_option": gen_option(job.count, new_id)}


def gen_option(count: int | None, new_id: IdFactory) -> dict[str, Any]:
    """The `gen_option` object; with a count it carries `gen_count` (§17.1)."""
    option: dict[str, Any] = {"type": "", "id": new_id()}
    if count is not None:
        option["gen_count"] = count
    option["generate_all"] = False
    return option


def build_image_generate(
    job: ImageJob,
    *,
    region: Region,
    versions: DraftVersions,
    now_ms: int,
    seed: int,
    new_id: IdFactory = new_uuid,
) -> dict[str, Any]:
    """The generate body for text-to-image (single or multi-image) or blend (when `job.images`)."""
    submit_id = new_id()
    component_id = new_id()
    core = _core_param(job, new_id, versions, None if job.is_blend else seed)
    if job.is_blend:
        abilities = _blend_abilities(job, core, new_id, versions)
    elif job.count is None:
        # No count asked: the pre-2026 shape, `gen_option` inside `generate`, which the upstream ignores (it
        # makes the model's default count): drop-in parity with the reference.
        generate = {"type": "", "id": new_id(), "core_param": core, "gen_option": gen_option(None, new_id)}
        abilities = {"type": "", "id": new_id(), "generate": generate}
    else:
        # The count is read only from `abilities.gen_option`, a sibling of `generate` (§17.1, measured).
        generate = {"type": "", "id": new_id(), "core_param": core}
        abilities = {"type": "", "id": new_id(), "generate": generate, "gen_option": gen_option(job.count, new_id)}
    draft = {
        "type": "draft",
        "id": new_id(),
        "min_version": versions.blend_min_version if job.is_blend else versions.min_version,
        "min_features": [],
        "is_from_tsn": True,
        "version": versions.version,
        "main_component_id": component_id,
        "component_list": [
            {
                "type": "image_base_component",
                "id": component_id,
                "min_version": versions.min_version,
                "aigc_mode": "workbench",
                "metadata": component_metadata(now_ms, new_id),
                "generate_type": "blend" if job.is_blend else "generate",
                "abilities": abilities,
            }
        ],
    }
    scene: dict[str, Any] = {
        "type": "image",
        "scene": "ImageMultiGenerate" if job.multi_image else "ImageBasicGenerate",
        "modelReqKey": job.model_key,
        "resolutionType": job.size.resolution_type,
        "abilityList": [
            {
                "abilityName": "byte_edit",
                "strength": job.sample_strength,
                "source": {"imageUrl": f"{BLOB_URL_PREFIX}{new_id()}"},
            }
            for _ in job.images
        ],
        "reportParams": {
            "enterSource": "generate",
            "vipSource": "generate",
            "extraVipFunctionKey": f"{job.model_key}-{job.size.resolution_type}",
            "useVipFunctionDetailsReporterHoc": True,
        },
    }
    if not job.multi_image:
        # The pre-2026 fixed value without a count; with one it must equal the count (§17.1, PR #28).
        scene["benefitCount"] = 4 if job.count is None else job.count
    metrics: dict[str, Any] = {
        "promptSource": "custom",
        "generateCount": 1,
        "enterFrom": "click",
        "sceneOptions": dumps_compact([scene]),
        "generateId": submit_id,
        "isRegenerate": False,
    }
    if job.multi_image:
        metrics.update({"templateId": "", "templateSource": "", "lastRequestId": "", "originRequestId": ""})
    return {
        "extend": {"root_model": job.model_key},
        "submit_id": submit_id,
        "metrics_extra": dumps_compact(metrics),
        "draft_content": dumps_compact(draft),
        "http_common_info": {"aid": constants(region).aid},
    }


def _scene(scene: str, w: int, h: int) -> dict[str, Any]:
    key = f"smart_crop-w:{w}-h:{h}" if scene == "smart_crop" else str(w)
    return {"scene": scene, "width": w, "height": h, "uniq_key": key, "format": "webp"}


def history_image_info(*, single: bool = True) -> dict[str, Any]:
    """The `image_info` block image polls carry (§9.1); `single` adds the text-to-image-only crops."""
    crops = [(360, 360), (480, 480), (720, 720), (720, 480)]
    if single:
        crops += [(360, 240), (240, 320), (480, 640)]
    scenes = [_scene("smart_crop", w, h) for w, h in crops]
    scenes += [_scene("normal", n, n) for n in (2400, 1080, 720, 480, 360)]
    return {"width": 2048, "height": 2048, "format": "webp", "image_scene_list": scenes}
