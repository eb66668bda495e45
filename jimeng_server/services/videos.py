"""Video generation: text-to-video, image-to-video, first+last frame and omni reference.

`VideoService.submit_video(caller, params, spend=)` is shared by the sync endpoint and its async twin: it checks
the model against the first account's region before anything is fetched or spent, prepares the inputs
(downloads once, uploads per account), builds the body and sends exactly one generate through the same
path as images (`Generation.send` inside `AccountService.submit`, with credit check and fail-over).
Waiting and result mapping are the image ones (`Generation.wait`, `results.require_results`).

Omni reference (Seedance 2.0 / 2.0 fast, CN only): images go to ImageX (+ the CN content check), videos to VOD
(`vod_upload.VideoUploader`), all of one account's uploads at most `uploads.concurrency` at a time. Videos must
be MP4/MOV files lasting at most 15 s in total (checked from our own reading of each file before anything is
uploaded, and again from VOD's durations after the commits).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import replace

from ..audio import HEAD_BYTES as AUDIO_HEAD_BYTES
from ..audio import AudioFacts, audio_facts
from ..concurrency import all_or_nothing
from ..errors import BadRequest
from ..net.spool import Download
from ..tasks.records import TaskKind
from ..upstream import catalog
from ..upstream.audits import AuditMaterial
from ..upstream.payloads import ImageRef
from ..upstream.tokens import Account
from ..upstream.video_payloads import (
    AudioRef,
    FrameJob,
    Material,
    OmniJob,
    VideoRef,
    VideoVersions,
    build_frame_video_generate,
    build_omni_video_generate,
    split_prompt,
)
from ..upstream.vod import VideoTooLong
from ..upstream.vod_upload import VideoUploader, read_movie
from .accounts import cost_key
from .callers import Caller
from .generation import Generation, Submission
from .idempotency import SpendMark
from .image_inputs import ImageInputs
from .inputs import FileImage, InputImage, UrlImage
from .model_list import VideoChoice, discovered_default, video_choice
from .params import MAX_OMNI_VIDEO_SECONDS, MediaSource, VideoParams

_SEED_LIMIT = 2**32  # video seeds are random integers in [0, 2^32) (§8.2)


class VideoService:
    """Submits video generations; waits through the shared `Generation`."""

    def __init__(self, generation: Generation, inputs: ImageInputs, videos: VideoUploader) -> None:
        self.generation = generation
        self.inputs = inputs  # loading every input; images: ImageX upload and the CN content check
        self.videos = videos  # omni video inputs: VOD upload
        up = generation.config.upstream
        self.versions = VideoVersions(
            version=up.draft_version, min_version=up.video_draft_min_version, da_version=up.da_version
        )
        self.benefits = up.video_benefits  # upstream key -> benefit type template (config: the sources conflict)
        self.omni_benefits = (up.omni_benefit_pro, up.omni_benefit_fast)  # config: the sources conflict

    def choice(self, account: Account, params: VideoParams) -> VideoChoice:
        """The requested model in the account's region, merged with its cached discovery (a key only discovery
        lists included); 400 UNSUPPORTED_MODEL listing the region's models."""
        region = account.region
        choice = video_choice(params.model, region, self.generation.models.cached(region))
        if choice is not None:
            return choice
        where = "is not available" if params.model in catalog.VIDEO_MODELS else "is unknown"
        raise BadRequest(
            f"video model '{params.model}' {where} in region {region.value}; use one of: "
            f"{', '.join(self.generation.models.names('video', region))}",
            code="UNSUPPORTED_MODEL",
        )

    def model_key(self, account: Account, params: VideoParams) -> str:
        """The upstream key of the requested model in the account's region; 400 listing the region's models."""
        return self.choice(account, params).key

    async def submit_video(self, caller: Caller, params: VideoParams, *, spend: SpendMark) -> Submission:
        """Upload the inputs, submit one generate with the first usable account, return the submission.

        Refusal order, so nothing is uploaded or spent for a request that cannot succeed: model/region, then
        every input (guard, download, image check), then per account: credits, uploads + checks, generate.
        A failed upload or content check of ANY frame (the end frame too) fails the request.

        When the caller named no model and the upstream answers ret 2061 (withdrawn) for the default, discovery
        is asked and the request is sent once more with the site's default model (nothing was accepted, so
        nothing is charged twice); the submission then reports that model.
        """
        try:
            return await self._submit_video(caller, params, spend)
        except BadRequest as exc:
            if exc.code != "MODEL_WITHDRAWN" or params.model_named:
                raise
            substitute = await self._discovered_default(caller.first, params)
            if substitute is None:
                raise
        return await self._submit_video(caller, substitute, spend)

    async def _discovered_default(self, account: Account, params: VideoParams) -> VideoParams | None:
        """`params` with the discovered default model instead of the withdrawn one (the caller's duration and
        resolution kept when it takes them, else its defaults), or None when discovery names no other."""
        models = self.generation.models
        region = account.region
        withdrawn = self.choice(account, params).key
        found = await models.refresh(account)
        name = discovered_default(region, found, not_key=withdrawn)
        choice = video_choice(name, region, found) if name is not None else None
        if choice is None or choice.key == withdrawn:
            return None
        spec = catalog.spec_of(choice.name)
        if params.omni and (spec is None or spec.omni_index is None):  # the default takes no omni reference
            return None
        resolution = params.resolution if params.resolution in choice.resolutions else None
        if resolution is None and choice.resolutions:
            resolution = choice.resolutions[0]
        duration = params.duration
        if duration not in choice.durations:
            duration = 5 if 5 in choice.durations else choice.default_duration or choice.durations[0]
        return replace(params, model=choice.name, resolution=resolution, duration=duration)

    async def _submit_video(self, caller: Caller, params: VideoParams, spend: SpendMark) -> Submission:
        self.model_key(caller.first, params)  # refuse before any download, upload or spend
        if params.omni:
            return await self._submit_omni(caller, params, spend)
        if not params.frames:
            _, submission = await self.generation.accounts.submit(
                caller, lambda a: self._send_frames(a, params, (), spend), spend=spend, cost=cost_key(params)
            )
            return submission
        inputs = await self.inputs.load(_input_images(params.frames), proxy=caller.first.proxy)
        try:

            async def action(account: Account) -> Submission:
                frames = await self.inputs.upload(account, inputs.files)
                return await self._send_frames(account, params, frames, spend)

            _, submission = await self.generation.accounts.submit(caller, action, spend=spend, cost=cost_key(params))
            return submission
        finally:
            inputs.cleanup()

    async def _submit_omni(self, caller: Caller, params: VideoParams, spend: SpendMark) -> Submission:
        """Omni reference: load every material, check the videos' lengths, then per account upload all materials
        and send one generate. Nothing is uploaded or spent for a request refused on its inputs."""
        proxy = caller.first.proxy
        images = await self.inputs.load(_input_images(params.images), proxy=proxy)
        try:
            videos = await self.inputs.load(_input_images(params.videos), proxy=proxy, kind="video")
            try:
                await self.check_video_lengths(videos.files, params.videos)
                audios = await self.inputs.load(_input_images(params.audios), proxy=proxy, kind="audio")
                try:
                    heard = await check_audios(audios.files, params.audios)

                    async def action(account: Account) -> Submission:
                        materials = await self.upload_materials(account, images.files, videos.files)
                        sounds = await self.upload_audios(account, audios.files, heard, params.audios)
                        return await self._send_omni(account, params, materials + sounds, spend)

                    _, submission = await self.generation.accounts.submit(
                        caller, action, spend=spend, cost=cost_key(params)
                    )
                    return submission
                finally:
                    audios.cleanup()
            finally:
                videos.cleanup()
        finally:
            images.cleanup()

    @staticmethod
    async def check_video_lengths(files: Sequence[Download], sources: Sequence[MediaSource]) -> list[float]:
        """Each video's duration from its own `moov` (no upload yet); 400 INVALID_VIDEO for a file we cannot
        read as MP4/MOV, 400 VIDEO_TOO_LONG when one or all together last longer than 15 s."""
        movies = await all_or_nothing(read_movie(f) for f in files)
        seconds: list[float] = []
        for index, (movie, source) in enumerate(zip(movies, sources, strict=True)):
            if movie is None:
                raise BadRequest(
                    f"video {index + 1} ({source.label}) is not an MP4/MOV file with a readable duration; "
                    "send an MP4 video",
                    code="INVALID_VIDEO",
                )
            seconds.append(movie.duration)
        _check_total(seconds)
        return seconds

    async def upload_materials(
        self, account: Account, image_files: Sequence[Download], video_files: Sequence[Download]
    ) -> tuple[ImageRef | VideoRef, ...]:
        """Upload the images (ImageX + CN content check: a verdict is 422) and videos (VOD) for `account`,
        `uploads.concurrency` at a time; the references in registration order (images, then videos).

        The videos' total from VOD's own durations must still be at most 15 s (else 400 VIDEO_TOO_LONG).
        """
        inputs, videos = self.inputs, self.videos
        slots = inputs.slots()

        async def image(index: int, file: Download) -> ImageRef:
            return await inputs.upload_one(account, file, index, slots)

        async def video(index: int, file: Download) -> VideoRef:
            async with slots:
                try:
                    committed = await videos.upload(account, file, max_seconds=MAX_OMNI_VIDEO_SECONDS)
                except VideoTooLong as exc:
                    raise _too_long(f"video {index + 1} lasts {exc.seconds:g} s") from None
            return VideoRef(committed.vid, committed.width, committed.height, committed.duration_ms)

        image_refs = [image(i, f) for i, f in enumerate(image_files)]
        video_refs = [video(i, f) for i, f in enumerate(video_files)]
        refs: list[ImageRef | VideoRef] = await all_or_nothing([*image_refs, *video_refs])
        _check_total([r.duration_ms / 1000 for r in refs if isinstance(r, VideoRef)])
        return tuple(refs)

    async def upload_audios(
        self,
        account: Account,
        files: Sequence[Download],
        heard: Sequence[AudioFacts],
        sources: Sequence[MediaSource],
    ) -> tuple[AudioRef, ...]:
        """Upload the reference audios through VOD (as videos, §17.10), `uploads.concurrency` at a time; the
        duration is VOD's, or our own reading when VOD gives none."""
        slots = self.inputs.slots()

        async def one(file: Download, facts: AudioFacts, source: MediaSource) -> AudioRef:
            async with slots:
                committed = await self.videos.upload(account, file, max_seconds=math.inf)
            seconds = committed.duration or facts.duration
            name = source.file.filename if source.file is not None else ""
            return AudioRef(committed.vid, round(seconds * 1000), name)

        return tuple(await all_or_nothing(one(*args) for args in zip(files, heard, sources, strict=True)))

    async def _send_omni(
        self, account: Account, params: VideoParams, materials: tuple[Material, ...], spend: SpendMark
    ) -> Submission:
        gen = self.generation
        key = self.model_key(account, params)
        await self.inputs.audit_generate(account, key, [audit_material(m) for m in materials])
        job = OmniJob(
            model_key=key,
            duration_s=params.duration,
            materials=materials,
            parts=split_prompt(params.prompt, params.reference_names()),
        )
        body = build_omni_video_generate(
            job,
            region=account.region,
            versions=self.versions,
            now_ms=int(gen.clock.time() * 1000),
            seed=gen.rng.randrange(_SEED_LIMIT),
            ratio=params.ratio,
            omni_benefits=self.omni_benefits,
        )
        images = len(params.images) or None
        return await gen.send(
            account,
            body,
            TaskKind.VIDEO,
            params.model,
            1,
            images,
            callback_url=params.callback_url,
            spend=spend,
            input_video=bool(params.videos),
        )

    async def _send_frames(
        self, account: Account, params: VideoParams, frames: tuple[ImageRef, ...], spend: SpendMark
    ) -> Submission:
        gen = self.generation
        key = self.model_key(account, params)
        await self.inputs.audit_generate(account, key, [AuditMaterial(f.uri, 1) for f in frames])
        spec = catalog.spec_of(params.model)
        template = self.benefits.get(key)
        discovered = self.choice(account, params).benefits  # only for a key the table lacks (§19.13 conflict 4)
        job = FrameJob(
            model_key=key,
            prompt=params.prompt,
            ratio=params.ratio,
            duration_s=params.duration,
            resolution=params.resolution,
            # The web client sends frames without size or format (§8.2).
            first_frame=ImageRef(frames[0].uri) if frames else None,
            end_frame=ImageRef(frames[1].uri) if len(frames) > 1 else None,
            min_features=spec.min_features if spec is not None else (),
            draft_mode=spec.draft_mode if spec is not None else False,
            benefit=(
                template.format(res=params.resolution or "720p")
                if template
                else discovered.get(params.resolution or "") or next(iter(discovered.values()), None)
            ),
        )
        body = build_frame_video_generate(
            job,
            region=account.region,
            versions=self.versions,
            now_ms=int(gen.clock.time() * 1000),
            seed=gen.rng.randrange(_SEED_LIMIT),
        )
        images = len(frames) or None
        return await gen.send(
            account, body, TaskKind.VIDEO, params.model, 1, images, callback_url=params.callback_url, spend=spend
        )


def audit_material(material: Material) -> AuditMaterial:
    """A generate material as the audit names it: an image's uri, or a video's or audio's vid (§19.8)."""
    if isinstance(material, ImageRef):
        return AuditMaterial(material.uri, 1)
    return AuditMaterial(material.vid, 2 if isinstance(material, VideoRef) else 3)


async def read_audio(file: Download) -> AudioFacts | None:
    """Format and duration from the spooled file's first `audio.HEAD_BYTES` (in a worker thread)."""

    def read() -> AudioFacts | None:
        with file.path.open("rb") as f:
            return audio_facts(f.read(AUDIO_HEAD_BYTES), file.size)

    return await asyncio.to_thread(read)


async def check_audios(files: Sequence[Download], sources: Sequence[MediaSource]) -> list[AudioFacts]:
    """Each audio's format and duration from its first bytes (no upload yet); 400 INVALID_AUDIO for anything
    but MP3 or WAV (§17.10)."""
    heard = []
    read = await all_or_nothing(read_audio(f) for f in files)
    for index, (facts, source) in enumerate(zip(read, sources, strict=True)):
        if facts is None or facts.duration <= 0:
            raise BadRequest(
                f"audio {index + 1} ({source.label}) is not an MP3 or WAV file with a readable length; "
                "send .mp3 or .wav",
                code="INVALID_AUDIO",
            )
        heard.append(facts)
    return heard


def _too_long(what: str) -> BadRequest:
    return BadRequest(
        f"{what}; omni_reference takes videos lasting at most {MAX_OMNI_VIDEO_SECONDS:g} s in total",
        code="VIDEO_TOO_LONG",
    )


def _check_total(seconds: Sequence[float]) -> None:
    """400 VIDEO_TOO_LONG when one video or all together last longer than the omni limit."""
    for index, value in enumerate(seconds):
        if value > MAX_OMNI_VIDEO_SECONDS:
            raise _too_long(f"video {index + 1} lasts {value:g} s")
    total = sum(seconds)
    if total > MAX_OMNI_VIDEO_SECONDS:
        raise _too_long(f"the videos last {total:g} s together")


def _input_images(sources: Sequence[MediaSource]) -> list[InputImage]:
    out: list[InputImage] = []
    for source in sources:
        if source.file is not None:
            out.append(FileImage(source.file.download, source.file.filename))
        else:
            assert source.url is not None
            out.append(UrlImage(source.url))
    return out
