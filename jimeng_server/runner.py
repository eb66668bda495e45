"""Serving the app on a socket: connection limits from `[server]`, and JSON answers even for requests that
never reach the app.

aiohttp answers a request its HTTP parser refuses (a header longer than `max_field_size`, broken framing)
by itself, with a text body that repeats the start of the offending line: for an over-long
`Authorization` header, the caller's session tokens. It also logs that text. `ApiRunner` serves the app
through a request handler whose `handle_error` answers with the API's JSON error shape instead, echoing
nothing and logging only the kind of error.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from .config import ServerConfig
from .errors import ApiError, BadRequest, render_error

log = logging.getLogger(__name__)


class _ApiRequestHandler(RequestHandler):
    """aiohttp's request handler with API-shaped error answers (same slots: instances are re-classed)."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The JSON error for a request that failed outside the app's error middleware; never echoes input."""
        if request.writer.output_size > 0:
            raise ConnectionError("the answer has started already; the connection is closed")
        err: ApiError
        if isinstance(exc, LineTooLong):
            err = ApiError(
                f"the request line or a header is longer than {self.max_field_size} bytes; send shorter "
                "headers (e.g. fewer tokens in Authorization)",
                code="HEADER_TOO_LARGE",
                status=431,
            )
        elif status < 500:
            err = BadRequest("the request is not valid HTTP/1.1 and was refused", code="BAD_HTTP_REQUEST")
        else:
            err = ApiError("internal server error; the server log has the details")
        log.warning("refused a request from %s: %s (%d)", request.remote, type(exc).__name__, err.status)
        resp = render_error(err)
        resp.force_close()
        return resp


class _ApiServer(web.Server):
    """aiohttp's low-level server whose connections use `_ApiRequestHandler`."""

    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = _ApiRequestHandler  # aiohttp has no hook for its own error answers
        return handler


class ApiRunner(web.AppRunner):
    """An AppRunner with the `[server]` connection limits: longest header, idle keep-alive time, and the
    grace period in-flight requests get on shutdown."""

    def __init__(self, app: web.Application, server: ServerConfig, **kwargs: Any) -> None:
        super().__init__(
            app,
            max_line_size=server.max_header_bytes,
            max_field_size=server.max_header_bytes,
            keepalive_timeout=server.keepalive_timeout,
            shutdown_timeout=server.shutdown_grace,
            **kwargs,
        )

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ApiServer  # same layout; only `__call__` differs
        return server


def bind(host: str, port: int) -> socket.socket:
    """The listening socket for `host:port` (dual-stack for "::"). Raises OSError (e.g. the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server(
        (host, port), family=family, reuse_port=False, dualstack_ipv6=family == socket.AF_INET6 and host == "::"
    )
