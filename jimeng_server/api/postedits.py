"""Post-edit endpoints (sync and async twins): upscale, outpaint, detail repair, frame interpolation.

Fields (JSON or multipart):
- the source, exactly one of: `image` (a URL, a data URI, `{"url"}` or a multipart file) or `history_id` +
  `index` (from 0, default 0) of one of the caller's own finished tasks; repair and interpolation take a task
  result only;
- upscale: `mode` = `hd` (free) or `pro`; outpaint: `ratio` (e.g. "16:9") or one or more of `top`, `bottom`,
  `left`, `right` (fractions of the side, 0 to 3), and `n` (1 to 4, default 4); interpolation: `fps` (60 only);
- `response_format` (`url` or `b64_json`, images only), and `callback_url` on the async twins.
Sync answers are those of `/v1/images/generations` (videos: `{"created", "data": [{"url"}]}`); async ones those
of the other async submits. Both take `Idempotency-Key`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from aiohttp import web

from ..errors import BadRequest
from ..integers import NumberError, parse_int
from ..services.callers import Caller
from ..services.generation import Submission
from ..services.idempotency import SpendMark
from ..services.postedits import PostEditParams, PostEdits, SourceTask
from ..services.results import require_results
from ..tasks.records import Outcome
from ..upstream.catalog import RATIOS, image_size
from ..upstream.postedit_payloads import Expansion, PostEditTool
from .appkeys import ACCOUNT_POOL, COMPOSITIONS, CONFIG, GENERATION, POSTEDITS, QUERIES, STORE
from .async_tasks import history_id_value
from .callbacks import callback_url_of, refuse_callback_url
from .fields import INTERPOLATE, MAX_INDEX, OUTPAINT, RESPONSE_FORMAT, SIDES, SOURCE_INDEX, UPSCALE, get_count, get_str
from .forms import request_fields
from .idempotency import idempotent
from .image_inputs import composition_images
from .images import answer_images
from .request import caller_of
from .responses import json_answer
from .task_stream import submitted

routes = web.RouteTableDef()

UPSCALE_MODES = {"hd": PostEditTool.NORMAL_HD, "pro": PostEditTool.PRO_HD}


def _index(fields: Mapping[str, Any]) -> int:
    """`index` of the task's result, from 0 (default 0); multipart strings must be digits only."""
    field = SOURCE_INDEX
    value = fields.get(field.name, field.default)
    try:
        return parse_int(value, field.name, low=int(field.low or 0), high=MAX_INDEX)
    except NumberError:
        raise BadRequest(
            f"'index' must be the whole number of a result of the task, from 0 to {MAX_INDEX}, got {value!r}",
            code="INVALID_PARAMETER",
        ) from None


def source_of(fields: Mapping[str, Any], *, image_allowed: bool, what: str) -> tuple[Any, SourceTask | None]:
    """The source: `(image, None)` or `(None, task)`; 400 naming what to send."""
    has_image = fields.get("image") is not None
    has_task = fields.get("history_id") is not None
    if has_image and not image_allowed:
        raise BadRequest(
            f"{what} works only on a result of one of your own tasks (the upstream needs the picture in the same "
            "account): send 'history_id' and 'index' instead of 'image'",
            code="INVALID_PARAMETER",
        )
    if has_image == has_task:
        either = "'image' (a URL, a data URI or a file) or " if image_allowed else ""
        raise BadRequest(
            f"send {either}'history_id' + 'index' of one of your tasks"
            + (", not both" if has_image and has_task else ""),
            code="INVALID_PARAMETER" if has_image else "MISSING_PARAMETER",
        )
    if has_task:
        return None, SourceTask(history_id_value(fields["history_id"], "history_id"), _index(fields))
    images = composition_images(fields, "image")
    if len(images) != 1:
        raise BadRequest(f"'image' must be one image, got {len(images)}", code="INVALID_IMAGE_COUNT")
    return images[0], None


def upscale_params(fields: Mapping[str, Any]) -> PostEditParams:
    """`POST /v1/images/upscale` fields: the source and `mode` (hd, pro)."""
    image, task = source_of(fields, image_allowed=True, what="upscale")
    tool = UPSCALE_MODES[UPSCALE["mode"].read(fields)]
    return PostEditParams(tool, image, task)


def repair_params(fields: Mapping[str, Any]) -> PostEditParams:
    """`POST /v1/images/repair` fields: a task result only."""
    image, task = source_of(fields, image_allowed=False, what="detail repair")
    return PostEditParams(PostEditTool.SUPER_RESOLUTION, image, task)


def outpaint_params(fields: Mapping[str, Any]) -> PostEditParams:
    """`POST /v1/images/outpaint` fields: the source, `ratio` or per-side expansion, and `n`."""
    image, task = source_of(fields, image_allowed=True, what="outpaint")
    ratio = get_str(fields, "ratio")
    given = [side for side in SIDES if fields.get(side) is not None]
    if (ratio is None) == (not given):
        raise BadRequest(
            f"send either 'ratio' (one of {', '.join(RATIOS)}) or the expansion of one or more sides "
            f"({', '.join(SIDES)}: fractions of the side from {OUTPAINT[SIDES[0]].low:g} to "
            f"{OUTPAINT[SIDES[0]].high:g})" + (", not both" if given else ""),
            code="INVALID_PARAMETER" if given else "MISSING_PARAMETER",
        )
    expansion = None
    if ratio is not None and ratio not in OUTPAINT["ratio"].choices:
        raise BadRequest(f"'ratio' must be one of {', '.join(RATIOS)}, got {ratio!r}", code="INVALID_PARAMETER")
    if given:
        values = {side: OUTPAINT[side].read(fields, default=0.0) for side in SIDES}
        if not any(values.values()):
            raise BadRequest("the expansion widens no side: give at least one side above 0", code="INVALID_PARAMETER")
        expansion = Expansion(values["top"], values["bottom"], values["left"], values["right"])
    count = OUTPAINT["n"].read(fields)
    return PostEditParams(PostEditTool.PAINTING, image, task, expansion=expansion, ratio=ratio, count=count)


ParseFields = Callable[[Mapping[str, Any]], PostEditParams]


@contextlib.asynccontextmanager
async def postedit_request(
    request: web.Request, parse: ParseFields
) -> AsyncIterator[tuple[Caller, dict[str, Any], PostEditParams, str]]:
    """Parse an image post-edit request (JSON or multipart; a file lives until the `async with` ends): the caller,
    the fields, the validated parameters and `response_format`."""
    caller = await caller_of(request)
    limit = request.app[CONFIG].server.max_body_bytes
    async with request_fields(request, max_bytes=limit, max_files=1) as fields:
        params = parse(fields)
        yield caller, fields, params, RESPONSE_FORMAT.read(fields)


def _image_routes(name: str, parse: ParseFields) -> None:
    """Register `POST /v1/images/{name}` (answers with the images) and its async twin."""
    sync_path, async_path = f"/v1/images/{name}", f"/v1/async/images/{name}"

    @routes.post(sync_path)
    async def sync(request: web.Request) -> web.StreamResponse:
        async with postedit_request(request, parse) as (caller, fields, params, response_format):
            refuse_callback_url(fields, async_path)

            async def produce(spend: SpendMark) -> tuple[Submission, Outcome]:
                submission = await request.app[POSTEDITS].submit_image(caller, params, spend=spend)
                return submission, await request.app[GENERATION].wait(submission)

            return await answer_images(request, fields, response_format, produce)

    @routes.post(async_path)
    async def submit(request: web.Request) -> web.Response:
        async with postedit_request(request, parse) as (caller, fields, params, _):
            params = dataclasses.replace(params, callback_url=await callback_url_of(request, fields))

            async def respond(spend: SpendMark) -> web.Response:
                return submitted(await request.app[POSTEDITS].submit_image(caller, params, spend=spend))

            return await idempotent(request, fields, respond)


_image_routes("upscale", upscale_params)
_image_routes("outpaint", outpaint_params)
_image_routes("repair", repair_params)


async def _interpolation_request(request: web.Request) -> tuple[Caller, dict[str, Any], SourceTask]:
    caller = await caller_of(request)
    async with request_fields(request, max_bytes=request.app[CONFIG].server.max_body_bytes, max_files=0) as fields:
        data = dict(fields)
    _, task = source_of(data, image_allowed=False, what="frame interpolation")
    rates = INTERPOLATE["fps"].choices
    fps = get_count(data, "fps", high=1000)
    if fps is not None and fps not in rates:
        raise BadRequest(
            f"'fps' must be {', '.join(map(str, rates))} (the rates the upstream offers), got {fps}",
            code="INVALID_PARAMETER",
        )
    INTERPOLATE["response_format"].read(data)
    assert task is not None
    return caller, data, task


@routes.post("/v1/videos/interpolate")
async def interpolate(request: web.Request) -> web.Response:
    """Frame interpolation of one of the caller's video results to 60 fps; answers with the new clip's URL."""
    caller, data, task = await _interpolation_request(request)
    refuse_callback_url(data, "/v1/async/videos/interpolate")

    async def respond(spend: SpendMark) -> web.Response:
        postedits = request.app[POSTEDITS]
        submission = await postedits.submit_interpolation(caller, task, callback_url=None, spend=spend)
        outcome = await request.app[GENERATION].wait(submission)
        urls = require_results(outcome)
        return json_answer({"created": int(submission.submitted_at), "data": [{"url": u} for u in urls]})

    return await idempotent(request, data, respond)


@routes.post("/v1/async/videos/interpolate")
async def interpolate_async(request: web.Request) -> web.Response:
    """Frame interpolation, answered once the upstream accepted it (plus `callback_url`)."""
    caller, data, task = await _interpolation_request(request)
    callback_url = await callback_url_of(request, data)

    async def respond(spend: SpendMark) -> web.Response:
        postedits = request.app[POSTEDITS]
        return submitted(await postedits.submit_interpolation(caller, task, callback_url=callback_url, spend=spend))

    return await idempotent(request, data, respond)


def setup_postedits(app: web.Application) -> None:
    """The post-edit service (on the app's generation and the compositions' input uploads) and its routes;
    after `setup_generation`."""
    app[POSTEDITS] = PostEdits(
        app[GENERATION],
        app[COMPOSITIONS].inputs,
        app[STORE],
        resolve_account=app[ACCOUNT_POOL].resolve,
        ratio_codes={ratio: image_size(ratio, "2k").ratio_code for ratio in RATIOS},
        on_child=app[QUERIES].answers.forget,
    )
    app.router.add_routes(routes)
