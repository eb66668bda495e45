"""Input images (and omni-reference input videos) as validated temporary files: URLs (SSRF-safe downloads),
data URIs (decoded in chunks) and files the request already spooled. Nothing is held whole in memory; every
temporary file made here is deleted by `InputFiles.cleanup()` (also when materializing fails half-way).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from ..concurrency import all_or_nothing
from ..errors import ApiError, BadRequest, PayloadTooLarge
from ..imageinfo import sniff_format
from ..net.errors import FetchError, TooLargeError, UnsafeURLError
from ..net.fetcher import SafeFetcher
from ..net.policy import check_url
from ..net.spool import Download, spool_chunks

_DATA_URI = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[^;,]*)*);base64,", re.IGNORECASE)
_B64_STEP = 4 * 256 * 1024  # base64 characters decoded at a time (a multiple of 4: chunks decode alone)


@dataclass(frozen=True, slots=True)
class UrlImage:
    """An image to download from an http(s) URL."""

    url: str


@dataclass(frozen=True, slots=True)
class DataUriImage:
    """An image given inline as a `data:<mime>;base64,...` URI."""

    uri: str


@dataclass(frozen=True, slots=True)
class FileImage:
    """An image the request carried as a file, already spooled (owned by the request, not by `InputFiles`)."""

    download: Download
    filename: str = ""


InputImage = UrlImage | DataUriImage | FileImage


@dataclass
class InputFiles:
    """The spooled files of one request's input images, in order; `cleanup()` deletes those made here."""

    files: list[Download]
    owned: list[Download] = field(default_factory=list)

    def cleanup(self) -> None:
        """Delete the temporary files this object created (safe to call twice)."""
        for download in self.owned:
            download.cleanup()


def _label(index: int, kind: str = "image") -> str:
    return f"{kind} {index + 1}"


def precheck(images: Sequence[InputImage], fetcher: SafeFetcher, kind: str = "image") -> None:
    """Refuse, without any I/O, URLs the guard can already judge (scheme, IP literals, local names)."""
    for i, image in enumerate(images):
        if isinstance(image, UrlImage):
            try:
                check_url(image.url, fetcher.policy, what=f"{_label(i, kind)} URL")
            except UnsafeURLError as exc:
                raise BadRequest(str(exc), code="UNSAFE_URL") from None


async def decode_data_uri(uri: str, *, max_bytes: int, directory: str | None) -> Download:
    """Decode a base64 data URI into a temporary file, chunk by chunk.

    Raises ValueError when it is not a base64 data URI, TooLargeError when the decoded size exceeds `max_bytes`.
    """
    match = _DATA_URI.match(uri)
    if match is None:
        raise ValueError("a data URI must look like data:image/png;base64,<base64 data>")
    payload = uri[match.end() :]
    if re.search(r"\s", payload):
        payload = "".join(payload.split())
    if len(payload) // 4 * 3 > max_bytes + 2:
        raise TooLargeError(max_bytes)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), _B64_STEP):
            try:
                yield base64.b64decode(payload[start : start + _B64_STEP], validate=True)
            except binascii.Error:
                raise ValueError("the data URI holds invalid base64") from None

    return await spool_chunks(chunks(), max_bytes=max_bytes, directory=directory, content_type=match["mime"])


def _download_error(index: int, exc: Exception, kind: str = "image") -> ApiError:
    label = _label(index, kind)
    if isinstance(exc, UnsafeURLError):
        return BadRequest(str(exc), code="UNSAFE_URL")
    if isinstance(exc, TooLargeError):
        return PayloadTooLarge(
            f"{label} is larger than the limit of {exc.limit} bytes; send a smaller file", code="FILE_TOO_LARGE"
        )
    if isinstance(exc, FetchError):
        return BadRequest(f"{label} could not be downloaded: {exc.reason}", code=f"{kind.upper()}_FETCH_FAILED")
    return BadRequest(f"{label} is not a valid data URI: {exc}", code="INVALID_DATA_URI")


class InputLoader:
    """Materializes input images under the fetch policy, at most `concurrency` at a time."""

    def __init__(self, fetcher: SafeFetcher, *, max_bytes: int, temp_dir: str | None, concurrency: int) -> None:
        self.fetcher = fetcher
        self.max_bytes = max_bytes
        self.temp_dir = temp_dir
        self.concurrency = concurrency

    async def load(self, images: Sequence[InputImage], *, proxy: str | None, kind: str = "image") -> InputFiles:
        """Spool every input image (downloads through `proxy`) and check each is a PNG, JPEG, WEBP or GIF.

        Raises an ApiError (400 UNSAFE_URL / IMAGE_FETCH_FAILED / INVALID_DATA_URI / NOT_AN_IMAGE, 413
        FILE_TOO_LARGE) naming the image; on failure every file made so far is deleted.
        `kind="video"` loads videos the same way: messages say "video N", a failed download is
        VIDEO_FETCH_FAILED, and the image-format check is left to the caller.
        """
        precheck(images, self.fetcher, kind)
        result = InputFiles(files=[])
        slots = asyncio.Semaphore(self.concurrency)
        made: list[Download | None] = [None] * len(images)

        async def one(index: int, image: InputImage) -> None:
            if isinstance(image, FileImage):
                made[index] = image.download
                return
            async with slots:
                try:
                    if isinstance(image, UrlImage):
                        download = await self.fetcher.download(
                            image.url, proxy=proxy, what=f"{_label(index, kind)} URL"
                        )
                    else:
                        download = await decode_data_uri(image.uri, max_bytes=self.max_bytes, directory=self.temp_dir)
                except (FetchError, UnsafeURLError, ValueError) as exc:
                    raise _download_error(index, exc, kind) from None
            result.owned.append(download)
            made[index] = download

        try:
            await all_or_nothing(one(i, image) for i, image in enumerate(images))
            for i, download in enumerate(made):
                assert download is not None
                if kind == "image" and sniff_format(download.head) is None:
                    raise BadRequest(
                        f"{_label(i)} is not a PNG, JPEG, WEBP or GIF image; send an image file", code="NOT_AN_IMAGE"
                    )
                result.files.append(download)
        except BaseException:
            result.cleanup()
            raise
        return result
