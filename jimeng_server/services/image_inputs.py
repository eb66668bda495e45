"""Input media of a request, for compositions and videos alike: loaded once (SSRF guard, download or decode,
format check) through the first account's proxy, then, per account that tries the submit, uploaded to ImageX
and content-checked (CN) `concurrency` at a time. A refused or failed upload of ANY image fails the request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ..concurrency import all_or_nothing
from ..errors import ContentRejected
from ..net.spool import Download
from ..upstream import content_check
from ..upstream.client import JimengClient
from ..upstream.errors import UpstreamError, UpstreamRetError
from ..upstream.imagex import CommittedImage
from ..upstream.regions import constants
from ..upstream.tokens import Account
from ..upstream.uploader import ImageUploader
from .inputs import InputFiles, InputImage, InputLoader

log = logging.getLogger(__name__)


class ImageInputs:
    """Loads request inputs and uploads images for an account (ImageX + the CN content check)."""

    def __init__(self, loader: InputLoader, uploader: ImageUploader, client: JimengClient, *, concurrency: int) -> None:
        self.loader = loader
        self.uploader = uploader
        self.client = client
        self.concurrency = concurrency

    async def load(self, inputs: Sequence[InputImage], *, proxy: str | None, kind: str = "image") -> InputFiles:
        """Spool every input (`kind` "image" or "video") to a checked temporary file; the caller cleans up."""
        return await self.loader.load(inputs, proxy=proxy, kind=kind)

    def slots(self) -> asyncio.Semaphore:
        """Upload slots for one request (shared by its image and video uploads)."""
        return asyncio.Semaphore(self.concurrency)

    async def upload(self, account: Account, files: Sequence[Download]) -> tuple[CommittedImage, ...]:
        """Upload and content-check every image for `account`, `concurrency` at a time; in order."""
        slots = self.slots()
        return tuple(await all_or_nothing(self.upload_one(account, f, i, slots) for i, f in enumerate(files)))

    async def upload_one(
        self, account: Account, file: Download, index: int, slots: asyncio.Semaphore
    ) -> CommittedImage:
        """Upload one image (holding one of `slots` meanwhile), then content-check it (CN; input `index`)."""
        async with slots:
            image = await self.uploader.upload(account, file)
        await self._check(account, image.uri, index)
        return image

    async def _check(self, account: Account, image_uri: str, index: int) -> None:
        """The CN content check: a verdict refuses with 422 CONTENT_REJECTED; an outage is logged and ignored."""
        if not constants(account.region).content_check:
            return
        try:
            await self.client.check_image_content(account, image_uri)
        except UpstreamRetError as exc:
            if content_check.is_risk(exc.ret, exc.errmsg):
                raise ContentRejected(
                    f"input image {index + 1} failed the upstream's content check (ret {exc.ret}: {exc.errmsg}); "
                    "use another image"
                ) from None
            log.warning("content check of input image %d unavailable (%s); going on", index + 1, exc.reason)
        except UpstreamError as exc:
            log.warning("content check of input image %d unavailable (%s); going on", index + 1, exc.reason)
