"""Service info, liveness and the model list."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import __version__
from ..upstream import catalog
from ..upstream.regions import Region
from .appkeys import CONFIG

routes = web.RouteTableDef()

ENDPOINTS = {
    "info": "GET /",
    "ping": "GET /ping",
    "models": "GET /v1/models",
    "images_generations": "POST /v1/images/generations",
    "images_compositions": "POST /v1/images/compositions",
    "images_edits": "POST /v1/images/edits",
    "videos_generations": "POST /v1/videos/generations",
    "async_images_generations": "POST /v1/async/images/generations",
    "async_images_compositions": "POST /v1/async/images/compositions",
    "async_videos_generations": "POST /v1/async/videos/generations",
    "async_task_query": "POST /v1/async/tasks/query",
    "async_task_get": "GET /v1/async/tasks/{history_id}",
    "async_task_deliveries": "GET /v1/async/tasks/{history_id}/deliveries",
    "async_task_redeliver": "POST /v1/async/tasks/{history_id}/deliveries/redeliver",
    "token_check": "POST /token/check",
    "token_points": "POST /token/points",
    "token_receive": "POST /token/receive",
    "healthz": "GET /healthz",
    "readyz": "GET /readyz",
    "metrics": "GET /metrics",
}


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


@routes.get("/v1/models")
async def models(request: web.Request) -> web.Response:
    """Every model this server can drive, with the regions that serve it; then each `[models] aliases` name
    as its target's entry with `alias_of` (OpenAI clients pick models from this list)."""
    data: list[dict[str, Any]] = []
    for kind, table in (("image", catalog.IMAGE_MODELS), ("video", catalog.VIDEO_MODELS)):
        for name, keys in table.items():
            data.append(
                {
                    "id": name,
                    "object": "model",
                    "owned_by": "jimeng-server",
                    "type": kind,
                    "regions": [r.value for r in Region if r in keys],
                }
            )
    by_id = {entry["id"]: entry for entry in data}
    for alias, target in request.app[CONFIG].models.aliases.items():
        data.append(by_id[target] | {"id": alias, "alias_of": target})
    return web.json_response({"object": "list", "data": data})
