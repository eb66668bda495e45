"""The request fields of the video shapes gateways speak, read through their declarations (`fields.OPENAI_VIDEO`,
`fields.GATEWAY_VIDEO`) and mapped onto the fields of `/v1/async/videos/generations`, which the video parser
(`video_params.video_params`) then validates like any other video request.

- OpenAI Videos (`POST /v1/videos`, JSON or multipart): `seconds` becomes the model's nearest allowed
  `duration` (the longer on a tie), `size` "WxH" the nearest video `ratio` and the smallest of the model's
  resolutions whose short side covers it; `input_reference` (an uploaded file, a URL or `{"image_url": ...}`)
  is the first frame. `model` defaults to `sora-2`.
- new-api's unified `/v1/video/generations`: `duration`, `width`/`height` or `size`, `ratio`/`resolution`
  overriding what the size gives, `image` (or `image_url`: one http(s) URL, or a list of the first and last
  frame).

Each refusal is a 400 naming the field as the caller sent it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest
from ..upstream import catalog
from .fields import GATEWAY_VIDEO, MAX_FRAMES, OPENAI_VIDEO, VIDEO_RATIOS, Field, get_pixels, is_http_url
from .openai_compat import nearest_ratio

_SHORT_SIDE = {"480p": 480, "540p": 540, "720p": 720, "1080p": 1080, "2k": 1440, "4k": 2160}
_PIXELS_HINT = "e.g. 1280x720"


def nearest_duration(model: str, seconds: int) -> int:
    """The allowed duration of `model` nearest to `seconds` (the longer one on a tie); `seconds` itself for a
    model the table lacks (a key only discovery lists: the video parser checks it against discovery's list)."""
    if model not in catalog.VIDEO_MODELS:
        return seconds
    return min(catalog.allowed_durations(model), key=lambda d: (abs(d - seconds), -d))


def video_shape(width: int, height: int, model: str) -> tuple[str, str | None]:
    """The video ratio nearest to `width`:`height` and the smallest resolution `model` offers whose short side
    covers the request (its largest when none does; None for a model that takes no resolution)."""
    ratio = nearest_ratio(width, height, VIDEO_RATIOS)
    offered = sorted((r for r in catalog.video_resolutions(model) if r in _SHORT_SIDE), key=_SHORT_SIDE.__getitem__)
    if not offered:
        return ratio, None
    short = min(width, height)
    return ratio, next((r for r in offered if _SHORT_SIDE[r] >= short), offered[-1])


def _seconds(data: Mapping[str, Any], declared: Field) -> int | None:
    """A declared seconds field (a number, or a decimal string) rounded to whole seconds; None when absent."""
    if not declared.sent(data):
        return None
    seconds: float = declared.read(data)
    return round(seconds)


def _frame_urls(value: Any, name: str) -> list[str]:
    """http(s) URLs of the first (and last) frame image, refused under the field's name as sent."""
    values = value if isinstance(value, list) else [value]
    urls = [v.strip() for v in values if isinstance(v, str) and v.strip()]
    if len(urls) != len(values) or not all(is_http_url(u) for u in urls):
        raise BadRequest(
            f"'{name}' must be an http(s) image URL (or a list of 1 to {MAX_FRAMES}: first and last frame)",
            code="INVALID_PARAMETER",
        )
    return urls


def _shaped(fields: dict[str, Any], width: int, height: int, model: str) -> None:
    fields["ratio"], resolution = video_shape(width, height, model)
    if resolution is not None:
        fields["resolution"] = resolution


def openai_video_fields(data: Mapping[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    """`/v1/videos` fields (JSON or multipart) -> the video parser's fields."""
    body = OPENAI_VIDEO
    asked: str = body["model"].read(data)
    model = aliases.get(asked, asked)
    fields: dict[str, Any] = {"model": asked, "prompt": body["prompt"].read(data)}
    seconds = _seconds(data, body["seconds"])
    if seconds is not None:
        fields["duration"] = nearest_duration(model, seconds)
    size = body["size"].read(data)
    if size is not None:
        _shaped(fields, *get_pixels(size, body["size"].name, _PIXELS_HINT), model)
    declared = body["input_reference"]
    reference = declared.read(data)
    if isinstance(reference, Mapping):
        reference = reference.get("image_url") or reference.get("url")
    if isinstance(reference, str) and reference.strip():
        fields["file_paths"] = _frame_urls(reference, declared.name)
    elif reference not in (None, ""):
        fields[declared.name] = reference  # an uploaded file: the first frame
    return fields


def gateway_video_fields(data: Mapping[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    """new-api's `/v1/video/generations` body -> the video parser's fields."""
    body = GATEWAY_VIDEO
    asked: str = body["model"].read(data)
    model = aliases.get(asked, asked)
    named = body["model"].sent(data)
    # `model` only when sent: an unnamed request keeps the default's withdrawn-model fallback (VideoService).
    fields: dict[str, Any] = {"model": asked if named else None, "prompt": body["prompt"].read(data)}
    seconds = _seconds(data, body["duration"])
    if seconds is not None:
        fields["duration"] = nearest_duration(model, seconds)
    size = body["size"].read(data)
    if size is not None:  # instead of width and height
        _shaped(fields, *get_pixels(size, body["size"].name, _PIXELS_HINT), model)
    else:
        width, height = body["width"].read(data), body["height"].read(data)
        if width is not None and height is not None:
            _shaped(fields, width, height, model)
        elif width is not None or height is not None:
            raise BadRequest(
                "'width' and 'height' go together: send both, or 'size' (WIDTHxHEIGHT)", code="MISSING_PARAMETER"
            )
    for name in ("ratio", "resolution"):
        value = body[name].read(data)
        if value is not None:
            fields[name] = value
    declared = body["image"]
    image = declared.read(data)
    if image not in (None, "", []):
        fields["file_paths"] = _frame_urls(image, declared.given(data))
    return fields
