"""The body limit, enforced on what a request declares before any of its body is read."""

from __future__ import annotations

from aiohttp import web

from ..errors import Handler, body_too_large, render_error
from .appkeys import CONFIG


@web.middleware
async def declared_size_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """413 at once for a `Content-Length` over `[server] max_body_mb`: nothing of the body is read and the
    connection is closed after the answer, so the client need not send the rest."""
    limit = request.app[CONFIG].server.max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        resp = render_error(body_too_large(limit))
        resp.force_close()
        return resp
    return await handler(request)
