"""Image endpoints (sync): text-to-image and compositions. Handlers parse, call a service, and answer.

Answers are `{"created", "data": [{"url"}|{"b64_json"}...]}` (+ `note` for partial results, + the composition's
fields). A `b64_json` answer is streamed from the spooled result files (`b64_answers.py`); with an
`Idempotency-Key` it is rendered whole instead, so it can be stored and replayed byte for byte.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..services.callers import Caller
from ..services.compositions import COMPOSITION_TYPE, MAX_INPUT_IMAGES
from ..services.generation import Submission
from ..services.idempotency import SpendMark
from ..services.inputs import InputImage
from ..services.params import ImageParams
from ..services.results import partial_note, require_results
from ..store.models import Outcome, TaskKind
from .appkeys import COMPOSITIONS, CONFIG, GENERATION
from .b64_answers import spooled_results
from .callbacks import refuse_callback_url
from .files import sync_links
from .forms import request_fields
from .idempotency import HEADER, idempotent
from .image_inputs import composition_images
from .openai_compat import edit_images
from .params import image_params
from .request import caller_of, json_object
from .task_stream import stream_submit, wants_stream

routes = web.RouteTableDef()


Produce = Callable[[SpendMark], Awaitable[tuple[Submission, Outcome]]]
"""The spending part of a sync image handler: submit with the mark, wait, return the submission and outcome."""


def _body(
    submission: Submission, outcome: Outcome, key: str, values: Sequence[str], extra: Mapping[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {"created": int(submission.submitted_at), "data": [{key: v} for v in values]}
    note = partial_note(outcome)
    if note:
        body["note"] = note
    return body | dict(extra)


async def answer_images(
    request: web.Request,
    canonical: Any,
    response_format: str,
    produce: Produce,
    extra: Mapping[str, Any] | None = None,
) -> web.StreamResponse:
    """Run `produce` under the request's Idempotency-Key (`canonical`: its parsed body) and answer
    `{"created", "data": [{"url"}|{"b64_json"}], "note"?, **extra}`, or the API error of a failed task.

    `b64_json` without an Idempotency-Key is streamed from the spooled files; with one it is rendered whole
    (the answer is stored for replay). Every result is downloaded before the first byte of a 200: a result
    that is too large is a 413, one that cannot be fetched a 502."""
    extra = extra or {}
    if response_format == "b64_json" and HEADER not in request.headers:
        submission, outcome = await produce(SpendMark())  # no key: nothing to record
        async with spooled_results(request, submission.account, require_results(outcome)) as files:
            return await files.stream(request, _body(submission, outcome, "b64_json", files.slots, extra))

    async def respond(spend: SpendMark) -> web.Response:
        submission, outcome = await produce(spend)
        urls = require_results(outcome)
        if response_format != "b64_json":
            kept = await sync_links(request, outcome.history_id, urls)  # with [results] keep = local / s3
            return web.json_response(_body(submission, outcome, "url", kept, extra))
        async with spooled_results(request, submission.account, urls) as files:
            return await files.render(_body(submission, outcome, "b64_json", files.slots, extra))

    return await idempotent(request, canonical, respond)


def request_image_params(request: web.Request, fields: Mapping[str, Any]) -> ImageParams:
    """`image_params` under the app's `[compat] strict_size` and `[models] aliases`."""
    config = request.app[CONFIG]
    return image_params(fields, strict_size=config.compat.strict_size, aliases=config.models.all_aliases)


async def generation_request(request: web.Request) -> tuple[Caller, dict[str, Any], ImageParams]:
    """The caller, JSON body and validated fields of a text-to-image request (sync and async twins)."""
    caller = await caller_of(request)
    data = await json_object(request)
    return caller, data, request_image_params(request, data)


@routes.post("/v1/images/generations")
async def generations(request: web.Request) -> web.StreamResponse:
    """Text-to-image: submit, wait on the shared watcher, answer with the image URLs or base64."""
    caller, data, params = await generation_request(request)
    refuse_callback_url(data, "/v1/async/images/generations")
    if wants_stream(data):
        generation = request.app[GENERATION]
        return await stream_submit(
            request, caller, data, lambda spend: generation.submit_images(caller, params, spend=spend), TaskKind.IMAGE
        )

    async def produce(spend: SpendMark) -> tuple[Submission, Outcome]:
        generation = request.app[GENERATION]
        submission = await generation.submit_images(caller, params, spend=spend)
        return submission, await generation.wait(submission)

    return await answer_images(request, data, params.response_format, produce)


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


async def compose_and_answer(
    request: web.Request, parsed: CompositionRequest, *, describe: bool
) -> web.StreamResponse:
    """Upload, generate, wait and answer a sync image-to-image request; `describe` adds `input_images`
    and `composition_type` to the OpenAI-shaped body."""
    refuse_callback_url(parsed.fields, "/v1/async/images/compositions")
    params, images = parsed.params, parsed.images
    if wants_stream(parsed.fields):
        compositions, caller = request.app[COMPOSITIONS], parsed.caller
        return await stream_submit(
            request,
            caller,
            parsed.fields,
            lambda spend: compositions.submit(caller, params, images, spend=spend),
            TaskKind.IMAGE,
        )

    async def produce(spend: SpendMark) -> tuple[Submission, Outcome]:
        submission = await request.app[COMPOSITIONS].submit(parsed.caller, params, images, spend=spend)
        return submission, await request.app[GENERATION].wait(submission)

    extra = {"input_images": len(images), "composition_type": COMPOSITION_TYPE} if describe else {}
    return await answer_images(request, parsed.fields, params.response_format, produce, extra)


@routes.post("/v1/images/compositions")
async def compositions(request: web.Request) -> web.StreamResponse:
    """Image-to-image: JSON (URLs, data URIs) or multipart (files); upload, generate, wait, answer."""
    async with composition_request(request) as parsed:
        return await compose_and_answer(request, parsed, describe=True)


@routes.post("/v1/images/edits")
async def edits(request: web.Request) -> web.StreamResponse:
    """OpenAI's image edit (multipart `image` / `image[]`, `prompt`, `size`, `response_format`; no `mask`),
    served as a composition and answered in OpenAI's shape (`created`, `data`)."""
    async with composition_request(request, edit_images) as parsed:
        return await compose_and_answer(request, parsed, describe=False)
