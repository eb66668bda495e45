"""Serving over a real socket: requests aiohttp's parser refuses get our JSON error without echoing input,
idle keep-alive connections are closed, and start-up failures exit at once with one line."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from support import CN_TOKEN, HoldGate

from jimeng_server.app import create_app
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config
from jimeng_server.runner import ApiRunner, bind
from jimeng_server.simulator import Fault, FaultKind, Simulator


@pytest.fixture
def runner_of_served() -> list[ApiRunner]:
    """The runner of `served` (for a test that stops it early)."""
    return []


@pytest.fixture
async def served(
    config: Config, clock: ManualClock, runner_of_served: list[ApiRunner]
) -> AsyncIterator[tuple[Config, int]]:
    server = dataclasses.replace(config.server, keepalive_timeout=1.0, header_timeout=0.5, body_timeout=0.5)
    cfg = dataclasses.replace(config, server=server)
    runner = ApiRunner(create_app(cfg, clock=clock, background=False), cfg.server)
    runner_of_served.append(runner)
    await runner.setup()
    sock = bind("127.0.0.1", 0)
    await web.SockSite(runner, sock).start()
    try:
        yield cfg, sock.getsockname()[1]
    finally:
        await runner.cleanup()
        sock.close()


async def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = await reader.readexactly(int(headers["content-length"]))
    finally:
        writer.close()
    return status, headers, body


async def test_an_over_long_authorization_header_is_refused_without_echo(served: tuple[Config, int]) -> None:
    _, port = served
    tokens = ",".join([CN_TOKEN] * 1000)
    request = (
        f"POST /token/points HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tokens}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    status, headers, body = await _exchange(port, request)
    assert status == 431
    assert headers["content-type"].startswith("application/json")
    err = json.loads(body)["error"]
    assert err["code"] == "HEADER_TOO_LARGE" and "8190 bytes" in err["message"]
    assert CN_TOKEN.encode() not in body and b"sess" not in body


async def test_broken_http_gets_the_json_error_shape(served: tuple[Config, int]) -> None:
    _, port = served
    status, headers, body = await _exchange(port, b"POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "BAD_HTTP_REQUEST"


async def test_an_idle_keep_alive_connection_is_closed(served: tuple[Config, int]) -> None:
    _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(10):
            await reader.readuntil(b"pong")
            assert await reader.read() == b""  # the server closed the idle connection (keepalive_timeout 1 s)
    finally:
        writer.close()


async def test_a_slow_head_gets_a_408_and_the_connection_closes(served: tuple[Config, int]) -> None:
    _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /token/check HTTP/1.1\r\nHost: x\r\n")  # ...and the rest of the head never comes
        await writer.drain()
        for _ in range(2):  # trickling bytes does not extend the head's deadline (0.5 s)
            await asyncio.sleep(0.15)
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()  # until the server closes
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"]["code"] == "REQUEST_TIMEOUT"


async def test_a_body_that_stalls_closes_the_connection(
    served: tuple[Config, int], caplog: pytest.LogCaptureFixture
) -> None:
    _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /token/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"token": '
        )
        await writer.drain()
        async with asyncio.timeout(10):
            assert await reader.read() == b""  # closed after a 0.5 s pause, no answer to a half body
    finally:
        writer.close()
    assert "the request body did not arrive within 0.5 s" in caplog.text
    assert "Traceback" not in caplog.text and "unhandled" not in caplog.text


async def test_a_slow_but_steady_body_is_fine(served: tuple[Config, int]) -> None:
    _, port = served
    body = b'{"token": ""}'
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /token/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        for byte in body:  # 13 bytes over ~1.3 s: longer than body_timeout, but never a pause that long
            await asyncio.sleep(0.1)
            writer.write(bytes([byte]))
            await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "MISSING_PARAMETER"


async def _start_failure(tmp_path: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jimeng_server",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        async with asyncio.timeout(20):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def _config(tmp_path: Path, store: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[store]\npath = "{store}"\n[server]\nlog_level = "WARNING"\n', encoding="utf-8")
    return path


async def test_a_taken_port_exits_at_once_before_the_store_is_touched(tmp_path: Path) -> None:
    store = tmp_path / "tasks.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = await _start_failure(
            tmp_path, "--config", str(_config(tmp_path, store)), "--host", "127.0.0.1", "--port", str(port)
        )
    assert code == 1
    assert err.strip().count("\n") == 0 and err.startswith(f"cannot start: cannot listen on 127.0.0.1:{port}"), err
    assert not store.exists()  # nothing was opened, so nothing was resumed


async def test_an_unusable_store_exits_at_once_with_one_line(tmp_path: Path) -> None:
    store = tmp_path / "tasks.db"
    store.write_bytes(b"this is not a database" * 100)
    store.chmod(0o600)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, err = await _start_failure(
        tmp_path, "--config", str(_config(tmp_path, store)), "--host", "127.0.0.1", "--port", str(port)
    )
    assert code == 1
    assert err.strip().count("\n") == 0 and err.startswith("cannot start:") and "tasks.db" in err, err


async def test_a_declared_length_over_the_limit_is_a_413_before_any_body_is_sent(served: tuple[Config, int]) -> None:
    cfg, port = served
    head = (
        "POST /v1/images/compositions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {CN_TOKEN}\r\nContent-Length: {10 * 1024**3}\r\n\r\n"
    )
    status, headers, body = await _exchange(port, head.encode())  # no body follows: the answer must not wait
    assert status == 413 and headers["connection"].lower() == "close"
    assert json.loads(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert f"{cfg.server.max_body_bytes} bytes" in json.loads(body)["error"]["message"]


@pytest.mark.parametrize(("path", "limit"), [("/v1/images/compositions", 10), ("/v1/videos/generations", 15)])
async def test_a_file_part_beyond_the_limit_is_refused_as_it_starts(
    served: tuple[Config, int], path: str, limit: int
) -> None:
    _, port = served
    parts = "".join(
        f'--B\r\nContent-Disposition: form-data; name="images"; filename="{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\npng{i}\r\n"
        for i in range(limit + 1)
    )
    parts += "--B\r\n" + "x" * 300_000  # more is on its way (aiohttp's multipart reader reads ahead)...
    # ...but the body is left open (no closing boundary, declared length far longer): the server must answer
    # from what it has, as the file part one too many begins.
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n"
        f"Authorization: Bearer {CN_TOKEN}\r\nContent-Length: {len(parts) + 10**6}\r\n\r\n"
    )
    status, _, body = await _exchange(port, (head + parts).encode())
    assert status == 400
    err = json.loads(body)["error"]
    assert err["code"] == "TOO_MANY_FILES" and f"at most {limit}" in err["message"]


async def test_shutdown_lets_an_in_flight_request_finish(
    served: tuple[Config, int], runner_of_served: list[ApiRunner], sim: Simulator
) -> None:
    _, port = served
    gate = HoldGate()
    sim.inject("/user_credit", Fault(FaultKind.HOLD, hold=gate))  # the request stays in flight until released
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST /token/points HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CN_TOKEN}\r\n"
            "Content-Length: 0\r\n\r\n".encode()
        )
        await writer.drain()
        async with asyncio.timeout(10):
            await gate.reached.wait()  # the call reached the upstream and is held there
        (runner,) = runner_of_served
        stopping = asyncio.create_task(runner.cleanup())  # what SIGTERM does
        # The sleep IS the check: a window of real time in which a stop that cut the request off would finish.
        await asyncio.sleep(0.1)
        assert not stopping.done()  # waiting for the request, not cutting it off
        gate.set()
        async with asyncio.timeout(10):
            answer = await reader.read()
            await stopping
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"totalCredit" in answer
