"""Video generation: text-to-video, image-to-video, first+last frame and omni reference.

`VideoService.submit_video(accounts, params)` is shared by the sync endpoint and its async twin: it checks
the model against the first account's region before anything is fetched or spent, prepares the inputs
(downloads once, uploads per account), builds the body and sends exactly one generate through the same
path as images (`Generation._send` inside `AccountService.submit`, with credit check and fail-over).
Waiting and result mapping are the image ones (`Generation.wait`, `results.require_results`).
"""

from __future__ import annotations

from ..api.video_params import VideoParams
from ..errors import ApiError, BadRequest
from ..tasks.models import TaskKind
from ..upstream import catalog
from ..upstream.tokens import Account
from ..upstream.video_payloads import FrameJob, VideoVersions, build_frame_video_generate
from .generation import Generation, Submission

_SEED_LIMIT = 2**32  # video seeds are random integers in [0, 2^32) (§8.2)


class VideoService:
    """Submits video generations; waits through the shared `Generation`."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
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
        """Upload the inputs, submit one generate with the first usable account, return the submission."""
        self.model_key(accounts[0], params)  # refuse before any download, upload or spend
        if params.omni or params.frames:
            raise ApiError(
                "image and video inputs are not available in this build yet; send a text-to-video request",
                code="NOT_IMPLEMENTED",
                status=501,
            )

        async def action(account: Account) -> Submission:
            return await self._send_frames(account, params)

        _, submission = await self.generation.accounts.submit(accounts, action)
        return submission

    async def _send_frames(self, account: Account, params: VideoParams) -> Submission:
        gen = self.generation
        job = FrameJob(
            model_key=self.model_key(account, params),
            prompt=params.prompt,
            ratio=params.ratio,
            duration_s=params.duration,
            resolution=params.resolution,
        )
        body = build_frame_video_generate(
            job,
            region=account.region,
            versions=self.versions,
            now_ms=int(gen.clock.time() * 1000),
            seed=gen.rng.randrange(_SEED_LIMIT),
        )
        return await gen._send(account, body, TaskKind.VIDEO, params.model, 1, None)
