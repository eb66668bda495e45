"""Parsing of `/v1/videos/generations` fields, shared by the sync endpoint and its async twin.

`video_params(data)` takes the mapping of `forms.request_fields` (JSON values, or multipart strings and
`UploadedFile`s) and returns `VideoParams`, or raises BadRequest naming the field. Every limit that can be
checked before anything is uploaded or spent is checked here.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import BadRequest
from ..integers import NumberError, parse_int
from ..services.model_list import VideoChoice
from ..services.params import MediaSource, UploadedFile, VideoParams
from ..upstream import catalog
from .fields import (
    FRAME_MODE,
    MAX_FRAMES,
    OMNI_MODE,
    VIDEO,
    VIDEO_FILES,
    VIDEO_RATIOS,
    VIDEO_RESOLUTIONS,
    get_str,
    is_http_url,
)
from .params import check_model_kind

__all__ = ["FRAME_MODE", "OMNI_MODE", "VIDEO_RATIOS", "VIDEO_RESOLUTIONS", "video_params"]
OMNI_MODELS = ("jimeng-video-seedance-2.0", "jimeng-video-seedance-2.0-fast")
MAX_OMNI_IMAGES = 9
MAX_OMNI_VIDEOS = 3
MAX_OMNI_MATERIALS = 12  # images and videos
MAX_OMNI_AUDIOS = 3
"""Reference audio files per request: the web call's limit is not known (§17.10; an Agent-mode note says 10);
3, like videos, until a source says more."""

_FIELDS = {f.name: re.compile(re.escape(f.name) + r"(?:_([1-9][0-9]{0,2}))?") for f in VIDEO_FILES.fields}
_IMAGE_FIELD, _VIDEO_FIELD, _AUDIO_FIELD = _FIELDS["image_file"], _FIELDS["video_file"], _FIELDS["audio_file"]


def _bad(field: str, message: str, code: str = "INVALID_PARAMETER") -> BadRequest:
    return BadRequest(f"'{field}' {message}", code=code)


def resolution_models() -> list[str]:
    """The public models that take `resolution`."""
    return [name for name in catalog.VIDEO_MODELS if catalog.video_resolutions(name)]


def get_resolution(data: Mapping[str, Any], model: str, offered: tuple[str, ...] | None = None) -> str | None:
    """`resolution` among the ones `model` offers (`offered`, default the table's; its first by default); None
    for a model that takes none."""
    offered = catalog.video_resolutions(model) if offered is None else offered
    if not VIDEO["resolution"].sent(data):
        return offered[0] if offered else None
    if not offered:
        raise _bad(
            "resolution",
            f"is not supported by {model}; only {', '.join(resolution_models())} take it",
            code="UNSUPPORTED_PARAMETER",
        )
    value = get_str(data, "resolution")
    if value not in offered:
        raise _bad("resolution", f"must be one of {', '.join(offered)} for {model}, got {value!r}")
    return value


def get_duration(data: Mapping[str, Any], model: str, choice: VideoChoice | None = None) -> int:
    """`duration` in whole seconds, allowed for `model` (§6.4; `choice`: the durations merged with discovery).
    JSON integers and integral floats are accepted; a multipart string must be digits only ("5.5", "5.0" and
    "ten" are refused). Without one: 5 s when allowed, else discovery's default, else the first allowed."""
    allowed = catalog.allowed_durations(model) if choice is None else choice.durations
    value = data.get("duration")
    if value is None or value == "":
        if choice is None:
            return catalog.default_duration(model)
        return 5 if 5 in allowed else choice.default_duration or allowed[0]
    try:
        seconds = parse_int(value, "duration", low=0, high=10**6, floats=True)
    except NumberError:
        raise _bad("duration", f"must be a whole number of seconds, got {str(value)[:40]!r}") from None
    if seconds not in allowed:
        many = len(allowed) > 3
        choices = f"{allowed[0]} to {allowed[-1]}" if many else ", ".join(str(s) for s in allowed)
        spec = catalog.spec_of(model)
        note = f"; {spec.limit_note}" if spec is not None and spec.limit_note and seconds > allowed[-1] else ""
        raise _bad("duration", f"must be {choices} seconds for {model}, got {seconds}{note}")
    return seconds


def _url(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(field, "must be an http(s) URL or an uploaded file")
    url = value.strip()
    if not is_http_url(url):
        raise _bad(field, f"must be an http(s) URL, got {url[:60]!r}")
    return url


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list) else [value]


def _file_paths(data: Mapping[str, Any]) -> list[str]:
    for name in VIDEO["file_paths"].names:
        if name in data and data[name] not in (None, "", []):
            values = _as_list(data[name])
            return [_url(v, f"{name}[{i}]") for i, v in enumerate(values)]
    return []


def _frames(data: Mapping[str, Any]) -> tuple[MediaSource, ...]:
    files = [v for value in data.values() for v in _as_list(value) if isinstance(v, UploadedFile)]
    urls = _file_paths(data)
    for name in data:
        omni_only = _VIDEO_FIELD.fullmatch(name) or _AUDIO_FIELD.fullmatch(name)
        if omni_only or (_IMAGE_FIELD.fullmatch(name) and not _is_files(data[name])):
            raise _bad(name, f"is an {OMNI_MODE} field; set functionMode={OMNI_MODE} or send frames as file_paths")
    if files and urls:
        raise BadRequest(
            "send the frame images either as uploaded files or as file_paths URLs, not both", code="INVALID_PARAMETER"
        )
    frames = [MediaSource(f.field, file=f) for f in files] or [
        MediaSource(f"file_paths[{i}]", url=u) for i, u in enumerate(urls)
    ]
    if len(frames) > MAX_FRAMES:
        raise BadRequest(
            f"at most {MAX_FRAMES} frame images (first and last frame), got {len(frames)}", code="TOO_MANY_IMAGES"
        )
    return tuple(frames)


def _is_files(value: Any) -> bool:
    return all(isinstance(v, UploadedFile) for v in _as_list(value))


def _collect(data: Mapping[str, Any], base: str, extra_urls: list[str]) -> list[MediaSource]:
    """Materials of one kind in the §8.3 order: uploaded files in form order, then numbered URL fields,
    then a bare URL field, then `extra_urls` in the unused numbered slots."""
    pattern = _FIELDS[base]
    files: list[MediaSource] = []
    numbered: list[tuple[int, MediaSource]] = []
    bare: list[MediaSource] = []
    used: set[int] = set()
    for name, value in data.items():
        match = pattern.fullmatch(name)
        if match is None:
            continue
        number = int(match.group(1)) if match.group(1) else None
        if number is not None:
            used.add(number)
        for v in _as_list(value):
            if isinstance(v, UploadedFile):
                files.append(MediaSource(name, file=v))
            elif number is not None:
                numbered.append((number, MediaSource(name, url=_url(v, name))))
            else:
                bare.append(MediaSource(name, url=_url(v, name)))
    out = files + [s for _, s in sorted(numbered, key=lambda p: p[0])] + bare
    free = (n for n in itertools.count(1) if n not in used)
    for url in extra_urls:
        out.append(MediaSource(f"{base}_{next(free)}", url=url))
    return out


def _omni_materials(
    data: Mapping[str, Any],
) -> tuple[tuple[MediaSource, ...], tuple[MediaSource, ...], tuple[MediaSource, ...]]:
    stray = [
        name
        for name, value in data.items()
        if any(isinstance(v, UploadedFile) for v in _as_list(value))
        and not any(pattern.fullmatch(name) for pattern in _FIELDS.values())
    ]
    if stray:
        raise _bad(
            stray[0], "is not an omni_reference file field; name files image_file_N, video_file_N or audio_file_N"
        )
    images = _collect(data, "image_file", _file_paths(data))
    videos = _collect(data, "video_file", [])
    audios = _collect(data, "audio_file", [])
    total = len(images) + len(videos)
    if total > MAX_OMNI_MATERIALS:
        raise BadRequest(
            f"omni_reference takes at most {MAX_OMNI_MATERIALS} materials ({MAX_OMNI_IMAGES} images and "
            f"{MAX_OMNI_VIDEOS} videos), got {total}",
            code="TOO_MANY_MATERIALS",
        )
    if len(images) > MAX_OMNI_IMAGES:
        raise BadRequest(
            f"omni_reference takes at most {MAX_OMNI_IMAGES} images, got {len(images)}", code="TOO_MANY_IMAGES"
        )
    if len(videos) > MAX_OMNI_VIDEOS:
        raise BadRequest(
            f"omni_reference takes at most {MAX_OMNI_VIDEOS} videos, got {len(videos)}", code="TOO_MANY_VIDEOS"
        )
    if len(audios) > MAX_OMNI_AUDIOS:
        raise BadRequest(
            f"omni_reference takes at most {MAX_OMNI_AUDIOS} audio files, got {len(audios)}", code="TOO_MANY_AUDIOS"
        )
    if total == 0:
        what = "audio alone is not enough: add " if audios else ""
        raise BadRequest(
            f"omni_reference needs at least one image or video material: {what}image_file_1..9 or "
            "video_file_1..3 (files or URLs)",
            code="MISSING_MATERIALS",
        )
    return tuple(images), tuple(videos), tuple(audios)


VideoChooser = Callable[[str, bool], VideoChoice | None]
"""(model, named by the caller) -> the model merged with the caller's region's discovery (None: unknown there)."""


def video_params(
    data: Mapping[str, Any], *, aliases: Mapping[str, str] | None = None, choose: VideoChooser | None = None
) -> VideoParams:
    """Validate video generation fields. Raises BadRequest naming the field and what to send instead.
    `aliases` (`[models] aliases`) maps extra model names to catalogue ones. `choose` (the endpoints that know
    the caller's region) resolves the model against live discovery: a key only discovery lists is accepted,
    the default is replaced when withdrawn, and resolutions/durations are checked against the merged facts."""
    asked = VIDEO["model"].read(data)
    named = VIDEO["model"].sent(data)
    model = (aliases or {}).get(asked, asked)
    check_model_kind(asked, model, "video")
    choice = choose(model, named) if choose is not None else None
    if choice is not None:
        model = choice.name
    if model not in catalog.VIDEO_MODELS and choice is None:
        raise BadRequest(
            f"unknown video model '{asked}'; use one of: {', '.join(catalog.VIDEO_MODELS)}, "
            "or map the name to one of them with [models] aliases in the config",
            code="UNKNOWN_MODEL",
        )
    mode = VIDEO["function_mode"].read(data)
    omni = mode == OMNI_MODE
    if omni and model not in OMNI_MODELS:
        raise BadRequest(
            f"functionMode={OMNI_MODE} is only for {' and '.join(OMNI_MODELS)}, not {model}",
            code="UNSUPPORTED_MODE",
        )
    prompt: str = VIDEO["prompt"].read(data) or ""
    resolution = get_resolution(data, model, choice.resolutions if choice is not None else None)
    duration = get_duration(data, model, choice)
    ratio: str = VIDEO["ratio"].read(data)
    response_format: str = VIDEO["response_format"].read(data)
    if omni:
        images, videos, audios = _omni_materials(data)
        return VideoParams(
            model,
            prompt,
            ratio,
            resolution,
            duration,
            True,
            (),
            images,
            videos,
            response_format,
            audios=audios,
            model_named=named,
        )
    frames = _frames(data)
    if not frames and not prompt.strip():
        raise BadRequest("'prompt' is required for text-to-video", code="MISSING_PARAMETER")
    return VideoParams(
        model, prompt, ratio, resolution, duration, False, frames, (), (), response_format, model_named=named
    )
