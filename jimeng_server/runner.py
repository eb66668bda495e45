"""Serving the app on a socket: connection limits from `[server]`, and JSON answers even for requests that
never reach the app.

Slow clients: a request's line and headers must arrive within `header_timeout` seconds of their first byte
(or of the connection's start), else the client gets a 408 JSON error and the connection is closed; while a
body is being received, a pause longer than `body_timeout` seconds closes the connection the same way. Idle
keep-alive connections close after `keepalive_timeout`.

aiohttp answers a request its HTTP parser refuses (a header longer than `max_field_size`, broken framing)
by itself, with a text body that repeats the start of the offending line: for an over-long
`Authorization` header, the caller's session tokens. It also logs that text. `ApiRunner` serves the app
through a request handler whose `handle_error` answers with the API's JSON error shape instead, echoing
nothing and logging only the kind of error.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from .config import ServerConfig
from .errors import ApiError, BadRequest, render_error

log = logging.getLogger(__name__)


class _Timers:
    """The slow-client timers of one connection (see the module doc)."""

    def __init__(self, protocol: RequestHandler, config: ServerConfig) -> None:
        self._protocol = protocol
        self._config = config
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._payload: StreamReader | None = None  # the body being received
        self._waiting_head = False

    def start_head(self) -> None:
        """A request head may be coming: it has `header_timeout` seconds."""
        self._waiting_head = True
        self._payload = None
        self._arm(self._config.header_timeout, "the request line and headers")

    def head_done(self, payload: StreamReader) -> None:
        """The head is parsed; time the body (if any) by its pauses."""
        self._waiting_head = False
        self._payload = payload
        self.data()

    def data(self) -> None:
        """Bytes arrived."""
        if self._waiting_head:
            return  # the head's deadline runs from its first byte, however slowly the rest comes
        if self._payload is not None and not self._payload.is_eof():
            self._arm(self._config.body_timeout, "the request body")
        elif self._payload is not None:
            self.cancel()
            self._payload = None
        else:
            self.start_head()  # the next request on a kept-alive connection

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, seconds: float, what: str) -> None:
        self.cancel()
        self._handle = self._loop.call_later(seconds, self._expire, seconds, what)

    def _expire(self, seconds: float, what: str) -> None:
        transport = self._protocol.transport
        if transport is None or transport.is_closing():
            return
        log.warning("closed a connection: %s did not arrive within %g s", what, seconds)
        if self._waiting_head:
            resp = render_error(
                ApiError(f"{what} did not arrive within {seconds:g} s", code="REQUEST_TIMEOUT", status=408)
            )
            body = bytes(resp.body) if isinstance(resp.body, bytes | bytearray) else b""
            transport.write(
                b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json; charset=utf-8\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
        transport.close()


_TIMERS: dict[RequestHandler, _Timers] = {}


class _ApiRequestHandler(RequestHandler):
    """aiohttp's request handler with API-shaped error answers and slow-client timers (same slots:
    instances are re-classed; the timers live in `_TIMERS`)."""

    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        timers = _TIMERS.get(self)
        if timers is not None:
            timers.start_head()

    def data_received(self, data: bytes) -> None:
        timers = _TIMERS.get(self)
        if timers is not None:
            timers.data()
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        timers = _TIMERS.pop(self, None)
        if timers is not None:
            timers.cancel()
        super().connection_lost(exc)

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
    """aiohttp's low-level server whose connections use `_ApiRequestHandler` with slow-client timers."""

    api_config: ServerConfig

    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = _ApiRequestHandler  # aiohttp has no hook for its own error answers
        _TIMERS[handler] = _Timers(handler, self.api_config)
        return handler

    def adopt(self, config: ServerConfig) -> None:
        """Take `config`'s timeouts and learn when each request's head has been parsed (the request
        factory is called then, with the body's stream)."""
        self.api_config = config
        make_request = self.request_factory

        def request_factory(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
            timers = _TIMERS.get(protocol)
            if timers is not None:
                timers.head_done(payload)
            return make_request(message, payload, protocol, writer, task)

        self.request_factory = request_factory


class ApiRunner(web.AppRunner):
    """An AppRunner with the `[server]` connection limits: longest header, idle keep-alive time, and the
    grace period in-flight requests get on shutdown."""

    def __init__(self, app: web.Application, server: ServerConfig, **kwargs: Any) -> None:
        self._api_config = server
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
        server.__class__ = _ApiServer  # same layout; `__call__` and the request factory differ
        assert isinstance(server, _ApiServer)
        server.adopt(self._api_config)
        return server


def bind(host: str, port: int) -> socket.socket:
    """The listening socket for `host:port` (dual-stack for "::"). Raises OSError (e.g. the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server(
        (host, port), family=family, reuse_port=False, dualstack_ipv6=family == socket.AF_INET6 and host == "::"
    )
