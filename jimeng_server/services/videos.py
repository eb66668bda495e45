"""Video generation: text-to-video, image-to-video, first+last frame and omni reference.

`VideoService.submit_video(accounts, params)` is shared by the sync endpoint and its async twin: it checks
the model against the first account's region before anything is fetched or spent, prepares the inputs
(downloads once, uploads per account), builds the body and sends exactly one generate through the same
path as images (`Generation._send` inside `AccountService.submit`, with credit check and fail-over).
Waiting and result mapping are the image ones (`Generation.wait`, `results.require_results`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..api.video_params import MediaSource, VideoParams
from ..errors import ApiError, BadRequest
from ..net.safe_fetch import Download
from ..tasks.models import TaskKind
from ..upstream import catalog
from ..upstream.tokens import Account
from ..upstream.video_payloads import FrameJob, ImageRef, VideoVersions, build_frame_video_generate
from .compositions import Compositions
from .generation import Generation, Submission
from .inputs import FileImage, InputImage, UrlImage

_SEED_LIMIT = 2**32  # video seeds are random integers in [0, 2^32) (§8.2)


class VideoService:
    """Submits video generations; waits through the shared `Generation`."""

    def __init__(self, generation: Generation, images: Compositions | None = None) -> None:
        self.generation = generation
        self.images = images  # image inputs: loading, ImageX upload and the CN content check
        up = generation.config.upstream
        self.versions = VideoVersions(version=up.draft_version, min_version=up.video_draft_min_version)

    @staticmethod
    def model_key(account: Account, params: VideoParams) -> str:
        """The upstream key of the requested model in the account's region; 400 listing the region's models."""
        try:
            return catalog.video_model_key(params.model, account.region)
        except catalog.CatalogError as exc:
            raise BadRequest(str(exc), code="UNSUPPORTED_MODEL") from None

    async def submit_video(self, accounts: list[Account], params: VideoParams) -> Submission:
        """Upload the inputs, submit one generate with the first usable account, return the submission.

        Refusal order, so nothing is uploaded or spent for a request that cannot succeed: model/region, then
        every input (guard, download, image check), then per account: credits, uploads + checks, generate.
        A failed upload or content check of ANY frame (the end frame too) fails the request.
        """
        self.model_key(accounts[0], params)  # refuse before any download, upload or spend
        if params.omni:
            raise ApiError(
                "omni_reference needs VOD video uploads, which this build does not have yet",
                code="NOT_IMPLEMENTED",
                status=501,
            )
        if not params.frames:
            _, submission = await self.generation.accounts.submit(accounts, lambda a: self._send_frames(a, params, ()))
            return submission
        if self.images is None:
            raise ApiError("image inputs are not configured in this server", code="NOT_IMPLEMENTED", status=501)
        inputs = await self.images.loader.load(_input_images(params.frames), proxy=accounts[0].proxy)
        try:

            async def action(account: Account) -> Submission:
                frames = await self.upload_images(account, inputs.files)
                return await self._send_frames(account, params, frames)

            _, submission = await self.generation.accounts.submit(accounts, action)
            return submission
        finally:
            inputs.cleanup()

    async def upload_images(self, account: Account, files: Sequence[Download]) -> tuple[ImageRef, ...]:
        """Upload and (CN) content-check each image for `account`, one after another; any failure raises."""
        assert self.images is not None
        refs = []
        for index, file in enumerate(files):
            image = await self.images.uploader.upload(account, file)
            await self.images.check(account, image.uri, index)
            refs.append(ImageRef(image.uri, image.width, image.height, image.format))
        return tuple(refs)

    async def _send_frames(self, account: Account, params: VideoParams, frames: tuple[ImageRef, ...]) -> Submission:
        gen = self.generation
        job = FrameJob(
            model_key=self.model_key(account, params),
            prompt=params.prompt,
            ratio=params.ratio,
            duration_s=params.duration,
            resolution=params.resolution,
            # The web client sends frames without size or format (§8.2).
            first_frame=ImageRef(frames[0].uri) if frames else None,
            end_frame=ImageRef(frames[1].uri) if len(frames) > 1 else None,
        )
        body = build_frame_video_generate(
            job,
            region=account.region,
            versions=self.versions,
            now_ms=int(gen.clock.time() * 1000),
            seed=gen.rng.randrange(_SEED_LIMIT),
        )
        return await gen._send(account, body, TaskKind.VIDEO, params.model, 1, len(frames) or None)


def _input_images(sources: Sequence[MediaSource]) -> list[InputImage]:
    out: list[InputImage] = []
    for source in sources:
        if source.file is not None:
            out.append(FileImage(source.file.download, source.file.filename))
        else:
            assert source.url is not None
            out.append(UrlImage(source.url))
    return out
