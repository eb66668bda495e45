"""Operations: request ids, HTTP metrics, the access log line, `/healthz`, `/readyz` and `/metrics`.

Every request gets an id: the caller's `X-Request-Id` when it is a short token of safe characters, else a
new one. The id is in the `REQUEST_ID` context variable while the request runs (so every log line of the
request carries it, see logs.py), in the answer's `X-Request-Id` header and on the access log line.
`setup_observability(app)` installs all of it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from .. import metrics
from ..errors import Handler
from ..logs import REQUEST_ID
from ..randomid import random_hex
from .appkeys import JOBS, TASK_RECORDS, WATCHER, WEBHOOKS

REQUEST_ID_HEADER: Final = "X-Request-Id"
_REQUEST_ID_KEY: Final = web.RequestKey("jimeng_request_id", str)
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
"""A caller's id is kept only when it cannot forge or break a log line."""
_READY_TIMEOUT = 2.0

routes = web.RouteTableDef()


def request_id_of(request: BaseRequest) -> str | None:
    """The id given to `request` (None before the middleware ran, e.g. for a request aiohttp refused)."""
    return request.get(_REQUEST_ID_KEY)


def _route_of(request: web.Request) -> str:
    """The route template of `request` ("unmatched" for 404s), a bounded metrics label."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: gives the request its id (context variable and request key) and counts and
    times the answer by route and status."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if _SAFE_ID.fullmatch(given) else random_hex()
    request[_REQUEST_ID_KEY] = request_id
    token = REQUEST_ID.set(request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # what the error middleware lets through (redirects)
        status = exc.status
        raise
    finally:
        metrics.http_request(request.method, _route_of(request), status, time.perf_counter() - started)
        REQUEST_ID.reset(token)


async def _stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request_id_of(request)
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id


class AccessLogger(AbstractAccessLogger):
    """One line per answered request: client address, method, path (no query string: it may carry
    secrets), status, size and time, stamped with the request id."""

    @property
    def enabled(self) -> bool:
        """Only while INFO lines are written (aiohttp asks once per connection): below that level nothing of the
        line is gathered, not even the request's start time."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %d %.1f ms',
            request.remote or "-",
            request.method,
            request.path,
            response.status,
            response.body_length,
            time * 1000,
            extra={"request_id": request_id_of(request) or response.headers.get(REQUEST_ID_HEADER, "-")},
        )


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers HTTP."""
    return web.json_response({"status": "ok"})


async def _store_check(app: web.Application) -> str:
    try:
        async with asyncio.timeout(_READY_TIMEOUT):
            await app[TASK_RECORDS].ping()
    except TimeoutError:
        return f"the task store did not answer within {_READY_TIMEOUT:g} s"
    except Exception as exc:
        return f"the task store cannot be reached ({type(exc).__name__})"
    return "ok"


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Readiness: the task store answers a query and the watcher and webhook sender loops run. 200 with
    every check "ok", else 503 naming what is wrong."""
    app = request.app
    checks = {
        "store": await _store_check(app),
        "watcher": "ok" if app[WATCHER].running else "the task watcher is not running",
        "webhook_sender": "ok" if app[WEBHOOKS].running else "the webhook sender is not running",
    }
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503
    )


@routes.get("/metrics")
async def metrics_text(request: web.Request) -> web.Response:
    """Prometheus text exposition (metrics.py lists the metrics)."""
    metrics.set_gauges(
        tasks_watched=request.app[WATCHER].pending,
        webhooks_in_flight=request.app[WEBHOOKS].in_flight,
        background_jobs=request.app[JOBS].census(),
    )
    return web.Response(body=metrics.render(), headers={"Content-Type": metrics.CONTENT_TYPE})


def setup_observability(app: web.Application) -> None:
    """Install the request-id/metrics middleware (outermost), the `X-Request-Id` answer header and the
    `/healthz`, `/readyz` and `/metrics` routes."""
    app.middlewares.insert(0, request_context)
    app.on_response_prepare.append(_stamp_request_id)
    app.router.add_routes(routes)
