"""CORS for browser callers: `[server] cors_origins` lists the origins allowed ("*" = any; empty = none).

A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin is answered 204 with the
allowed method and the requested headers; from any other origin it is a 403 naming the config key. Every
answer to an allowed origin carries `Access-Control-Allow-Origin` (errors too, so a page can read them) and
exposes `X-Request-Id`. No cookies are involved (callers authenticate with `Authorization`), so credentials
are never allowed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from aiohttp import web

from ..errors import ApiError, Handler
from .observability import REQUEST_ID_HEADER

ALLOWED_METHODS: Final = "GET, POST, OPTIONS"
MAX_AGE_SECONDS: Final = "600"
_HEADER_LIST = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")


class Cors:
    """The allowed origins and the two hooks: the preflight middleware and the answer-header stamp."""

    def __init__(self, origins: Sequence[str]) -> None:
        self._any = "*" in origins
        self._origins = frozenset(origins)

    def allows(self, origin: str) -> bool:
        return self._any or origin in self._origins

    @web.middleware
    async def preflight(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Answer preflights (before routing to a handler: no route takes OPTIONS)."""
        origin = request.headers.get("Origin")
        method = request.headers.get("Access-Control-Request-Method")
        if request.method != "OPTIONS" or origin is None or method is None:
            return await handler(request)
        if not self.allows(origin):
            raise ApiError(
                f"the origin {origin!r} may not call this API from a browser; add it to [server] cors_origins",
                code="CORS_ORIGIN_NOT_ALLOWED",
                status=403,
            )
        headers = {"Access-Control-Allow-Methods": ALLOWED_METHODS, "Access-Control-Max-Age": MAX_AGE_SECONDS}
        requested = request.headers.get("Access-Control-Request-Headers", "").strip()
        if requested and _HEADER_LIST.fullmatch(requested):
            headers["Access-Control-Allow-Headers"] = requested
        return web.Response(status=204, headers=headers)

    async def stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        """Add the CORS answer headers for an allowed origin (`on_response_prepare`)."""
        if not self._origins:
            return
        origin = request.headers.get("Origin")
        response.headers.add("Vary", "Origin")
        if origin is not None and self.allows(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = REQUEST_ID_HEADER


def setup_cors(app: web.Application, origins: Sequence[str]) -> None:
    """Install the preflight middleware (inside the error middleware, so a refusal is a JSON error) and
    the answer headers."""
    cors = Cors(origins)
    app.middlewares.append(cors.preflight)
    app.on_response_prepare.append(cors.stamp)
