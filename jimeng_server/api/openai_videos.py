"""The video shapes gateways speak (gateway_params.py reads their requests, services/video_shapes.py shapes their
answers), on our async video tasks: the same submit as `POST /v1/async/videos/generations` (parser,
Idempotency-Key, API keys and the pool, `callback_url`), the same ids, and answers built from the task query
(`TaskQueries`), so they agree with it and the webhook.

- OpenAI Videos: `POST /v1/videos` (JSON or multipart with an `input_reference` file), `GET /v1/videos`
  (the caller's latest video tasks, newest first), `GET /v1/videos/{id}`,
  `GET /v1/videos/{id}/content` (the MP4, streamed through from the upstream's CDN).
- new-api's unified shape: `POST /v1/video/generations` -> `task_id`, `GET /v1/video/generations/{task_id}`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from ..errors import BadGateway, BadRequest, Conflict
from ..services.callers import Caller
from ..services.results import failure_error
from ..services.task_queries import not_found
from ..services.video_shapes import gateway_task, openai_video, status_of
from ..tasks.records import TaskKind
from .appkeys import CONFIG, POOL, QUERIES, TASK_RECORDS, VIDEOS
from .async_tasks import history_id_value
from .callbacks import callback_url_of
from .fields import MAX_FRAMES, OPENAI_VIDEO, VIDEO_CONTENT, VIDEO_LIST
from .forms import request_fields
from .gateway_params import gateway_video_fields, openai_video_fields
from .request import caller_of, json_object
from .responses import json_answer
from .task_stream import submit_once
from .video_params import video_params
from .videos import chooser

routes = web.RouteTableDef()
log = logging.getLogger(__name__)

_CHUNK = 64 * 1024

FieldsOf = Callable[[Mapping[str, Any], Mapping[str, str]], dict[str, Any]]
"""A gateway shape's body and the aliases in force -> the video parser's fields (`gateway_params.py`)."""


async def _submit(
    request: web.Request, caller: Caller, data: Mapping[str, Any], fields_of: FieldsOf
) -> tuple[web.Response, dict[str, Any]]:
    """Submit a video task from a gateway-shaped body; the answer of `idempotent` (a replayed error as it is)
    and the accepted body (`history_id`, `created`; empty for an error)."""
    aliases = request.app[CONFIG].models.all_aliases
    params = video_params(fields_of(data, aliases), aliases=aliases, choose=chooser(request, caller))
    params = dataclasses.replace(params, callback_url=await callback_url_of(request, data))
    videos = request.app[VIDEOS]
    return await submit_once(request, data, lambda spend: videos.submit_video(caller, params, spend=spend))


async def _task(request: web.Request, caller: Caller, name: str) -> tuple[dict[str, Any], str, int]:
    """The query body of the caller's video task named in the path, its model and submit time."""
    history_id = history_id_value(request.match_info[name], name)
    body: dict[str, Any] = json.loads(await request.app[QUERIES].query(caller, history_id))
    if body.get("task_type") != TaskKind.VIDEO.value:
        raise not_found(history_id)
    row = await request.app[TASK_RECORDS].find(history_id)
    model = row.model if row is not None else "unknown"
    created = int(row.created_at) if row is not None else 0
    return body, model, created


@routes.post("/v1/videos")
async def create_video(request: web.Request) -> web.Response:
    """OpenAI's `videos.create`: answered at once with the `video` object (status `queued`)."""
    caller = await caller_of(request)
    limit = request.app[CONFIG].server.max_body_bytes
    async with request_fields(request, max_bytes=limit, max_files=MAX_FRAMES) as data:
        answer, accepted = await _submit(request, caller, data, openai_video_fields)
        if not accepted:
            return answer
        body = {"history_id": accepted["history_id"], "status": 20, "queue": None, "results": None}
        seconds, size = OPENAI_VIDEO["seconds"], OPENAI_VIDEO["size"]
        video = openai_video(
            body,
            model=OPENAI_VIDEO["model"].read(data),
            created_at=int(accepted["created"]),
            seconds=str(data[seconds.name]) if seconds.sent(data) else None,  # as asked
            size=str(data[size.name]) if size.sent(data) else None,
        )
        return json_answer(video | {"status": "queued", "progress": 0})


@routes.get("/v1/videos")
async def list_videos(request: web.Request) -> web.Response:
    """OpenAI's `videos.list`: the caller's latest video tasks (`?limit=`), newest first (`?order=asc`: the same
    page oldest first); `fields.VIDEO_LIST`."""
    caller = await caller_of(request)
    limit: int = VIDEO_LIST["limit"].read(request.query)
    order: str = VIDEO_LIST["order"].read(request.query)
    rows = await request.app[TASK_RECORDS].recent_of(sorted(caller.owners), TaskKind.VIDEO, limit)
    if order == "asc":
        rows.reverse()
    answer = json.loads(await request.app[QUERIES].query_many(caller, [r.history_id for r in rows]))
    bodies = {b["history_id"]: b for b in answer["data"]}
    data = [
        openai_video(bodies[r.history_id], model=r.model, created_at=int(r.created_at))
        for r in rows
        if r.history_id in bodies
    ]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return json_answer({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": False})


@routes.get("/v1/videos/{video_id}")
async def retrieve_video(request: web.Request) -> web.Response:
    """OpenAI's `videos.retrieve`: status, progress, error (and `url` once completed)."""
    caller = await caller_of(request)
    body, model, created = await _task(request, caller, "video_id")
    return json_answer(openai_video(body, model=model, created_at=created))


@routes.get("/v1/videos/{video_id}/content")
async def video_content(request: web.Request) -> web.StreamResponse:
    """OpenAI's `videos.download_content`: the MP4, streamed from the upstream's CDN through the paying
    account's proxy. 409 VIDEO_NOT_READY while the task runs; a failed task is its error."""
    caller = await caller_of(request)
    declared = VIDEO_CONTENT["variant"]
    variant = request.query.get(declared.name) or declared.default
    if variant not in declared.choices:
        raise BadRequest(
            f"'{declared.name}' {variant!r} is not available: only the video itself", code="UNSUPPORTED_PARAMETER"
        )
    body, _, _ = await _task(request, caller, "video_id")
    history_id = str(body["history_id"])
    status = status_of(body)
    if status in ("queued", "in_progress"):
        raise Conflict(f"video {history_id} is {status}; download it once it is completed", code="VIDEO_NOT_READY")
    if status == "failed":
        raise failure_error(history_id, body.get("error"))
    owned = await request.app[QUERIES].owner_account(caller, history_id)
    proxy = owned[1].proxy if owned is not None and owned[1] is not None else None
    config = request.app[CONFIG]
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.upstream.connect_timeout, sock_read=60.0)
    response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
    try:
        async with request.app[POOL].get(proxy).get(body["results"][0]["url"], timeout=timeout) as upstream:
            if upstream.status >= 400:
                raise BadGateway(
                    f"the video file could not be fetched (HTTP {upstream.status})", code="RESULT_FETCH_FAILED"
                )
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(_CHUNK):
                await response.write(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        if not response.prepared:
            raise BadGateway(
                f"the video file could not be fetched ({type(exc).__name__})", code="RESULT_FETCH_FAILED"
            ) from None
        log.warning("video %s: the upstream stopped sending (%s); the answer is cut short", history_id, exc)
        return response  # the client sees fewer bytes than Content-Length
    await response.write_eof()
    return response


@routes.post("/v1/video/generations")
async def gateway_create(request: web.Request) -> web.Response:
    """new-api's unified video submit: answered at once with `task_id` and status `queued`."""
    caller = await caller_of(request)
    data = await json_object(request)
    answer, accepted = await _submit(request, caller, data, gateway_video_fields)
    if not accepted:
        return answer
    body = {"history_id": accepted["history_id"], "status": 20, "queue": None, "results": None}
    return json_answer(gateway_task(body) | {"status": "queued"})


@routes.get("/v1/video/generations/{task_id}")
async def gateway_get(request: web.Request) -> web.Response:
    """new-api's unified video query: status, `url` once completed, `error` once failed."""
    caller = await caller_of(request)
    body, _, _ = await _task(request, caller, "task_id")
    return json_answer(gateway_task(body))
