"""Async task endpoints (async-api-spec.zh.md): submit and answer at once with the history id; query later.

Submits reuse their sync twin's parsing and submit code and the same `Idempotency-Key` handling; the
accepted task is recorded and watched by the task service before the answer leaves. Each submit may carry
`callback_url` (api/callbacks.py): checked before anything is spent, stored with the task, and POSTed the
final task event by the webhook sender.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from aiohttp import web

from ..errors import BadRequest
from ..services.idempotency import SpendMark
from ..services.params import ImageParams, VideoParams
from ..services.task_queries import MAX_BATCH
from .appkeys import COMPOSITIONS, GENERATION, QUERIES, VIDEOS
from .callbacks import callback_url_of
from .fields import MAX_HISTORY_ID_LENGTH, TASK_QUERY, TASK_WAIT
from .idempotency import idempotent
from .images import composition_request, generation_request
from .request import caller_of, json_object
from .responses import encoded_answer
from .task_stream import SUBMITTED_MESSAGE as SUBMITTED_MESSAGE  # re-exported (api/openapi.py)
from .task_stream import submitted
from .videos import video_request

routes = web.RouteTableDef()

_Params = TypeVar("_Params", ImageParams, VideoParams)


def with_callback(params: _Params, callback_url: str | None) -> _Params:
    """`params` (parsed by the sync twin's parser, so without a callback) with the submit's `callback_url`; the
    same object when there is none."""
    return params if callback_url is None else dataclasses.replace(params, callback_url=callback_url)


@routes.post("/v1/async/images/generations")
async def images_generations(request: web.Request) -> web.Response:
    """Text-to-image, answered as soon as the upstream accepted it (fields as `/v1/images/generations`,
    plus `callback_url`)."""
    caller, data, params = await generation_request(request)
    params = with_callback(params, await callback_url_of(request, data))

    async def respond(spend: SpendMark) -> web.Response:
        return submitted(await request.app[GENERATION].submit_images(caller, params, spend=spend))

    return await idempotent(request, data, respond)


@routes.post("/v1/async/images/compositions")
async def images_compositions(request: web.Request) -> web.Response:
    """Image-to-image, answered once the upstream accepted it (fields as `/v1/images/compositions`, plus
    `callback_url`)."""
    async with composition_request(request) as parsed:
        params = with_callback(parsed.params, await callback_url_of(request, parsed.fields))

        async def respond(spend: SpendMark) -> web.Response:
            compositions = request.app[COMPOSITIONS]
            return submitted(await compositions.submit(parsed.caller, params, parsed.images, spend=spend))

        return await idempotent(request, parsed.fields, respond)


@routes.post("/v1/async/videos/generations")
async def videos_generations(request: web.Request) -> web.Response:
    """Video generation, answered once the upstream accepted it (fields as `/v1/videos/generations`, plus
    `callback_url`)."""
    async with video_request(request) as (caller, data, parsed):
        params = with_callback(parsed, await callback_url_of(request, data))

        async def respond(spend: SpendMark) -> web.Response:
            return submitted(await request.app[VIDEOS].submit_video(caller, params, spend=spend))

        return await idempotent(request, data, respond)


def history_id_value(value: Any, field: str) -> str:
    """A history id from JSON (a string, or an integer) or the path; 400 naming `field` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"'{field}' must be a non-empty history id string", code="INVALID_PARAMETER")
    text = value.strip()
    if len(text) > MAX_HISTORY_ID_LENGTH or not text.isascii() or not text.isprintable() or " " in text:
        raise BadRequest(
            f"'{field}' is not a history id (at most {MAX_HISTORY_ID_LENGTH} ASCII characters, no spaces)",
            code="INVALID_PARAMETER",
        )
    return text


def history_ids_value(value: Any) -> list[str]:
    """`history_ids`: a list of 1 to MAX_BATCH history ids (duplicates collapse)."""
    if not isinstance(value, list) or not value:
        raise BadRequest("'history_ids' must be a non-empty list of history ids", code="INVALID_PARAMETER")
    if len(value) > MAX_BATCH:
        raise BadRequest(
            f"'history_ids' holds {len(value)} ids; at most {MAX_BATCH} per query", code="INVALID_PARAMETER"
        )
    return list(dict.fromkeys(history_id_value(v, f"history_ids[{i}]") for i, v in enumerate(value)))


def wait_value(query: Mapping[str, str]) -> float:
    """`?wait=S` (`fields.TASK_WAIT`): seconds to long-poll, 0 to MAX_WAIT; absent or empty: 0."""
    declared = TASK_WAIT["wait"]
    if query.get(declared.name) in (None, ""):
        return float(declared.default)
    return float(declared.read(query))


@routes.post("/v1/async/tasks/query")
async def query(request: web.Request) -> web.Response:
    """`{"history_id"}` -> one task body; `{"history_ids": [...]}` -> `{"data": [...], "not_found": [...]}`."""
    caller = await caller_of(request)
    data = await json_object(request)
    tasks = request.app[QUERIES]
    one, many = TASK_QUERY["history_id"], TASK_QUERY["history_ids"]
    has_one, has_many = data.get(one.name) is not None, data.get(many.name) is not None
    if has_one == has_many:
        raise BadRequest(
            f"send either '{one.name}' (one task) or '{many.name}' (a list of up to "
            f"{MAX_BATCH}), not {'both' if has_one else 'neither'}",
            code="MISSING_PARAMETER" if not has_one else "INVALID_PARAMETER",
        )
    if has_many:
        return encoded_answer(await tasks.query_many(caller, history_ids_value(data[many.name])))
    return encoded_answer(await tasks.query(caller, history_id_value(data[one.name], one.name)))


@routes.get("/v1/async/tasks/{history_id}")
async def get_task(request: web.Request) -> web.Response:
    """One task; `?wait=S` (at most 60) answers as soon as it is final or S seconds have passed."""
    caller = await caller_of(request)
    history_id = history_id_value(request.match_info["history_id"], "history_id")
    wait = wait_value(request.query)
    return encoded_answer(await request.app[QUERIES].query(caller, history_id, wait=wait))
