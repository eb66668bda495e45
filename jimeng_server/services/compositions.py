"""Image-to-image ("blend") submissions: spool the input images, upload them for the chosen account,
content-check them (CN), then send one blend generate. Shared by the sync endpoint and its async twin.

Order of refusals, so nothing is uploaded or spent for a request that cannot succeed: fields and model,
then every input (guard, download, image check), then per account: credits, uploads + checks, generate.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..tasks.records import TaskKind
from ..upstream import catalog
from ..upstream.audits import AuditMaterial
from ..upstream.payloads import ImageRef
from ..upstream.tokens import Account
from .accounts import cost_key
from .callers import Caller
from .generation import Generation, Submission
from .idempotency import SpendMark
from .image_inputs import ImageInputs
from .inputs import InputImage
from .params import ImageParams

COMPOSITION_TYPE = "multi_image_synthesis"
MAX_INPUT_IMAGES = 10  # the web client's limit (docs/protocol.md §7.3)


class Compositions:
    """Runs image-to-image submissions on top of `Generation` (accounts, payloads, watcher)."""

    def __init__(self, generation: Generation, inputs: ImageInputs) -> None:
        self.generation = generation
        self.inputs = inputs

    async def submit(
        self, caller: Caller, params: ImageParams, images: Sequence[InputImage], *, spend: SpendMark
    ) -> Submission:
        """Blend `images` (1..10, already counted by the caller) with the first usable account.

        Downloads go through the first account's proxy; uploads and generate through the chosen account's.
        Raises ApiError (400/413 for inputs, 422 CONTENT_REJECTED for a refused image, ...) or UpstreamError.
        """
        params = self.generation.with_default_count(params)
        placeholder = (ImageRef(""),) * len(images)
        await self.generation.discover_for(caller.first, params.model)
        self.generation.image_job(caller.first, params, placeholder)  # model/size errors before any I/O
        inputs = await self.inputs.load(images, proxy=caller.first.proxy)
        try:

            async def action(account: Account) -> Submission:
                committed = await self.inputs.upload(account, inputs.files)
                job = self.generation.image_job(account, params, committed)
                await self.inputs.audit_generate(account, job.model_key, [AuditMaterial(c.uri, 1) for c in committed])
                return await self.generation.submit_generate(
                    account,
                    job,
                    kind=TaskKind.IMAGE,
                    model=params.model,
                    expected_items=self.generation.expected_images(params, catalog.BLEND_DEFAULT_COUNT),
                    input_images=len(committed),
                    callback_url=params.callback_url,
                    spend=spend,
                )

            _, submission = await self.generation.accounts.submit(
                caller, action, spend=spend, cost=cost_key(params)
            )
            return submission
        finally:
            inputs.cleanup()
