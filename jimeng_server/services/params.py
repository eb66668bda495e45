"""What the services are asked to do: the validated fields of an image or video request and its input media.

Built by the api layer (which parses and validates the HTTP request), read by the services. Pure data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..net.spool import Download
from ..upstream import catalog

_MULTI_KEYWORDS = ("连续", "绘本", "故事")
_COUNT_RE = re.compile(r"([0-9]+)\s*张")
MAX_OMNI_VIDEO_SECONDS = 15.0
"""Longest total length of omni reference videos (§8.3)."""


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """One multipart file part, spooled to `download.path`."""

    field: str
    filename: str
    download: Download

    @property
    def size(self) -> int:
        return self.download.size


@dataclass(frozen=True, slots=True)
class ImageParams:
    """The fields of `/v1/images/generations` (and of compositions, which adds the images)."""

    model: str
    prompt: str
    negative_prompt: str
    ratio: str
    resolution: str
    intelligent_ratio: bool
    sample_strength: float
    response_format: str
    multi_image: bool | None
    count: int | None = None  # `n`: images wanted; None = the model's default count (§17.1)
    callback_url: str | None = None  # async twins only, set by the handler after validation (api/callbacks.py)

    def story_count(self) -> int | None:
        """Multi-image ("story") mode: the number of images, or None for single generation (§7.5).

        Triggered as in the reference by the prompt keywords for jimeng-4.0/4.1/4.5, unless the caller
        says `multi_image: false` or gives `n`; `multi_image: true` forces it on for those models.
        """
        if self.model not in catalog.MULTI_IMAGE_MODELS or self.multi_image is False or self.count is not None:
            return None
        match = _COUNT_RE.search(self.prompt)
        triggered = self.multi_image is True or match is not None or any(k in self.prompt for k in _MULTI_KEYWORDS)
        if not triggered:
            return None
        if match is None:
            return 4
        digits = match.group(1)
        return max(1, min(int(digits), 20)) if len(digits) <= 3 else 20


@dataclass(frozen=True, slots=True)
class MediaSource:
    """One input image or video: a URL or an uploaded file, and the field it came in."""

    field: str
    url: str | None = None
    file: UploadedFile | None = None

    @property
    def label(self) -> str:
        """How messages name this input."""
        return f"'{self.field}' ({self.file.filename})" if self.file else f"'{self.field}'"


@dataclass(frozen=True, slots=True)
class VideoParams:
    """The validated fields of a video generation."""

    model: str
    prompt: str
    ratio: str
    resolution: str | None  # only for the models that take one (§6.5)
    duration: int  # seconds
    omni: bool
    frames: tuple[MediaSource, ...] = ()  # first/last-frame mode: 0, 1 or 2 images
    images: tuple[MediaSource, ...] = ()  # omni mode
    videos: tuple[MediaSource, ...] = ()  # omni mode
    response_format: str = "url"
    callback_url: str | None = None  # async twin only, set by the handler after validation (api/callbacks.py)
    audios: tuple[MediaSource, ...] = ()  # omni mode: reference audio (§17.10)
    model_named: bool = True  # False: the caller named no model (the default may be replaced when withdrawn)

    @property
    def materials(self) -> tuple[MediaSource, ...]:
        """Omni materials in registration order: images, then videos (§8.3), then audios (§17.10)."""
        return self.images + self.videos + self.audios

    def reference_names(self) -> dict[str, int]:
        """`@name` -> material index: field names, and original filenames that do not clash with one."""
        names: dict[str, int] = {}
        for index, source in enumerate(self.materials):
            names.setdefault(source.field, index)
        fields = set(names)
        for index, source in enumerate(self.materials):
            if source.file is not None and source.file.filename and source.file.filename not in fields:
                names.setdefault(source.file.filename, index)
        return names
