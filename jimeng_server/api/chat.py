"""`POST /v1/chat/completions`: image and video generation in the OpenAI chat format (chat_params.py reads what
a chat request asks for, services/chat.py how the answer reads).

The task is submitted exactly as by the async endpoints (the same parsers, `Idempotency-Key`, API keys and the
pool, `callback_url`), then followed through the query service (services/task_follow.py) until it is final or
its kind's deadline (`[watcher.image|video] deadline`) has passed:
- without `stream`: one assistant message with the links (`history_id` names the task); a failed task is its
  error with the sync endpoints' status, a task past the deadline a 504 `TASK_TIMEOUT` (it goes on; query it);
- with `stream: true`: SSE `chat.completion.chunk`s: "Submitted ... task <id>" at once, a line whenever the
  task's progress changes (queue place and wait, generating; nothing before the upstream's record was first
  read), a keep-alive comment otherwise (at least every
  `services.chat.POLL_SECONDS`), the links, a `finish_reason: "stop"` chunk, then `data: [DONE]`. A failure
  after the stream opened is an `{"error": {...}}` event (the `openai` SDK raises it) before `[DONE]`.
Refusals before the submit (bad body, bad key, no credits) are ordinary JSON errors.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from ..errors import ApiError, from_upstream
from ..services.callers import Caller
from ..services.chat import (
    POLL_SECONDS,
    ChatAsk,
    chunk,
    completion,
    progress_text,
    result_urls,
    results_markdown,
    submitted_text,
)
from ..services.results import failure_error
from ..services.task_follow import follow, is_final, last_of
from ..tasks.records import TaskKind, TaskStatus
from ..upstream.errors import UpstreamError
from .appkeys import CLOCK, COMPOSITIONS, CONFIG, GENERATION, QUERIES, VIDEOS, WATCHER
from .callbacks import callback_url_of
from .chat_params import canonical_body, chat_ask
from .image_inputs import composition_images
from .images import request_image_params
from .request import caller_of, json_object
from .responses import json_answer
from .sse import EventStream
from .task_stream import Submit, submit_once, timeout_error
from .video_params import video_params
from .videos import chooser

routes = web.RouteTableDef()


def submitter(request: web.Request, caller: Caller, ask: ChatAsk, callback_url: str | None) -> Submit:
    """The spending part of a chat request: a text-to-image, a composition (input images) or a video.
    Its fields are validated here, before anything is spent (400 naming the field)."""
    if ask.kind is TaskKind.VIDEO:
        video = video_params(
            ask.fields, aliases=request.app[CONFIG].models.all_aliases, choose=chooser(request, caller)
        )
        video = dataclasses.replace(video, callback_url=callback_url)
        return lambda spend: request.app[VIDEOS].submit_video(caller, video, spend=spend)
    params = dataclasses.replace(request_image_params(request, ask.fields), callback_url=callback_url)
    if ask.images:
        images = composition_images({"images": list(ask.images)})
        return lambda spend: request.app[COMPOSITIONS].submit(caller, params, images, spend=spend)
    return lambda spend: request.app[GENERATION].submit_images(caller, params, spend=spend)


def final_error(body: dict[str, Any]) -> ApiError | None:
    """The error of a final body without results (None when there are results to show)."""
    if body.get("status") == TaskStatus.FAILED and not result_urls(body):
        return failure_error(str(body.get("history_id")), body.get("error"))
    return None


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Generate from the last user message; answer a chat completion (whole, or streamed with `stream`)."""
    caller = await caller_of(request)
    data = await json_object(request)
    ask = chat_ask(data, request.app[CONFIG].models.all_aliases)
    submit = submitter(request, caller, ask, await callback_url_of(request, data))
    answer, accepted = await submit_once(request, canonical_body(data), submit)
    if not accepted:
        return answer  # a replayed error
    history_id, created = str(accepted["history_id"]), int(accepted["created"])
    until = created + request.app[WATCHER].schedule_for(ask.kind).deadline
    bodies = follow(request.app[QUERIES], caller, history_id, request.app[CLOCK], until=until, poll=POLL_SECONDS)
    if not ask.stream:
        body: dict[str, Any] = await last_of(bodies)
        if not is_final(body):
            raise timeout_error(history_id)
        error = final_error(body)
        if error is not None:
            raise error
        return json_answer(completion(ask, history_id, created, results_markdown(body)))

    stream = EventStream(request)
    await stream.open()
    opening = submitted_text(history_id, ask.kind, ask.model)
    await stream.send(chunk(ask, history_id, created, {"role": "assistant", "content": opening}))
    last = ""
    try:
        body = {}
        async for body in bodies:
            if is_final(body):
                break
            # Before the upstream's record was first read (no `raw_data`) there is no progress to tell: the task
            # may well be queued, so no "Generating…" yet, a keep-alive comment instead.
            line = progress_text(body) if body.get("raw_data") is not None else last
            if line != last:
                await stream.send(chunk(ask, history_id, created, {"content": line}))
                last = line
            else:
                await stream.comment()
        error = timeout_error(history_id) if not is_final(body) else final_error(body)
        if error is not None:
            raise error
        await stream.send(chunk(ask, history_id, created, {"content": "\n" + results_markdown(body)}))
        await stream.send(chunk(ask, history_id, created, {}, "stop"))
    except (ApiError, UpstreamError) as exc:
        err = exc if isinstance(exc, ApiError) else from_upstream(exc)
        await stream.send(err.body())
    await stream.send("[DONE]", raw=True)
    return await stream.close()
