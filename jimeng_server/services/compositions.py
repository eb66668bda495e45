"""Image-to-image ("blend") submissions: spool the input images, upload them for the chosen account,
content-check them (CN), then send one blend generate. Shared by the sync endpoint and its async twin.

Order of refusals, so nothing is uploaded or spent for a request that cannot succeed: fields and model,
then every input (guard, download, image check), then per account: credits, uploads + checks, generate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ..concurrency import all_or_nothing
from ..errors import ContentRejected
from ..net.spool import Download
from ..store.models import TaskKind
from ..upstream import content_check
from ..upstream.errors import UpstreamError, UpstreamRetError
from ..upstream.imagex import CommittedImage
from ..upstream.payloads import ImageRef
from ..upstream.regions import constants
from ..upstream.tokens import Account
from ..upstream.uploader import ImageUploader
from .generation import Generation, Submission
from .inputs import InputImage, InputLoader
from .params import ImageParams

log = logging.getLogger(__name__)

COMPOSITION_TYPE = "multi_image_synthesis"
MAX_INPUT_IMAGES = 10  # the web client's limit (upstream-protocol.md §7.3)
BLEND_EXPECTED_ITEMS = 1


class Compositions:
    """Runs image-to-image submissions on top of `Generation` (accounts, payloads, watcher)."""

    def __init__(
        self, generation: Generation, uploader: ImageUploader, loader: InputLoader, *, concurrency: int
    ) -> None:
        self.generation = generation
        self.uploader = uploader
        self.loader = loader
        self.concurrency = concurrency

    async def submit(self, accounts: list[Account], params: ImageParams, images: Sequence[InputImage]) -> Submission:
        """Blend `images` (1..10, already counted by the caller) with the first usable account.

        Downloads go through the first account's proxy; uploads and generate through the chosen account's.
        Raises ApiError (400/413 for inputs, 422 CONTENT_REJECTED for a refused image, ...) or UpstreamError.
        """
        placeholder = (ImageRef(""),) * len(images)
        self.generation.image_job(accounts[0], params, placeholder)  # model/size errors before any I/O
        inputs = await self.loader.load(images, proxy=accounts[0].proxy)
        try:

            async def action(account: Account) -> Submission:
                committed = await self.prepare(account, inputs.files)
                job = self.generation.image_job(account, params, committed)
                return await self.generation.submit_generate(
                    account,
                    job,
                    kind=TaskKind.IMAGE,
                    model=params.model,
                    expected_items=BLEND_EXPECTED_ITEMS,
                    input_images=len(committed),
                    callback_url=params.callback_url,
                )

            _, submission = await self.generation.accounts.submit(accounts, action)
            return submission
        finally:
            inputs.cleanup()

    async def prepare(self, account: Account, files: Sequence[Download]) -> tuple[ImageRef, ...]:
        """Upload and (CN) content-check every file for `account`, `concurrency` at a time; the committed images
        in order."""
        slots = asyncio.Semaphore(self.concurrency)
        return tuple(await all_or_nothing(self.upload_checked(account, f, i, slots) for i, f in enumerate(files)))

    async def upload_checked(
        self, account: Account, file: Download, index: int, slots: asyncio.Semaphore
    ) -> CommittedImage:
        """Upload one input image (holding one of `slots` meanwhile), then content-check it (CN; input `index`)."""
        async with slots:
            image = await self.uploader.upload(account, file)
        await self.check(account, image.uri, index)
        return image

    async def check(self, account: Account, image_uri: str, index: int) -> None:
        """The CN content check: a verdict refuses with 422 CONTENT_REJECTED; an outage is logged and ignored."""
        if not constants(account.region).content_check:
            return
        try:
            await self.generation.client.check_image_content(account, image_uri)
        except UpstreamRetError as exc:
            if content_check.is_risk(exc.ret, exc.errmsg):
                raise ContentRejected(
                    f"input image {index + 1} failed the upstream's content check (ret {exc.ret}: {exc.errmsg}); "
                    "use another image"
                ) from None
            log.warning("content check of input image %d unavailable (%s); going on", index + 1, exc.reason)
        except UpstreamError as exc:
            log.warning("content check of input image %d unavailable (%s); going on", index + 1, exc.reason)
