"""Submitting generations and waiting for them: the one place sync endpoints and their async twins share.

`submit_*` picks an account (credits, fail-over), builds the payload and sends exactly one generate.
`wait` hands the task to the watcher and awaits its outcome.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..config import Config
from ..errors import BadRequest
from ..tasks.records import Outcome, TaskKind
from ..upstream import catalog
from ..upstream.client import JimengClient
from ..upstream.discovery import DiscoveredModel
from ..upstream.errors import UpstreamRetError
from ..upstream.payloads import DraftVersions, ImageJob, ImageRef, build_image_generate
from ..upstream.regions import Region
from ..upstream.tokens import Account
from ..watcher import Watcher
from .accounts import AccountService, cost_key
from .callers import Caller, Payer
from .idempotency import SpendMark
from .model_list import ModelRegistry
from .params import ImageParams

# Text-to-image seeds lie in [2.5e9, 2.6e9) as the web client makes them (§7.2).
_SEED_LOW, _SEED_HIGH = 2_500_000_000, 2_600_000_000


@dataclass(frozen=True, slots=True)
class Submission:
    """A generate the upstream accepted."""

    account: Account
    history_id: str
    kind: TaskKind
    model: str
    submit_id: str
    submitted_at: float
    expected_items: int = 1
    input_images: int | None = None
    callback_url: str | None = None  # async submits only: where the final task event is POSTed
    owner: str = ""  # the task's owner id (TaskRecord.account_fp); "" = the account's fingerprint
    account_id: int | None = None  # the pool account that paid (API-key submits), else None
    parent_history_id: str | None = None  # a post-edit: the task whose result it edits
    forecast: float | None = None  # the generate answer's forecast: seconds it takes from submitted_at (or None)


SubmittedHook = Callable[[Submission], Awaitable[None]]
"""Called once per accepted submit, before the submit returns (the task service records it there)."""


class Generation:
    """Submits generations for a list of candidate accounts and waits on the shared watcher."""

    def __init__(
        self,
        client: JimengClient,
        accounts: AccountService,
        watcher: Watcher,
        config: Config,
        clock: Clock,
        *,
        rng: random.Random | None = None,
        on_submitted: SubmittedHook | None = None,
    ) -> None:
        self.client = client
        self.accounts = accounts
        self.on_submitted = on_submitted  # records every accepted submit (TaskIntake.track)
        self.watcher = watcher
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        up = config.upstream
        self.versions = DraftVersions(up.image_draft_version, up.draft_min_version, up.blend_min_version)
        self.models = ModelRegistry(client, clock, ttl=up.discovery_ttl)

    def image_key(self, account: Account, model: str) -> tuple[str, DiscoveredModel | None]:
        """The upstream key of image `model` in the account's region (a table name, or a key only discovery
        lists), and what discovery says about that key; 400 UNSUPPORTED_MODEL listing what the region offers."""
        region = account.region
        if model in catalog.IMAGE_MODELS and region in catalog.IMAGE_MODELS[model]:
            key = catalog.IMAGE_MODELS[model][region]
            return key, self.models.find(region, "image", key)
        found = self.models.find(region, "image", model)
        if found is None or not found.available:
            where = "is not available" if model in catalog.IMAGE_MODELS else "is unknown"
            raise BadRequest(
                f"image model '{model}' {where} in region {region.value}; use one of: "
                f"{', '.join(self.models.names('image', region))}",
                code="UNSUPPORTED_MODEL",
            )
        return model, found

    def image_job(self, account: Account, params: ImageParams, images: tuple[ImageRef, ...] = ()) -> ImageJob:
        """Resolve model, size and count for the account's region; 400 listing what the region offers. The
        allowed counts come from discovery when it lists the key with counts, else from the table (§17.1)."""
        key, found = self.image_key(account, params.model)
        try:
            size = catalog.image_size(params.ratio, params.resolution, model=params.model, region=account.region)
        except catalog.CatalogError as exc:
            raise BadRequest(str(exc), code="UNSUPPORTED_MODEL") from None
        counts = found.counts if found is not None and found.counts else catalog.image_counts(params.model)
        if params.count is not None and params.count not in counts:
            raise BadRequest(
                f"'n' must be from {min(counts)} to {max(counts)} for {params.model}, got {params.count}",
                code="INVALID_PARAMETER",
            )
        forced = catalog.forced_image_count(params.model)
        fewer = params.count is not None and forced is not None and params.count < forced
        if fewer and not self.config.images.allow_fewer_than_forced:
            raise BadRequest(
                f"{params.model} always makes (and bills) {forced} images; send n={forced} or leave n out "
                "(an operator may accept fewer with [images] allow_fewer_than_forced = true)",
                code="INVALID_PARAMETER",
            )
        return ImageJob(
            model_key=key,
            prompt=params.prompt,
            size=size,
            negative_prompt=params.negative_prompt,
            sample_strength=params.sample_strength,
            intelligent_ratio=params.intelligent_ratio and params.model in catalog.INTELLIGENT_RATIO_MODELS,
            multi_image=not images and params.story_count() is not None,
            count=params.count,
            images=images,
        )

    async def submit_generate(
        self,
        account: Account,
        job: ImageJob,
        *,
        kind: TaskKind,
        model: str,
        expected_items: int,
        spend: SpendMark,
        input_images: int | None = None,
        callback_url: str | None = None,
    ) -> Submission:
        """Send one image generate for `account` and return the accepted submission (recorded with
        `callback_url`, already validated, when it came from an async submit)."""
        body = build_image_generate(
            job,
            region=account.region,
            versions=self.versions,
            now_ms=int(self.clock.time() * 1000),
            seed=self.rng.randrange(_SEED_LOW, _SEED_HIGH),
        )
        return await self.send(
            account, body, kind, model, expected_items, input_images, callback_url=callback_url, spend=spend
        )

    async def send(
        self,
        account: Account,
        body: dict[str, Any],
        kind: TaskKind,
        model: str,
        expected_items: int,
        input_images: int | None,
        *,
        callback_url: str | None,
        spend: SpendMark,
        input_video: bool = False,
        parent_history_id: str | None = None,
    ) -> Submission:
        """Send one generate `body` for `account` (never re-sent once it may have been delivered), mark `spend`,
        and record the accepted submission (`on_submitted`). A withdrawn model (ret 2061) is 400 MODEL_WITHDRAWN.
        `input_video`: the body carries a video material (§17.5 `commerce_with_input_video`)."""
        try:
            with spend.attempt():
                generated = await self.client.generate_task(account, body, kind=kind.value, input_video=input_video)
        except UpstreamRetError as exc:
            if exc.ret == "2061":
                raise self.withdrawn(account, kind, model) from None
            raise
        payer = spend.payer or Payer(account.fingerprint)
        submission = Submission(
            account=account,
            history_id=generated.history_id,
            kind=kind,
            model=model,
            submit_id=str(body["submit_id"]),
            submitted_at=self.clock.time(),
            expected_items=expected_items,
            input_images=input_images,
            callback_url=callback_url,
            owner=payer.owner,
            account_id=payer.account_id,
            parent_history_id=parent_history_id,
            forecast=generated.forecast,
        )
        if self.on_submitted is not None:
            await self.on_submitted(submission)
        return submission

    def withdrawn(self, account: Account, kind: TaskKind, model: str) -> BadRequest:
        """400 MODEL_WITHDRAWN for a model the upstream answered `ret 2061` for, naming what the region has."""
        others = [m for m in self.models_of(kind, account.region) if m != model]
        return BadRequest(
            f"{kind.value} model '{model}' is no longer offered by the upstream in region {account.region.value} "
            f"(ret 2061 model no longer available); use one of: {', '.join(others)}",
            code="MODEL_WITHDRAWN",
        )

    async def discover_for(self, account: Account, model: str) -> None:
        """Run discovery (cached) when `model` is not in the table: it may be a key only the upstream lists.
        Never fails: without discovery the table decides."""
        if model not in catalog.IMAGE_MODELS:
            await self.models.refresh(account)

    def models_of(self, kind: TaskKind, region: Region) -> list[str]:
        """The model names of `kind` the region has (the table's, then keys only discovery lists)."""
        return self.models.names(kind.value, region)

    def with_default_count(self, params: ImageParams) -> ImageParams:
        """`params` with `[images] default_count` as `n` when the caller sent none (not in story mode, and only
        when the model offers that count); "model" leaves `n` out: the upstream's own default is made."""
        chosen = self.config.images.default_count
        if params.count is not None or chosen == "model" or params.story_count() is not None:
            return params
        count = int(chosen)
        if count not in catalog.image_counts(params.model) or catalog.forced_image_count(params.model):
            return params
        return dataclasses.replace(params, count=count)

    def expected_images(self, params: ImageParams, default: int | None) -> int:
        """How many images a submit of `params` makes: a model's fixed count, else `n`, the story count, the
        discovered default or the table's (blends: `catalog.BLEND_DEFAULT_COUNT` as `default`)."""
        forced = catalog.forced_image_count(params.model)
        return forced or params.count or params.story_count() or default or catalog.default_image_count(params.model)

    async def submit_images(self, caller: Caller, params: ImageParams, *, spend: SpendMark) -> Submission:
        """Text-to-image (single or multi-image) with the first usable account; `spend` records the generate."""
        params = self.with_default_count(params)
        await self.discover_for(caller.first, params.model)
        # Validate against the first account's region before spending anything; that job is the one sent when
        # the first account takes the submit (another account's region may resolve it differently).
        first = caller.first
        first_job = self.image_job(first, params)
        _, found = self.image_key(first, params.model)
        default = found.default_count if found is not None and found.default_count else None
        expected = self.expected_images(params, default)

        async def action(account: Account) -> Submission:
            job = first_job if account is first else self.image_job(account, params)
            return await self.submit_generate(
                account,
                job,
                kind=TaskKind.IMAGE,
                model=params.model,
                expected_items=expected,
                callback_url=params.callback_url,
                spend=spend,
            )

        _, submission = await self.accounts.submit(caller, action, spend=spend, cost=cost_key(params))
        return submission

    async def wait(self, submission: Submission) -> Outcome:
        """Await the task's outcome from the shared watcher, for at most its kind's deadline counted from the
        submit. When that passes: an outcome with status PROCESSING (a 504 for the caller); the task stays
        stored (and watched in the background if it is a background task) and can be queried later."""
        self.watcher.watch(
            submission.account,
            submission.history_id,
            submission.kind,
            submitted_at=submission.submitted_at,
            keep=False,
            model=submission.model,
            forecast=submission.forecast,
        )
        deadline = submission.submitted_at + self.watcher.schedule_for(submission.kind).deadline
        outcome = await self.watcher.wait(submission.history_id, deadline - self.clock.time())
        assert outcome is not None  # watched just above; a settled watch has its outcome on the future
        return outcome
