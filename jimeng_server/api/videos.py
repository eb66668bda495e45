"""Video endpoint (sync): `POST /v1/videos/generations`, JSON or multipart.

Answers `{"created", "data": [{"url", "revised_prompt"}]}`. With `response_format=b64_json` each video is
first downloaded to a temporary file (so a failed download is still a proper error), then streamed out as
base64 inside the JSON body, chunk by chunk, never whole in memory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..errors import BadRequest
from ..net.spool import Download
from ..services.callers import Caller
from ..services.generation import Submission
from ..services.idempotency import SpendMark
from ..services.params import VideoParams
from ..services.results import partial_note, require_results, spool_result
from ..store.models import Outcome
from .appkeys import CONFIG, POOL, VIDEOS
from .callbacks import refuse_callback_url
from .forms import request_fields
from .idempotency import HEADER, idempotent
from .request import caller_of
from .video_params import MAX_OMNI_AUDIOS, MAX_OMNI_MATERIALS, video_params

routes = web.RouteTableDef()

_B64_CHUNK = 3 * 64 * 1024  # a multiple of 3: base64 of each chunk joins without padding


@contextlib.asynccontextmanager
async def video_request(request: web.Request) -> AsyncIterator[tuple[Caller, dict[str, Any], VideoParams]]:
    """The caller, fields (files spooled until the block ends) and validated parameters of a video
    request (sync and async twins)."""
    caller = await caller_of(request)
    limit = request.app[CONFIG].server.max_body_bytes
    async with request_fields(request, max_bytes=limit, max_files=MAX_OMNI_MATERIALS + MAX_OMNI_AUDIOS) as data:
        yield caller, data, video_params(data, aliases=request.app[CONFIG].models.aliases)


@routes.post("/v1/videos/generations")
async def generations(request: web.Request) -> web.StreamResponse:
    """Generate a video (text, first frame, first+last frame or omni reference) and answer with its URL."""
    videos = request.app[VIDEOS]
    async with video_request(request) as (caller, data, params):
        refuse_callback_url(data, "/v1/async/videos/generations")
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
                body: dict[str, Any] = {
                    "created": int(sub.submitted_at),
                    "data": [{"url": u, "revised_prompt": params.prompt} for u in require_results(outcome)],
                }
                _add_note(body, outcome)
                return web.json_response(body, dumps=_dumps)

            return await idempotent(request, data, respond)
    outcome = await videos.generation.wait(submission)
    return await _stream_b64(request, submission, outcome, params, require_results(outcome))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _add_note(body: dict[str, Any], outcome: Outcome) -> None:
    note = partial_note(outcome)
    if note:
        body["note"] = note


async def _stream_b64(
    request: web.Request, submission: Submission, outcome: Outcome, params: VideoParams, urls: tuple[str, ...]
) -> web.StreamResponse:
    cfg = request.app[CONFIG].security
    files: list[Download] = []
    try:
        for url in urls:
            files.append(
                await spool_result(
                    request.app[POOL],
                    submission.account,
                    url,
                    max_bytes=cfg.max_download_bytes,
                    seconds=cfg.fetch_timeout,
                )
            )
        resp = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
        await resp.prepare(request)
        await resp.write(f'{{"created":{int(submission.submitted_at)},"data":['.encode())
        prompt = _dumps(params.prompt)
        for n, download in enumerate(files):
            await resp.write(f'{"," if n else ""}{{"revised_prompt":{prompt},"b64_json":"'.encode())
            async for chunk in _file_chunks(download):
                await resp.write(base64.b64encode(chunk))
            await resp.write(b'"}')
        tail: dict[str, Any] = {}
        _add_note(tail, outcome)
        await resp.write(b"]" + (b"," + _dumps(tail)[1:-1].encode() if tail else b"") + b"}")
        await resp.write_eof()
        return resp
    finally:
        for download in files:
            download.cleanup()


async def _file_chunks(download: Download) -> AsyncIterator[bytes]:
    """The file's bytes in chunks whose sizes are multiples of 3 (except the last)."""
    with download.path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, _B64_CHUNK):
            yield chunk
