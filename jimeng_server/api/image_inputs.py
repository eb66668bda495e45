"""Parsing of the `images` field of compositions (sync and async twin): JSON URL strings, `{"url": ...}`
objects, data URIs, or multipart files (spooled by `forms.request_fields`), 1 to 10 of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest
from ..services.compositions import MAX_INPUT_IMAGES
from ..services.inputs import DataUriImage, FileImage, InputImage, UrlImage
from ..services.params import UploadedFile
from .fields import IMAGES

IMAGES_FIELD = IMAGES["images"].name
_SHAPES = 'a URL string, an object {"url": "..."}, a data:image/...;base64 URI, or a multipart file'


def _one(field: str, index: int, item: Any) -> InputImage:
    where = f"'{field}[{index}]'"
    if isinstance(item, UploadedFile):
        return FileImage(item.download, item.filename)
    if isinstance(item, dict):
        item = item.get("url")
        if not isinstance(item, str):
            raise BadRequest(f'{where} must have a string "url"', code="INVALID_PARAMETER")
    if not isinstance(item, str):
        raise BadRequest(f"{where} must be {_SHAPES}, got {type(item).__name__}", code="INVALID_PARAMETER")
    text = item.strip()
    if not text:
        raise BadRequest(f"{where} is empty; send {_SHAPES}", code="INVALID_PARAMETER")
    if text[:5].lower() == "data:":
        return DataUriImage(text)
    return UrlImage(text)


def composition_images(fields: Mapping[str, Any], field: str = IMAGES_FIELD) -> list[InputImage]:
    """The input images in `fields[field]`, in order; 400 naming the problem when not 1..10 usable ones."""
    value = fields.get(field)
    if value is None:
        raise BadRequest(
            f"'{field}' is required: send 1 to {MAX_INPUT_IMAGES} images as {_SHAPES}",
            code="MISSING_PARAMETER",
        )
    items = value if isinstance(value, list) else [value]
    if not 1 <= len(items) <= MAX_INPUT_IMAGES:
        raise BadRequest(
            f"'{field}' must hold 1 to {MAX_INPUT_IMAGES} images, got {len(items)}", code="INVALID_IMAGE_COUNT"
        )
    return [_one(field, i, item) for i, item in enumerate(items)]
