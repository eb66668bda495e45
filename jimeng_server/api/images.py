"""Image endpoints (sync): text-to-image and compositions. Handlers parse, call a service, and answer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..services.callers import Caller
from ..services.compositions import COMPOSITION_TYPE, MAX_INPUT_IMAGES
from ..services.generation import Submission
from ..services.idempotency import SpendMark
from ..services.inputs import InputImage
from ..services.params import ImageParams
from ..services.results import fetch_base64, partial_note, require_results
from ..store.models import Outcome
from .appkeys import COMPOSITIONS, CONFIG, GENERATION, POOL
from .callbacks import refuse_callback_url
from .forms import request_fields
from .idempotency import idempotent
from .image_inputs import composition_images
from .openai_compat import edit_images
from .params import image_params
from .request import caller_of, json_object

routes = web.RouteTableDef()


async def result_body(
    request: web.Request, submission: Submission, outcome: Outcome, response_format: str
) -> dict[str, Any]:
    """`{"created", "data": [{"url"}|{"b64_json"}]}` for a finished task (+ `note` for partial results)."""
    urls = require_results(outcome)
    if response_format == "b64_json":
        cfg = request.app[CONFIG].security
        blobs = await asyncio.gather(
            *(
                fetch_base64(
                    request.app[POOL],
                    submission.account,
                    url,
                    max_bytes=cfg.max_download_bytes,
                    seconds=cfg.fetch_timeout,
                )
                for url in urls
            )
        )
        data: list[dict[str, Any]] = [{"b64_json": b} for b in blobs]
    else:
        data = [{"url": u} for u in urls]
    body: dict[str, Any] = {"created": int(submission.submitted_at), "data": data}
    note = partial_note(outcome)
    if note:
        body["note"] = note
    return body


def request_image_params(request: web.Request, fields: Mapping[str, Any]) -> ImageParams:
    """`image_params` under the app's `[compat] strict_size` and `[models] aliases`."""
    config = request.app[CONFIG]
    return image_params(fields, strict_size=config.compat.strict_size, aliases=config.models.aliases)


async def generation_request(request: web.Request) -> tuple[Caller, dict[str, Any], ImageParams]:
    """The caller, JSON body and validated fields of a text-to-image request (sync and async twins)."""
    caller = await caller_of(request)
    data = await json_object(request)
    return caller, data, request_image_params(request, data)


@routes.post("/v1/images/generations")
async def generations(request: web.Request) -> web.Response:
    """Text-to-image: submit, wait on the shared watcher, answer with the image URLs."""
    caller, data, params = await generation_request(request)
    refuse_callback_url(data, "/v1/async/images/generations")

    async def respond(spend: SpendMark) -> web.Response:
        generation = request.app[GENERATION]
        submission = await generation.submit_images(caller, params, spend=spend)
        outcome = await generation.wait(submission)
        return web.json_response(await result_body(request, submission, outcome, params.response_format))

    return await idempotent(request, data, respond)


@dataclass(frozen=True, slots=True)
class CompositionRequest:
    """A parsed image-to-image request; `fields` (files spooled) live until the `async with` ends."""

    caller: Caller
    fields: dict[str, Any]
    params: ImageParams
    images: list[InputImage]


@contextlib.asynccontextmanager
async def composition_request(
    request: web.Request, images_of: Callable[[Mapping[str, Any]], list[InputImage]] = composition_images
) -> AsyncIterator[CompositionRequest]:
    """Parse and validate an image-to-image request (sync and async twins, and edits with `images_of`)."""
    caller = await caller_of(request)
    limit = request.app[CONFIG].server.max_body_bytes
    async with request_fields(request, max_bytes=limit, max_files=MAX_INPUT_IMAGES) as fields:
        images = images_of(fields)
        yield CompositionRequest(caller, fields, request_image_params(request, fields), images)


async def compose_and_answer(request: web.Request, parsed: CompositionRequest, *, describe: bool) -> web.Response:
    """Upload, generate, wait and answer a sync image-to-image request; `describe` adds `input_images`
    and `composition_type` to the OpenAI-shaped body."""
    refuse_callback_url(parsed.fields, "/v1/async/images/compositions")
    params, images = parsed.params, parsed.images

    async def respond(spend: SpendMark) -> web.Response:
        submission = await request.app[COMPOSITIONS].submit(parsed.caller, params, images, spend=spend)
        outcome = await request.app[GENERATION].wait(submission)
        body = await result_body(request, submission, outcome, params.response_format)
        if describe:
            body.update(input_images=len(images), composition_type=COMPOSITION_TYPE)
        return web.json_response(body)

    return await idempotent(request, parsed.fields, respond)


@routes.post("/v1/images/compositions")
async def compositions(request: web.Request) -> web.Response:
    """Image-to-image: JSON (URLs, data URIs) or multipart (files); upload, generate, wait, answer."""
    async with composition_request(request) as parsed:
        return await compose_and_answer(request, parsed, describe=True)


@routes.post("/v1/images/edits")
async def edits(request: web.Request) -> web.Response:
    """OpenAI's image edit (multipart `image` / `image[]`, `prompt`, `size`, `response_format`; no `mask`),
    served as a composition and answered in OpenAI's shape (`created`, `data`)."""
    async with composition_request(request, edit_images) as parsed:
        return await compose_and_answer(request, parsed, describe=False)
