"""Parsing and validation of generation request fields, shared by each sync endpoint and its async twin.

Fields arrive from JSON (typed) or multipart forms (strings); both go through the same functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest
from ..integers import NumberError, parse_int
from ..services.params import ImageParams
from ..upstream import catalog
from .openai_compat import size_shape

RESPONSE_FORMATS = ("url", "b64_json")
MAX_PROMPT_CHARS = 8000


def _bad(field: str, message: str) -> BadRequest:
    return BadRequest(f"'{field}' {message}", code="INVALID_PARAMETER")


def get_str(data: Mapping[str, Any], name: str, default: str | None = None, *, required: bool = False) -> str | None:
    """A string field; numbers are refused rather than silently converted."""
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip() and not required):
        if required:
            raise BadRequest(f"'{name}' is required", code="MISSING_PARAMETER")
        return default
    if not isinstance(value, str):
        raise _bad(name, f"must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise BadRequest(f"'{name}' must not be empty", code="MISSING_PARAMETER")
    return value


def get_bool(data: Mapping[str, Any], name: str, default: bool) -> bool:
    """A boolean field; multipart strings "true"/"false"/"1"/"0" are accepted."""
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "false", "0"):
        return value.strip().lower() in ("true", "1")
    raise _bad(name, f"must be true or false, got {value!r}")


def get_float(data: Mapping[str, Any], name: str, default: float, *, low: float, high: float) -> float:
    """A finite number field within [low, high]; multipart strings are parsed as floats."""
    value = data.get(name)
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | str)
        or (isinstance(value, str) and not value.isascii())
    ):
        raise _bad(name, "must be a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise _bad(name, f"must be a number between {low:g} and {high:g}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise _bad(name, f"must be a number between {low:g} and {high:g}")
    return number


def get_count(data: Mapping[str, Any], name: str, *, high: int) -> int | None:
    """A whole number in [1, high], or None when absent (see `get_int`)."""
    value = data.get(name)
    if value is None or value == "":
        return None
    return get_int(data, name, low=1, high=high)


def get_int(data: Mapping[str, Any], name: str, *, low: int, high: int) -> int:
    """A whole number field in [low, high] (`integers.parse_int`: JSON integers and integral floats, multipart
    strings of ASCII digits); 400 INVALID_PARAMETER naming the field otherwise."""
    try:
        return parse_int(data.get(name), name, low=low, high=high, floats=True)
    except NumberError as exc:
        raise BadRequest(str(exc), code="INVALID_PARAMETER") from None


def get_choice(data: Mapping[str, Any], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = get_str(data, name, default)
    assert value is not None
    if value not in choices:
        raise _bad(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


_ENDPOINTS = {
    "image": "POST /v1/images/generations (or /v1/async/images/generations)",
    "video": "POST /v1/videos/generations (or /v1/async/videos/generations)",
}


def check_model_kind(asked: str, model: str, kind: str) -> None:
    """Raise 400 WRONG_ENDPOINT when `model` (the catalogue name `asked` maps to) is a model of the other kind
    than the endpoint's `kind` ("image" or "video"), naming the endpoint that takes it."""
    other = "video" if kind == "image" else "image"
    if model in (catalog.VIDEO_MODELS if other == "video" else catalog.IMAGE_MODELS):
        raise BadRequest(
            f"'{asked}' is a {other} model, and this endpoint makes {kind}s: send the request to "
            f"{_ENDPOINTS[other]}, or pick one of the {kind} models: "
            f"{', '.join(catalog.IMAGE_MODELS if kind == 'image' else catalog.VIDEO_MODELS)}",
            code="WRONG_ENDPOINT",
        )


def image_params(
    data: Mapping[str, Any], *, strict_size: bool = False, aliases: Mapping[str, str] | None = None
) -> ImageParams:
    """Validate image generation fields. Raises BadRequest naming the field and what to send instead.

    `size` ("WxH", OpenAI style) picks the ratio and resolution that `ratio` / `resolution` leave open
    (`strict_size` refuses it); `aliases` maps extra model names to catalogue ones.
    """
    for field in ("width", "height"):
        if data.get(field) not in (None, ""):
            raise BadRequest(
                f"'{field}' is not supported: send 'size' (e.g. 1024x1024), or 'ratio' ({', '.join(catalog.RATIOS)}) "
                f"and 'resolution' ({', '.join(catalog.RESOLUTIONS)})",
                code="UNSUPPORTED_PARAMETER",
            )
    size_ratio, size_resolution = size_shape(data, strict=strict_size)
    asked = get_str(data, "model", catalog.DEFAULT_IMAGE_MODEL)
    assert asked is not None
    model = (aliases or {}).get(asked, asked)
    check_model_kind(asked, model, "image")
    if model not in catalog.IMAGE_MODELS and not catalog.looks_like_key(model):
        raise BadRequest(
            f"unknown image model '{asked}'; use one of: {', '.join(catalog.IMAGE_MODELS)}, "
            "or map the name to one of them with [models] aliases in the config",
            code="UNKNOWN_MODEL",
        )
    prompt = get_str(data, "prompt", required=True)
    assert prompt is not None
    if len(prompt) > MAX_PROMPT_CHARS:
        raise _bad("prompt", f"is too long ({len(prompt)} characters; at most {MAX_PROMPT_CHARS})")
    multi = None if data.get("multi_image") is None else get_bool(data, "multi_image", False)
    count = get_count(data, "n", high=catalog.MAX_IMAGE_COUNT)
    if count is not None and multi is True:
        raise BadRequest(
            "'n' and 'multi_image: true' cannot be combined: multi-image mode takes its count from the prompt "
            "(e.g. '4张'); drop one of them",
            code="INVALID_PARAMETER",
        )
    resolution = get_choice(data, "resolution", size_resolution or catalog.DEFAULT_RESOLUTION, catalog.RESOLUTIONS)
    offered = catalog.image_resolutions(model)
    if resolution not in offered and data.get("resolution") in (None, ""):
        # A tier picked from `size` (or the default) that this model lacks: its next larger tier, else its largest.
        rank = catalog.RESOLUTIONS.index(resolution)
        resolution = next((r for r in offered if catalog.RESOLUTIONS.index(r) >= rank), offered[-1])
    if resolution not in offered:
        raise _bad("resolution", f"must be one of {', '.join(offered)} for {model}, got {resolution!r}")
    return ImageParams(
        model=model,
        prompt=prompt,
        negative_prompt=get_str(data, "negative_prompt", "") or "",
        ratio=get_choice(data, "ratio", size_ratio or catalog.DEFAULT_RATIO, catalog.RATIOS),
        resolution=resolution,
        intelligent_ratio=get_bool(data, "intelligent_ratio", False),
        sample_strength=get_float(data, "sample_strength", 0.5, low=0.0, high=1.0),
        response_format=get_choice(data, "response_format", "url", RESPONSE_FORMATS),
        multi_image=multi,
        count=count,
    )
