"""Service info, liveness and the model list."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .. import __version__
from ..errors import ApiError, NotFound
from ..services.model_list import listing
from ..upstream.discovery import DiscoveredModel
from ..upstream.regions import Region
from .appkeys import CONFIG, GENERATION
from .request import caller_of

routes = web.RouteTableDef()

ENDPOINTS = {
    "info": "GET /",
    "ping": "GET /ping",
    "models": "GET /v1/models",
    "model": "GET /v1/models/{model_id}",
    "images_generations": "POST /v1/images/generations",
    "images_compositions": "POST /v1/images/compositions",
    "images_edits": "POST /v1/images/edits",
    "videos_generations": "POST /v1/videos/generations",
    "chat_completions": "POST /v1/chat/completions",
    "openai_videos": "POST /v1/videos, GET /v1/videos[/{video_id}[/content]]",
    "gateway_videos": "POST /v1/video/generations, GET /v1/video/generations/{task_id}",
    "async_images_generations": "POST /v1/async/images/generations",
    "async_images_compositions": "POST /v1/async/images/compositions",
    "async_videos_generations": "POST /v1/async/videos/generations",
    "async_task_query": "POST /v1/async/tasks/query",
    "async_task_get": "GET /v1/async/tasks/{history_id}",
    "async_task_events": "GET /v1/async/tasks/{history_id}/events",
    "async_task_deliveries": "GET /v1/async/tasks/{history_id}/deliveries",
    "async_task_redeliver": "POST /v1/async/tasks/{history_id}/deliveries/redeliver",
    "token_check": "POST /token/check",
    "token_points": "POST /token/points",
    "token_receive": "POST /token/receive",
    "healthz": "GET /healthz",
    "readyz": "GET /readyz",
    "metrics": "GET /metrics",
}
ENDPOINTS.update(  # post-edits (api/postedits.py)
    {
        "images_upscale": "POST /v1/images/upscale",
        "images_outpaint": "POST /v1/images/outpaint",
        "images_repair": "POST /v1/images/repair",
        "videos_interpolate": "POST /v1/videos/interpolate",
        "async_images_upscale": "POST /v1/async/images/upscale",
        "async_images_outpaint": "POST /v1/async/images/outpaint",
        "async_images_repair": "POST /v1/async/images/repair",
        "async_videos_interpolate": "POST /v1/async/videos/interpolate",
    }
)


@routes.get("/")
async def info(request: web.Request) -> web.Response:
    """Service info with the endpoint map."""
    return web.json_response(
        {
            "service": "jimeng-server",
            "version": __version__,
            "description": "Jimeng / Dreamina AI image and video generation as an HTTP API",
            "endpoints": ENDPOINTS,
        }
    )


@routes.get("/ping")
async def ping(request: web.Request) -> web.Response:
    return web.Response(text="pong")


async def model_entries(request: web.Request) -> list[dict[str, Any]]:
    """The entries of `GET /v1/models` (see there), in its order."""
    discovered: dict[Region, list[DiscoveredModel]] = {}
    if request.headers.get("Authorization"):
        try:
            accounts = (await caller_of(request)).accounts
        except ApiError:
            accounts = ()
        registry = request.app[GENERATION].models
        firsts = {a.region: a for a in reversed(accounts)}  # the first account of each region
        found = await asyncio.gather(*(registry.refresh(a) for a in firsts.values()))
        discovered = {region: models for region, models in zip(firsts, found, strict=True) if models is not None}
    data: list[dict[str, Any]] = listing(discovered)
    by_id = {entry["id"]: entry for entry in data}
    for alias, target in request.app[CONFIG].models.all_aliases.items():
        data.append(by_id[target] | {"id": alias, "alias_of": target})
    return data


@routes.get("/v1/models")
async def models(request: web.Request) -> web.Response:
    """Every model this server can drive: regions, resolutions, durations or image counts, measured credits,
    whether a paid subscription is needed, and `source`; then each alias in force (`[models] aliases` and the
    built-in OpenAI names) as its target's entry with `alias_of` (OpenAI clients pick models from this list).
    With an Authorization header the upstream's live list of each of the caller's regions is merged in (cached;
    a failed discovery, or a header that does not authenticate, leaves the built-in table)."""
    return web.json_response({"object": "list", "data": await model_entries(request)})


@routes.get("/v1/models/{model_id}")
async def model(request: web.Request) -> web.Response:
    """One entry of `GET /v1/models` by its id (the `openai` SDK's `models.retrieve`); 404 MODEL_NOT_FOUND
    listing the ids otherwise."""
    wanted = request.match_info["model_id"]
    entries = await model_entries(request)
    for entry in entries:
        if entry["id"] == wanted:
            return web.json_response(entry)
    raise NotFound(
        f"model {wanted[:100]!r} does not exist; use one of: {', '.join(e['id'] for e in entries)}",
        code="MODEL_NOT_FOUND",
    )
