"""Video endpoint (sync): `POST /v1/videos/generations`, JSON or multipart.

Answers `{"created", "data": [{"url", "revised_prompt"}]}`. With `response_format=b64_json` each video is
first downloaded to a temporary file (so a failed download is still a proper error), then streamed out as
base64 inside the JSON body, chunk by chunk, never whole in memory (`b64_answers.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import web

from ..errors import BadRequest
from ..services.answers import json_text
from ..services.callers import Caller
from ..services.idempotency import SpendMark
from ..services.model_list import VideoChoice
from ..services.params import VideoParams
from ..services.results import partial_note, require_results
from ..tasks.records import Outcome, TaskKind
from ..upstream.discovery import DiscoveredModel
from .appkeys import CONFIG, GENERATION, VIDEOS
from .b64_answers import spooled_results
from .callbacks import refuse_callback_url
from .fields import VIDEO
from .files import sync_links
from .forms import request_fields
from .idempotency import HEADER, idempotent
from .request import caller_of
from .responses import json_answer
from .task_stream import stream_submit, wants_stream
from .video_params import MAX_OMNI_AUDIOS, MAX_OMNI_MATERIALS, VideoChooser, video_params

routes = web.RouteTableDef()


@contextlib.asynccontextmanager
async def video_request(request: web.Request) -> AsyncIterator[tuple[Caller, dict[str, Any], VideoParams]]:
    """The caller, fields (files spooled until the block ends) and validated parameters of a video
    request (sync and async twins)."""
    caller = await caller_of(request)
    limit = request.app[CONFIG].server.max_body_bytes
    aliases = request.app[CONFIG].models.all_aliases
    registry = request.app[GENERATION].models
    async with request_fields(request, max_bytes=limit, max_files=MAX_OMNI_MATERIALS + MAX_OMNI_AUDIOS) as data:
        asked: str = VIDEO["model"].read(data)  # the default when not named
        model = aliases.get(asked, asked)
        named = VIDEO["model"].sent(data)
        found = await registry.for_video(caller.first, model, named)
        yield caller, data, video_params(data, aliases=aliases, choose=chooser(request, caller, found))


def chooser(request: web.Request, caller: Caller, found: Sequence[DiscoveredModel] | None = None) -> VideoChooser:
    """The video model chooser of `video_params` for the caller's first account's region, over `found` (default:
    that region's cached discovery answer, no upstream call), so every video endpoint resolves alike."""
    registry = request.app[GENERATION].models
    region = caller.first.region
    listed = registry.cached(region) if found is None else found

    def choose(model: str, named: bool) -> VideoChoice | None:
        return registry.choose_video(region, listed, model, named)

    return choose


@routes.post("/v1/videos/generations")
async def generations(request: web.Request) -> web.StreamResponse:
    """Generate a video (text, first frame, first+last frame or omni reference) and answer with its URL."""
    videos = request.app[VIDEOS]
    async with video_request(request) as (caller, data, params):
        refuse_callback_url(data, "/v1/async/videos/generations")
        if wants_stream(data):
            return await stream_submit(
                request, caller, data, lambda spend: videos.submit_video(caller, params, spend=spend), TaskKind.VIDEO
            )
        if params.response_format == "b64_json":
            if HEADER in request.headers:
                raise BadRequest(
                    f"'{HEADER}' works here with response_format=url only (a streamed base64 answer cannot be "
                    "replayed); use url, or POST /v1/async/videos/generations",
                    code="UNSUPPORTED_PARAMETER",
                )
            submission = await videos.submit_video(caller, params, spend=SpendMark())  # no key: nothing to record
        else:

            async def respond(spend: SpendMark) -> web.Response:
                sub = await videos.submit_video(caller, params, spend=spend)
                outcome = await videos.generation.wait(sub)
                urls = await sync_links(request, outcome.history_id, require_results(outcome))  # keep = local / s3
                body: dict[str, Any] = {
                    "created": int(sub.submitted_at),
                    "model": sub.model,  # the model that made it (the discovered default when one replaced ours)
                    "data": [{"url": u, "revised_prompt": params.prompt} for u in urls],
                }
                _add_note(body, outcome)
                return json_answer(body)

            return await idempotent(request, data, respond)
    outcome = await videos.generation.wait(submission)
    async with spooled_results(request, submission.account, require_results(outcome)) as files:
        body: dict[str, Any] = {
            "created": int(submission.submitted_at),
            "model": submission.model,
            "data": [{"revised_prompt": params.prompt, "b64_json": slot} for slot in files.slots],
        }
        _add_note(body, outcome)
        return await files.stream(request, body, dumps=json_text)


def _add_note(body: dict[str, Any], outcome: Outcome) -> None:
    note = partial_note(outcome)
    if note:
        body["note"] = note
