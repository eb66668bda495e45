"""Issue 26, finding 6: a `%0a` (or any control character) in an unauthenticated URL path must not write a line
of its own into the log, in either log format (`[logging] format = "text"` or `"json"`)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from jimeng_server.api.observability import AccessLogger
from jimeng_server.app import create_app
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config
from jimeng_server.logs import JsonFormatter, RequestIdFilter, TextFormatter

FORGED = "2026-12-06 00:00:00,000 INFO jimeng_server.api.admin [-]: admin key rotated by root"
PATHS = [
    "/v1/models%0a" + FORGED.replace(" ", "%20"),
    "/nothing%0d%0a" + FORGED.replace(" ", "%20"),
    "/x%c2%85" + FORGED.replace(" ", "%20"),  # NEL, a line break to str.splitlines
    "/x%e2%80%a8" + FORGED.replace(" ", "%20"),  # U+2028
    "/x%1b%5b2J%1b%5bH",  # a terminal clear-screen
]


@pytest.fixture(params=["text", "json"])
def log_lines(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """The root logger writing through the production formatter of one format into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter() if request.param == "text" else JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.INFO)
    yield out
    root.removeHandler(handler)
    root.setLevel(old)


@pytest.fixture
async def served(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    config: Config,
    clock: ManualClock,
) -> TestClient[Any, Any]:
    """The app served with the production access logger (`cli` serves it so)."""
    server = await aiohttp_server(create_app(config, clock=clock, background=False), access_log_class=AccessLogger)
    return await aiohttp_client(server)


@pytest.mark.parametrize("path", PATHS)
async def test_a_path_cannot_forge_a_log_line(served: TestClient[Any, Any], log_lines: io.StringIO, path: str) -> None:
    resp = await served.get(path, headers={"X-Request-ID": "abc"})
    assert resp.status in (404, 400, 401)
    text = log_lines.getvalue()
    lines = text.splitlines()
    assert lines, "nothing was logged"
    assert not any(line.startswith("2026-12-06 00:00:00") for line in lines), text
    for line in lines:
        assert "\x1b" not in line
        if line.startswith("{"):
            json.loads(line)  # every line is a whole record
    assert any("GET /" in line and (" 404 " in line or " 400 " in line) for line in lines), text  # logged, escaped


def test_a_message_with_control_characters_is_one_line() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "got %s", ("a\nb\rc\x85d\u2028e\x00",), None)
    record.request_id = "r\n1"
    for formatter in (TextFormatter(), JsonFormatter()):
        line = formatter.format(record)
        assert len(line.splitlines()) == 1, line
    assert TextFormatter().format(record).endswith("[r\\n1]: got a\\nb\\rc\\x85d\\u2028e\\x00")
