"""OpenAI-compatible image fields: `size` ("WxH") mapped to a ratio and a resolution tier, model aliases
from `[models] aliases`, and the input images of `/v1/images/edits`.

What OpenAI clients send that the upstream has no use for (`quality`, `style`, `user`) is accepted and
ignored by the field parsers, which read only the fields they know.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..config import ConfigError
from ..errors import BadRequest
from ..services.inputs import InputImage
from ..upstream import catalog
from .fields import EDIT, get_pixels
from .image_inputs import composition_images

EDIT_IMAGE_FIELDS = tuple(f.name for f in EDIT.fields if f.where == "form")
"""Where OpenAI clients put edit images (declared in `fields.EDIT`): `image` (one file, or repeated), `image[]`
(the SDK's lists)."""


def _aspect(ratio: str) -> float:
    width, height = ratio.split(":")
    return int(width) / int(height)


def nearest_ratio(width: int, height: int, ratios: Sequence[str]) -> str:
    """The ratio of `ratios` ("W:H") nearest to `width`:`height`, by aspect on a log scale (the first on a tie)."""
    wanted = math.log(width / height)
    return min(ratios, key=lambda r: abs(math.log(_aspect(r)) - wanted))


def shape_for_size(width: int, height: int) -> tuple[str, str]:
    """The supported ratio nearest to `width`:`height` (`nearest_ratio`) and the smallest
    resolution tier whose size for that ratio covers the request (long side and short side); the largest
    tier when none does. `1024x1024` -> ("1:1", "1k"); `1792x1024` -> ("16:9", "2k")."""
    ratio = nearest_ratio(width, height, catalog.RATIOS)
    tiers = []
    for resolution in catalog.RESOLUTIONS:
        try:
            size = catalog.image_size(ratio, resolution)
        except catalog.CatalogError:
            continue
        tiers.append((size.width * size.height, resolution, size))
    tiers.sort()
    long_side, short_side = max(width, height), min(width, height)
    for _, resolution, size in tiers:
        if max(size.width, size.height) >= long_side and min(size.width, size.height) >= short_side:
            return ratio, resolution
    return ratio, tiers[-1][1]


def size_shape(data: Mapping[str, Any], *, strict: bool) -> tuple[str | None, str | None]:
    """The (ratio, resolution) that `size` asks for, (None, None) without one (or with "auto").
    `strict` (`[compat] strict_size`) refuses `size` altogether. Raises BadRequest saying what to send."""
    value = data.get("size")
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None, None
    if strict:
        raise BadRequest(
            f"'size' is not supported: choose the shape with 'ratio' ({', '.join(catalog.RATIOS)}) "
            f"and 'resolution' ({', '.join(catalog.RESOLUTIONS)})",
            code="UNSUPPORTED_PARAMETER",
        )
    return shape_for_size(*get_pixels(value, "size", 'e.g. 1024x1024, or "auto"'))


def check_aliases(aliases: Mapping[str, str]) -> None:
    """Start-up check of `[models] aliases`: each names a model of the catalogue and hides none.
    Raises ConfigError naming the alias."""
    known = {**catalog.IMAGE_MODELS, **catalog.VIDEO_MODELS}
    for alias, target in aliases.items():
        if alias in known:
            raise ConfigError(f"models.aliases.{alias}: '{alias}' is already a model name; choose another alias")
        if target not in known:
            raise ConfigError(f"models.aliases.{alias}: unknown model '{target}'; use one of: {', '.join(known)}")


def edit_images(fields: Mapping[str, Any]) -> list[InputImage]:
    """The input images of `/v1/images/edits` (`image` and `image[]`, in that order; or `images` as in
    compositions). A `mask` is refused: the upstream edits whole images."""
    (mask,) = EDIT.refused
    if fields.get(mask) not in (None, ""):
        raise BadRequest(
            "'mask' is not supported: the upstream edits whole images; describe the change in 'prompt' "
            "and send the image without a mask",
            code="UNSUPPORTED_PARAMETER",
        )
    items: list[Any] = []
    for name in EDIT_IMAGE_FIELDS:
        value = fields.get(name)
        if value is not None:
            items.extend(value if isinstance(value, list) else [value])
    if not items and "images" in fields:
        return composition_images(fields)
    return composition_images({"image": items or None}, field="image")
