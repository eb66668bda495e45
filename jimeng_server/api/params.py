"""Parsing and validation of image generation request fields, shared by each sync endpoint and its async twin.

Fields arrive from JSON (typed) or multipart forms (strings); both go through the same functions. Each field is
read through its declaration (`fields.IMAGE`); the rules that tie fields together (model and endpoint, `size`
against `ratio`/`resolution`, `n` against `multi_image`) are applied here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest
from ..services.params import ImageParams
from ..upstream import catalog
from .fields import (
    IMAGE,
    MAX_PROMPT_CHARS,
    RESPONSE_FORMATS,
    get_bool,
    get_choice,
    get_count,
    get_float,
    get_int,
    get_str,
)
from .openai_compat import size_shape

__all__ = [
    "MAX_PROMPT_CHARS",
    "RESPONSE_FORMATS",
    "check_model_kind",
    "get_bool",
    "get_choice",
    "get_count",
    "get_float",
    "get_int",
    "get_str",
    "image_params",
]

_IMAGE_FIELDS = {f.name: f for f in IMAGE.fields}
"""`IMAGE`'s declarations by name, looked up once here rather than by a scan of the body per field per request."""

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
    for field in IMAGE.refused:
        if data.get(field) not in (None, ""):
            raise BadRequest(
                f"'{field}' is not supported: send 'size' (e.g. 1024x1024), or 'ratio' ({', '.join(catalog.RATIOS)}) "
                f"and 'resolution' ({', '.join(catalog.RESOLUTIONS)})",
                code="UNSUPPORTED_PARAMETER",
            )
    size_ratio, size_resolution = size_shape(data, strict=strict_size)
    asked = _IMAGE_FIELDS["model"].read(data)
    model = (aliases or {}).get(asked, asked)
    check_model_kind(asked, model, "image")
    if model not in catalog.IMAGE_MODELS and not catalog.looks_like_key(model):
        raise BadRequest(
            f"unknown image model '{asked}'; use one of: {', '.join(catalog.IMAGE_MODELS)}, "
            "or map the name to one of them with [models] aliases in the config",
            code="UNKNOWN_MODEL",
        )
    prompt: str = _IMAGE_FIELDS["prompt"].read(data)
    multi: bool | None = _IMAGE_FIELDS["multi_image"].read(data)
    count: int | None = _IMAGE_FIELDS["n"].read(data)
    if count is not None and multi is True:
        raise BadRequest(
            "'n' and 'multi_image: true' cannot be combined: multi-image mode takes its count from the prompt "
            "(e.g. '4张'); drop one of them",
            code="INVALID_PARAMETER",
        )
    resolution: str = _IMAGE_FIELDS["resolution"].read(data, default=size_resolution)
    offered = catalog.image_resolutions(model)
    if resolution not in offered and not IMAGE["resolution"].sent(data):
        # A tier picked from `size` (or the default) that this model lacks: its next larger tier, else its largest.
        rank = catalog.RESOLUTIONS.index(resolution)
        resolution = next((r for r in offered if catalog.RESOLUTIONS.index(r) >= rank), offered[-1])
    if resolution not in offered:
        raise BadRequest(
            f"'resolution' must be one of {', '.join(offered)} for {model}, got {resolution!r}",
            code="INVALID_PARAMETER",
        )
    return ImageParams(
        model=model,
        prompt=prompt,
        negative_prompt=_IMAGE_FIELDS["negative_prompt"].read(data) or "",
        ratio=_IMAGE_FIELDS["ratio"].read(data, default=size_ratio),
        resolution=resolution,
        intelligent_ratio=_IMAGE_FIELDS["intelligent_ratio"].read(data),
        sample_strength=_IMAGE_FIELDS["sample_strength"].read(data),
        response_format=_IMAGE_FIELDS["response_format"].read(data),
        multi_image=multi,
        count=count,
    )
