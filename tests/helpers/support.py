"""Test helpers: driving the watcher on a manual clock (burst mode, no real sleeps) while real HTTP requests are
in flight."""

from __future__ import annotations

import asyncio
import socket
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient

from jimeng_server.api.appkeys import STORE, WATCHER
from jimeng_server.clock import ManualClock
from jimeng_server.watcher import Watcher

T = TypeVar("T")

AppFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
"""The `make_client` fixture: an app (its config changed by keyword) served on loopback, its test client."""

# Session ids used across the tests (never real ones).
CN_TOKEN = "sess0cn0aaaabbbbccccddddeeeeffff"
CN_TOKEN_2 = "sess0cn1aaaabbbbccccddddeeeeffff"
US_SESSION = "sess0us0aaaabbbbccccddddeeeeffff"
US_TOKEN = f"us-{US_SESSION}"
POOR_TOKEN = "sess0poor0aaabbbbccccddddeeeefff"


def crc32_hex(data: bytes) -> str:
    """The reference CRC-32 (zlib) as 8 lowercase hex digits: the oracle for upload and spool checksums."""
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def bearer(*tokens: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + ",".join(tokens)}


async def run_tick(watcher: Watcher, clock: ManualClock, *, wall_timeout: float = 20.0) -> int:
    """One watcher tick to its end (burst mode); returns how many polls it started. Its polls run over
    loopback, and back-off sleeps INSIDE those polls (the client's read retries) are woken at once; no
    other sleeper is moved."""
    loop = asyncio.get_running_loop()
    end = loop.time() + wall_timeout
    tick = asyncio.ensure_future(watcher.run_once())
    try:
        while not tick.done():
            if loop.time() > end:
                raise AssertionError("run_tick(): a watcher tick did not finish")
            wake = clock.next_wakeup(watcher.polls_in_flight)
            if wake is not None:
                await clock.advance(max(0.0, wake - clock.time()))
            else:
                await asyncio.sleep(0)  # loopback I/O in flight: let it complete
        return tick.result()
    finally:
        if not tick.done():
            tick.cancel()


async def drive(
    app: web.Application,
    clock: ManualClock,
    *aws: Awaitable[T],
    step: float = 1.0,
    wall_timeout: float = 20.0,
    min_pending: int = 0,
    hold: Callable[[], bool] | None = None,
) -> list[T]:
    """Run `aws` (requests) to completion on virtual time. Each round moves the clock by `step` and runs one
    watcher tick to its end (`run_tick`) whenever a task is watched or something waits on the clock (a sync
    wait, a retry back-off); otherwise the requests' loopback I/O runs. `min_pending` holds time still until
    that many tasks are being watched (to test batching). While `hold()` is true time stands still too and only
    loopback I/O runs: a test whose reader must see each state before the next (a stream's progress lines)
    says so there, so a loaded machine (slow threads, a busy PostgreSQL) cannot let the clock run past it."""
    watcher = app[WATCHER]
    tasks = [asyncio.ensure_future(a) for a in aws]
    loop = asyncio.get_running_loop()
    end = loop.time() + wall_timeout
    try:
        while not all(t.done() for t in tasks):
            if loop.time() > end:
                raise AssertionError("drive(): the requests did not finish")
            ready = watcher.pending >= max(1, min_pending) or (clock.sleepers and not min_pending)
            if ready and not (hold is not None and hold()):
                min_pending = 0
                await clock.advance(step)
                await run_tick(watcher, clock, wall_timeout=max(0.1, end - loop.time()))
            else:
                await asyncio.sleep(0)
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
    return [t.result() for t in tasks]


async def until(predicate: Callable[[], bool], *, what: str, wall_timeout: float = 10.0) -> None:
    """Return once `predicate()` holds; it is made true by loopback I/O in this process (a notice, a journal
    entry), so the loop is only yielded (`sleep(0)`), never slept on. Fails naming `what` after `wall_timeout`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + wall_timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"until(): {what} did not happen within {wall_timeout} s")
        await asyncio.sleep(0)


class HoldGate(asyncio.Event):
    """The `hold` of a simulator HOLD fault that also tells when a call got there: `reached` is set as soon as
    the simulator starts waiting on the gate (the call is in flight and held); `set()` releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = asyncio.Event()

    async def wait(self) -> Literal[True]:
        self.reached.set()
        return await super().wait()


async def json_of(resp: Any) -> Any:
    """The JSON body of a test-client response (any content type)."""
    return await resp.json(content_type=None)


async def submit_task(
    client: TestClient[Any, Any],
    path: str,
    clock: ManualClock,
    body: dict[str, Any],
    auth: dict[str, str] | None = None,
) -> str:
    """POST `body` to the async route `path` (with the test clock driven) and return its `history_id`; fails on
    any answer but 200. `auth`: the headers (default: `CN_TOKEN`)."""
    (resp,) = await drive(client.app, clock, client.post(path, json=body, headers=auth or bearer(CN_TOKEN)))
    data = await json_of(resp)
    assert resp.status == 200, data
    return str(data["history_id"])


async def finish_task(client: TestClient[Any, Any], clock: ManualClock, history_id: str, limit: int = 120) -> None:
    """Advance the clock a second at a time and run the app's watcher until the stored task is final (fails after
    `limit` seconds)."""
    for _ in range(limit):
        row = await client.app[STORE].get(history_id)
        if row is not None and row.final:
            return
        await clock.advance(1.0)
        await client.app[WATCHER].run_once()
    raise AssertionError(f"task {history_id} did not finish")


async def error_of(resp: aiohttp.ClientResponse, status: int = 400) -> dict[str, str]:
    """The `error` object of a JSON error answer with `status`; fails on any other shape."""
    text = await resp.text()
    assert resp.status == status, text[:500]
    assert resp.content_type == "application/json", text[:500]
    body: Any = await resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code"}, body
    assert all(isinstance(v, str) and v for v in body["error"].values()), body
    return dict(body["error"])


def leftovers(directory: Path) -> list[Path]:
    """The files left in a spool directory."""
    return list(directory.iterdir())


class FakeResolver(AbstractResolver):
    """A DNS resolver from a fixed table: name -> one address or a list of them (IPv4 or IPv6).

    Unknown names fail like NXDOMAIN. Every name asked is recorded in `asked`, in order, so a test can check
    what the SSRF guard looked up (and that it looked up nothing)."""

    def __init__(self, table: dict[str, str] | dict[str, list[str]]) -> None:
        self.table = {host: [addrs] if isinstance(addrs, str) else list(addrs) for host, addrs in table.items()}
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host=addr,
                port=port,
                family=socket.AF_INET6 if ":" in addr else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for addr in self.table[host]
        ]

    async def close(self) -> None:
        pass
