"""Post-edits of a picture or clip: upscale (hd/pro), outpaint, detail repair and frame interpolation
(../shared/upstream-protocol.md §19.5). Shared by the sync endpoints and their async twins.

The source is an input image (URL, data URI, file: uploaded for the chosen account, like a composition's
inputs) or a result of one of the caller's own tasks (`history_id` + `index`). A task result is edited on the
account that made it, whatever the pool would pick: the upstream needs the item in the same account. Order of
refusals, so nothing is uploaded or spent for a request that cannot succeed: the tool in the account's region,
the source task (404 when it is not the caller's, 409 while it is not finished), the item, then the inputs and
the generate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest, Conflict
from ..store.base import Store
from ..tasks.records import TaskKind, TaskRecord, TaskStatus
from ..upstream.history import parse_record
from ..upstream.payloads import ImageRef
from ..upstream.postedit_payloads import (
    Expansion,
    InterpolationJob,
    OwnItem,
    PostEditJob,
    PostEditTool,
    build_interpolation_generate,
    build_postedit_generate,
    check_region,
    expansion_for_ratio,
    item_image_size,
    item_video,
)
from ..upstream.tokens import Account
from .callers import Caller, ResolveAccount
from .generation import Generation, Submission
from .idempotency import SpendMark
from .image_inputs import ImageInputs
from .inputs import InputImage
from .task_queries import not_found

INTERPOLATE = "insert_frame"  # the model name recorded for interpolation tasks


@dataclass(frozen=True, slots=True)
class SourceTask:
    """A result of one of the caller's tasks: its history id and the item's index (from 0)."""

    history_id: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class PostEditParams:
    """A validated post-edit request. Exactly one of `image` and `task` is set (the API layer checks)."""

    tool: PostEditTool
    image: InputImage | None = None
    task: SourceTask | None = None
    expansion: Expansion | None = None  # outpaint per-side
    ratio: str | None = None  # outpaint target ratio ("16:9"), resolved against the source's size
    count: int | None = None  # outpaint's n
    callback_url: str | None = None


@dataclass(frozen=True, slots=True)
class _Parent:
    row: TaskRecord
    item: OwnItem
    raw_item: dict[str, Any]


def _ratio(text: str) -> tuple[int, int]:
    w, _, h = text.partition(":")
    return int(w), int(h)


class PostEdits:
    """Submits post-edits on top of `Generation` (accounts, watcher, task intake)."""

    def __init__(
        self,
        generation: Generation,
        inputs: ImageInputs,
        store: Store,
        *,
        resolve_account: ResolveAccount | None,
        ratio_codes: dict[str, int],
        on_child: Callable[[str], None] | None = None,
    ) -> None:
        """`on_child(parent)` is called after a post-edit of task `parent` was recorded (its answer changed)."""
        self.generation = generation
        self.on_child = on_child
        self.inputs = inputs
        self.store = store
        self.resolve_account = resolve_account
        self.ratio_codes = ratio_codes

    async def _parent(self, caller: Caller, source: SourceTask, kind: TaskKind) -> _Parent:
        """The caller's finished task and its item `source.index`; 404 for another owner's or an unknown task."""
        row = await self.store.get(source.history_id)
        if row is None or row.account_fp not in caller.owners:
            raise not_found(source.history_id)
        if row.kind is not kind:
            raise BadRequest(
                f"task {source.history_id!r} is a {row.kind.value} task; this endpoint edits {kind.value} results",
                code="INVALID_PARAMETER",
            )
        if row.status is not TaskStatus.DONE or row.raw_data is None:
            raise Conflict(
                f"task {source.history_id!r} has not finished with results yet (status {row.status.name.lower()}); "
                "query it and retry once it is done",
                code="TASK_NOT_FINISHED",
            )
        record = parse_record(row.raw_data)
        items = [i for i in row.raw_data.get("item_list") or [] if isinstance(i, dict)]
        if not 0 <= source.index < min(len(record.item_ids), len(items)):
            raise BadRequest(
                f"'index' must be from 0 to {len(record.item_ids) - 1} for task {source.history_id!r}, "
                f"got {source.index}",
                code="INVALID_PARAMETER",
            )
        return _Parent(row, OwnItem(record.item_ids[source.index], row.history_id), items[source.index])

    async def _owner_caller(self, caller: Caller, row: TaskRecord) -> Caller:
        """The caller narrowed to the account that made `row` (the upstream needs the item in that account)."""
        if row.account_id is None:
            account = caller.account_with(row.account_fp)
            if account is None:
                raise not_found(row.history_id)
            return Caller((account,))
        key = caller.key
        allowed = key is not None and (key.accounts is None or row.account_id in key.accounts)
        account = await self.resolve_account(row.account_id) if allowed and self.resolve_account is not None else None
        if account is None or key is None:
            raise Conflict(
                f"the pool account that made task {row.history_id!r} is no longer available to this API key (the "
                "upstream needs the picture in that account); ask the operator, or edit a newer task",
                code="ACCOUNT_UNAVAILABLE",
            )
        return Caller((account,), dataclasses.replace(key, accounts=(row.account_id,)))

    def _expansion(self, params: PostEditParams, size: tuple[int, int]) -> Expansion | None:
        if params.tool is not PostEditTool.PAINTING or params.expansion is not None:
            return params.expansion
        assert params.ratio is not None
        try:
            return expansion_for_ratio(size[0], size[1], _ratio(params.ratio), self.ratio_codes[params.ratio])
        except ValueError as exc:
            raise BadRequest(f"cannot outpaint to ratio {params.ratio}: {exc}", code="INVALID_PARAMETER") from None

    async def submit_image(self, caller: Caller, params: PostEditParams, *, spend: SpendMark) -> Submission:
        """Upscale, outpaint or repair: one generate for the source's account (a task result) or the first
        usable one (an input image, uploaded for it)."""
        generation = self.generation
        expected = params.count or (4 if params.tool is PostEditTool.PAINTING else 1)
        if params.task is not None:
            parent = await self._parent(caller, params.task, TaskKind.IMAGE)
            owner = await self._owner_caller(caller, parent.row)
            self._check_region(owner.first, params.tool.value)
            expansion = self._expansion(params, item_image_size(parent.raw_item) or (0, 0))
            job = PostEditJob(params.tool, parent.item, expansion=expansion, count=params.count)

            async def from_item(account: Account) -> Submission:
                return await self._send_image(account, job, expected, params, spend, parent.row.history_id)

            _, submission = await generation.accounts.submit(owner, from_item, spend=spend, cost=params.tool.value)
            self._recorded(parent.row.history_id)
            return submission
        assert params.image is not None
        self._check_region(caller.first, params.tool.value)
        inputs = await self.inputs.load([params.image], proxy=caller.first.proxy)
        try:

            async def from_upload(account: Account) -> Submission:
                self._check_region(account, params.tool.value)  # a pool may hold accounts of several regions
                (image,) = await self.inputs.upload(account, inputs.files)
                ref = ImageRef(image.uri, image.width, image.height, image.format)
                job = PostEditJob(
                    params.tool,
                    ref,
                    expansion=self._expansion(params, (image.width, image.height)),
                    count=params.count,
                )
                return await self._send_image(account, job, expected, params, spend, None)

            _, submission = await generation.accounts.submit(caller, from_upload, spend=spend, cost=params.tool.value)
            return submission
        finally:
            inputs.cleanup()

    def _check_region(self, account: Account, tool: str) -> None:
        try:
            check_region(tool, account.region)
        except ValueError as exc:
            raise BadRequest(str(exc), code="UNSUPPORTED_TOOL") from None

    async def _send_image(
        self,
        account: Account,
        job: PostEditJob,
        expected: int,
        params: PostEditParams,
        spend: SpendMark,
        parent: str | None,
    ) -> Submission:
        generation = self.generation
        up = generation.config.upstream
        body = build_postedit_generate(
            job,
            region=account.region,
            version=up.da_version,
            component_min_version=generation.versions.min_version,
            now_ms=int(generation.clock.time() * 1000),
        )
        return await generation.send(
            account,
            body,
            TaskKind.IMAGE,
            job.tool.value,
            expected,
            1 if parent is None else None,
            callback_url=params.callback_url,
            spend=spend,
            parent_history_id=parent,
        )

    async def submit_interpolation(
        self, caller: Caller, source: SourceTask, *, callback_url: str | None, spend: SpendMark
    ) -> Submission:
        """Frame interpolation (60 fps, free) of a video result of one of the caller's tasks, on its account."""
        parent = await self._parent(caller, source, TaskKind.VIDEO)
        owner = await self._owner_caller(caller, parent.row)
        self._check_region(owner.first, INTERPOLATE)
        clip = item_video(parent.raw_item)
        if clip is None:
            raise Conflict(
                f"the upstream record of task {source.history_id!r} names no video id (vid) to interpolate",
                code="TASK_NOT_FINISHED",
            )
        job = InterpolationJob(clip.vid, clip.duration_ms, source=parent.item, origin_fps=clip.fps)

        async def action(account: Account) -> Submission:
            generation = self.generation
            body = build_interpolation_generate(
                job,
                region=account.region,
                version=generation.config.upstream.da_version,
                now_ms=int(generation.clock.time() * 1000),
            )
            return await generation.send(
                account,
                body,
                TaskKind.VIDEO,
                INTERPOLATE,
                1,
                None,
                callback_url=callback_url,
                spend=spend,
                parent_history_id=source.history_id,
            )

        _, submission = await self.generation.accounts.submit(owner, action, spend=spend, cost=INTERPOLATE)
        self._recorded(source.history_id)
        return submission

    def _recorded(self, parent: str) -> None:
        if self.on_child is not None:
            self.on_child(parent)
