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
from ..upstream.audits import AuditMaterial
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

    def audits_on(self, account: Account) -> bool:
        """Whether the international pre-generate audits run for `account` (`[upstream] intl_audits`)."""
        return account.region.is_international and self.client.config.intl_audits

    async def audit_generate(self, account: Account, model_key: str, materials: Sequence[AuditMaterial]) -> None:
        """The international audit of a generate's materials before it is sent (§19.8): a refused material is a
        422 CONTENT_REJECTED naming it (nothing is spent); an outage of the audit is logged and ignored."""
        if not materials or not self.audits_on(account):
            return
        try:
            refused = await self.client.execute_generate_audit(account, model_key, list(materials))
        except UpstreamError as exc:
            log.warning("pre-generate audit unavailable (%s); going on", exc.reason)
            return
        if refused:
            kinds = {1: "image", 2: "video", 3: "audio"}
            named = ", ".join(f"{kinds.get(materials[i].material_type, 'material')} {i + 1}" for i in refused)
            raise ContentRejected(
                f"the upstream's audit refused input {named} before generating; nothing was spent, use other inputs"
            )

    async def _check(self, account: Account, image_uri: str, index: int) -> None:
        """The CN content check: a verdict refuses with 422 CONTENT_REJECTED; an outage is logged and ignored.
        Internationally the image is handed to the site's audit instead (`submit_audit_job`, §19.8)."""
        if self.audits_on(account):
            try:
                await self.client.submit_audit_job(account, image_uri)
            except UpstreamError as exc:
                log.warning("audit job of input image %d not accepted (%s); going on", index + 1, exc.reason)
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
