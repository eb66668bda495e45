"""Pure builders of video `aigc_draft/generate` bodies (docs/protocol.md §8.1–§8.4) and of the omni
`meta_list` from a prompt with `@name` references.

Randomness (uuids, seeds) and time come in as arguments; `metrics_extra`, `draft_content`, `sceneOptions`
and `video_task_extra` are JSON *strings*, as the upstream requires.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .catalog import OMNI_BENEFITS, video_benefit_type
from .payloads import IdFactory, ImageRef, component_metadata, dumps_compact, image_payload, new_uuid
from .regions import Region, constants

OMNI_FEATURE = "AIGC_Video_UnifiedEdit"
FPS = 24


@dataclass(frozen=True, slots=True)
class VideoVersions:
    """Draft version strings of video bodies (config: they change upstream)."""

    version: str = "3.3.9"  # draft version; also omni's min_version
    min_version: str = "3.0.5"  # first/last-frame draft and input min_version
    da_version: str = "3.3.28"  # a draft ("样片") model's draft and input min_version (§19.1)


@dataclass(frozen=True, slots=True)
class VideoRef:
    """A committed VOD video: its `vid`, size and duration in milliseconds."""

    vid: str
    width: int
    height: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class AudioRef:
    """A committed VOD audio (uploaded like a video, §17.10): its `vid`, duration in milliseconds and file name."""

    vid: str
    duration_ms: int
    name: str = ""


Material = ImageRef | VideoRef | AudioRef
MATERIAL_TYPES = {ImageRef: (1, "image"), VideoRef: (2, "video"), AudioRef: (3, "audio")}
"""`sceneOptions[0].materialTypes` code and `meta_type` of each material kind (§8.4, §17.10)."""


@dataclass(frozen=True, slots=True)
class FrameJob:
    """Text-to-video (no frames), image-to-video (first frame) or first+last frame."""

    model_key: str
    prompt: str
    ratio: str
    duration_s: int
    resolution: str | None = None  # only for the keys that take one (§6.5, §17.3)
    first_frame: ImageRef | None = None
    end_frame: ImageRef | None = None
    min_features: tuple[str, ...] = ()  # the model's draft features (§19.1: Seedance 2.5)
    draft_mode: bool = False  # a draft ("样片") model: is_draft_mode, min_version = da_version (§19.1)
    benefit: str | None = None  # the operator's benefit type ([upstream] video_benefits), else the table's


@dataclass(frozen=True, slots=True)
class TextPart:
    """Prompt text between references."""

    text: str


@dataclass(frozen=True, slots=True)
class RefPart:
    """An `@name` reference to material number `index`."""

    index: int


PromptPart = TextPart | RefPart


@dataclass(frozen=True, slots=True)
class OmniJob:
    """Omni-reference mode (Seedance 2.0 / 2.0 fast): materials in registration order (images, videos, audios)
    + the split prompt."""

    model_key: str
    duration_s: int
    materials: tuple[Material, ...]
    parts: tuple[PromptPart, ...] = field(default_factory=tuple)


def split_prompt(prompt: str, names: Mapping[str, int]) -> tuple[PromptPart, ...]:
    """Split `prompt` on `@name` references (longest names first) into text and reference parts (§8.3).

    A prompt without references gives one text part (also when empty).
    """
    usable = sorted((n for n in names if n), key=len, reverse=True)
    if not usable:
        return (TextPart(prompt),)
    pattern = re.compile("@(" + "|".join(re.escape(n) for n in usable) + ")")
    parts: list[PromptPart] = []
    pos = 0
    for match in pattern.finditer(prompt):
        if match.start() > pos:
            parts.append(TextPart(prompt[pos : match.start()]))
        parts.append(RefPart(names[match.group(1)]))
        pos = match.end()
    if pos < len(prompt):
        parts.append(TextPart(prompt[pos:]))
    return tuple(parts) or (TextPart(prompt),)


def _commerce(benefit: str, amount: float) -> dict[str, Any]:
    """One commerce object; `amount` is the pre-deduction of §19.1 (output seconds plus input-video seconds)."""
    return {
        "amount": int(amount) if float(amount).is_integer() else round(amount, 2),
        "benefit_type": benefit,
        "resource_id": "generate_video",
        "resource_id_type": "str",
        "resource_sub_type": "aigc",
    }


def _scene(model_key: str, duration_s: int, resolution: str | None, material_types: list[int]) -> dict[str, Any]:
    scene: dict[str, Any] = {"type": "video", "scene": "BasicVideoGenerateButton"}
    if resolution is not None:
        scene["resolution"] = resolution
    scene.update(
        {
            "modelReqKey": model_key,
            "videoDuration": duration_s,
            "materialTypes": material_types,
            "reportParams": {
                "enterSource": "generate",
                "vipSource": "generate",
                "extraVipFunctionKey": f"{model_key}-{resolution}" if resolution else model_key,
                "useVipFunctionDetailsReporterHoc": True,
            },
        }
    )
    return scene


def _draft(
    *,
    min_version: str,
    min_features: list[str],
    version: str,
    video_input: dict[str, Any],
    ratio: str,
    seed: int,
    model_key: str,
    metrics: str,
    now_ms: int,
    new_id: IdFactory,
) -> dict[str, Any]:
    component_id = new_id()
    return {
        "type": "draft",
        "id": new_id(),
        "min_version": min_version,
        "min_features": min_features,
        "is_from_tsn": True,
        "version": version,
        "main_component_id": component_id,
        "component_list": [
            {
                "type": "video_base_component",
                "id": component_id,
                "min_version": "1.0.0",
                "aigc_mode": "workbench",
                "metadata": component_metadata(now_ms, new_id),
                "generate_type": "gen_video",
                "abilities": {
                    "type": "",
                    "id": new_id(),
                    "gen_video": {
                        "id": new_id(),
                        "type": "",
                        "text_to_video_params": {
                            "type": "",
                            "id": new_id(),
                            "video_gen_inputs": [video_input],
                            "video_aspect_ratio": ratio,
                            "seed": seed,
                            "model_req_key": model_key,
                            "priority": 0,
                        },
                        "video_task_extra": metrics,
                    },
                },
                "process_type": 1,
            }
        ],
    }


def _outer(
    model_key: str,
    benefit: str,
    submit_id: str,
    metrics: str,
    draft: dict[str, Any],
    region: Region,
    amount: float,
) -> dict[str, Any]:
    return {
        "extend": {
            "root_model": model_key,
            "m_video_commerce_info": _commerce(benefit, amount),
            "m_video_commerce_info_list": [_commerce(benefit, amount)],
        },
        "submit_id": submit_id,
        "metrics_extra": metrics,
        "draft_content": dumps_compact(draft),
        "http_common_info": {"aid": constants(region).aid},
    }


def build_frame_video_generate(
    job: FrameJob,
    *,
    region: Region,
    versions: VideoVersions,
    now_ms: int,
    seed: int,
    new_id: IdFactory = new_uuid,
) -> dict[str, Any]:
    """The body for text-to-video, image-to-video and first+last frame (§8.2, §8.4). A draft ("样片") model
    (`job.draft_mode`) sends `is_draft_mode`, `min_version` = `versions.da_version` in the draft and the input
    and `metrics_extra.videoStage` "draft"; `job.min_features` go into the draft (§19.1)."""
    submit_id = new_id()
    min_version = versions.da_version if job.draft_mode else versions.min_version
    metrics_fields: dict[str, Any] = {
        "promptSource": "custom",
        "isDefaultSeed": 1,
        "originSubmitId": new_id(),  # differs from the body's submit_id in this mode (§8.2)
        "isRegenerate": False,
        "enterFrom": "use_bgimage_prompt",
        "position": "page_bottom_box",
        "functionMode": "first_last_frames",
        "sceneOptions": dumps_compact([_scene(job.model_key, job.duration_s, job.resolution, [])]),
    }
    if job.draft_mode:
        metrics_fields["videoStage"] = "draft"
    metrics = dumps_compact(metrics_fields)
    video_input: dict[str, Any] = {
        "type": "",
        "id": new_id(),
        "min_version": min_version,
        "prompt": job.prompt,
        "video_mode": 2,
        "fps": FPS,
        "duration_ms": job.duration_s * 1000,
    }
    if job.resolution is not None:
        video_input["resolution"] = job.resolution
    if job.draft_mode:
        video_input["is_draft_mode"] = True
    if job.first_frame is not None:
        video_input["first_frame_image"] = image_payload(job.first_frame, new_id)
    if job.end_frame is not None:
        video_input["end_frame_image"] = image_payload(job.end_frame, new_id)
    video_input["idip_meta_list"] = []
    draft = _draft(
        min_version=min_version,
        min_features=list(job.min_features),
        version=versions.version,
        video_input=video_input,
        ratio=job.ratio,
        seed=seed,
        model_key=job.model_key,
        metrics=metrics,
        now_ms=now_ms,
        new_id=new_id,
    )
    benefit = job.benefit or video_benefit_type(job.model_key, job.resolution)
    return _outer(job.model_key, benefit, submit_id, metrics, draft, region, job.duration_s)


def _material(ref: Material, new_id: IdFactory) -> dict[str, Any]:
    if isinstance(ref, ImageRef):
        info = image_payload(ref, new_id)
        return {"type": "", "id": new_id(), "material_type": "image", "image_info": info}
    if isinstance(ref, AudioRef):
        # No width, height or fps for audio (§17.10).
        audio = {
            "type": "audio",
            "id": new_id(),
            "source_from": "upload",
            "vid": ref.vid,
            "duration": ref.duration_ms,
            "name": ref.name,
        }
        return {"type": "", "id": new_id(), "material_type": "audio", "audio_info": audio}
    video = {
        "type": "video",
        "id": new_id(),
        "source_from": "upload",
        "name": "",
        "vid": ref.vid,
        "fps": 0,
        "width": ref.width,
        "height": ref.height,
        "duration": ref.duration_ms,
    }
    return {"type": "", "id": new_id(), "material_type": "video", "video_info": video}


def meta_list(job: OmniJob) -> list[dict[str, Any]]:
    """The `meta_list` of an omni job: text parts and material references (§8.3)."""
    out: list[dict[str, Any]] = []
    for part in job.parts or (TextPart(""),):
        if isinstance(part, TextPart):
            out.append({"meta_type": "text", "text": part.text})
        else:
            kind = MATERIAL_TYPES[type(job.materials[part.index])][1]
            out.append({"meta_type": kind, "text": "", "material_ref": {"material_idx": part.index}})
    return out


def build_omni_video_generate(
    job: OmniJob,
    *,
    region: Region,
    versions: VideoVersions,
    now_ms: int,
    seed: int,
    ratio: str = "1:1",
    omni_benefits: tuple[str, str] = OMNI_BENEFITS,
    new_id: IdFactory = new_uuid,
) -> dict[str, Any]:
    """The body for omni-reference mode (§8.3, §8.4); `submit_id` equals `originSubmitId` here; `omni_benefits`
    are the (pro, fast) benefit types (config, conflicting sources)."""
    submit_id = new_id()
    types = [MATERIAL_TYPES[type(m)][0] for m in job.materials]
    metrics = dumps_compact(
        {
            "position": "page_bottom_box",
            "isDefaultSeed": 1,
            "originSubmitId": submit_id,
            "isRegenerate": False,
            "enterFrom": "click",
            "functionMode": "omni_reference",
            "sceneOptions": dumps_compact([_scene(job.model_key, job.duration_s, None, types)]),
        }
    )
    video_input = {
        "type": "",
        "id": new_id(),
        "min_version": versions.version,
        "prompt": "",
        "video_mode": 2,
        "fps": FPS,
        "duration_ms": job.duration_s * 1000,
        "unified_edit_input": {
            "type": "",
            "id": new_id(),
            "material_list": [_material(m, new_id) for m in job.materials],
            "meta_list": meta_list(job),
        },
        "idip_meta_list": [],
    }
    draft = _draft(
        min_version=versions.version,
        min_features=[OMNI_FEATURE],
        version=versions.version,
        video_input=video_input,
        ratio=ratio,
        seed=seed,
        model_key=job.model_key,
        metrics=metrics,
        now_ms=now_ms,
        new_id=new_id,
    )
    benefit = video_benefit_type(job.model_key, omni=True, omni_benefits=omni_benefits)
    input_seconds = sum(m.duration_ms for m in job.materials if isinstance(m, VideoRef)) / 1000
    return _outer(job.model_key, benefit, submit_id, metrics, draft, region, job.duration_s + input_seconds)
