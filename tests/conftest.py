"""Shared fixtures: a simulator on a manual clock, served over real HTTP, and the server app pointed at it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from proxies import ConnectProxy
from support import CN_TOKEN, CN_TOKEN_2, POOR_TOKEN, US_SESSION, AppFactory
from webhook_support import Receiver

from jimeng_server.app import create_app
from jimeng_server.cli import with_simulator_hosts
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config, SecurityConfig, StoreConfig, UpstreamConfig, WatcherConfig
from jimeng_server.simulator import SimSettings, Simulator, simulator_hosts
from jimeng_server.store.base import Store
from jimeng_server.upstream.regions import Region

pytest_plugins = ["store_backends"]  # pg_server, pg_url, store_url: the store's tests run on both backends


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "wall_clock: the `clock` fixture starts at the wall clock's current whole second (for what a third party "
        "checks against real time: webhook signatures, presigned URLs, the simulator's skew check)",
    )


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> ManualClock:
    """The one manual clock of a test: the simulator, the server and the store all read it; tests advance it.

    It starts at ManualClock's fixed default (2026-01-01), or at the wall clock's current whole second in a test
    (or a module, `pytestmark`) marked `@pytest.mark.wall_clock`. Either way it never moves by itself."""
    if request.node.get_closest_marker("wall_clock") is not None:
        return ManualClock(start=float(int(time.time())))
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock) -> Simulator:
    # Shark mode (Seedance 2.0 needs a browser, shark.py) is off here; tests/upstream/test_transports.py turns it on.
    s = Simulator(clock=clock, settings=SimSettings(shark_models=frozenset()), seed=1)
    s.add_account(CN_TOKEN, region=Region.CN, vip=1000)
    s.add_account(CN_TOKEN_2, region=Region.CN, vip=1000)
    s.add_account(US_SESSION, region=Region.US, vip=1000)
    s.add_account(POOR_TOKEN, region=Region.CN, gift=0, purchase=0, vip=0)
    return s


@pytest.fixture
async def sim_server(sim: Simulator, aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    return await aiohttp_server(sim.create_app())


@pytest.fixture
def config(sim_server: TestServer, tmp_path: Path) -> Config:
    base = Config(
        upstream=UpstreamConfig(timeout=5.0, connect_timeout=2.0, read_retries=2, retry_backoff=1.0),
        security=SecurityConfig(allow_private_networks=True),
        store=StoreConfig(path=str(tmp_path / "tasks.db")),
        # Most tests watch every task in the background; the default "callbacks" mode has its own tests. They
        # time polls by the kind's schedule and learned times; timing by the upstream's forecast (on by default)
        # has its own tests (tests/watcher/test_forecast_timing.py).
        watcher=WatcherConfig(watch="all", use_forecast=False),
    )
    root = str(sim_server.make_url("")).rstrip("/")
    return with_simulator_hosts(base, simulator_hosts(root))


@pytest.fixture
def make_client(request: pytest.FixtureRequest, config: Config, clock: ManualClock) -> AppFactory:
    """Build the server app (watcher loop off: tests drive it) and return a test client for it.

    A test's `store_url` is set up before the apps (fixtures are torn down in reverse): its PostgreSQL database
    is dropped only after every app on it has closed, never under a still-open pool ("database ... has just
    been dropped or renamed")."""
    if "store_url" in request.fixturenames:
        request.getfixturevalue("store_url")
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]] = request.getfixturevalue("aiohttp_client")

    async def factory(**overrides: Any) -> TestClient[Any, Any]:
        cfg = dataclasses.replace(config, **overrides) if overrides else config
        app: web.Application = create_app(cfg, clock=clock, background=False, identity_salt=b"test-salt")
        return await aiohttp_client(app)

    return factory


@pytest.fixture
async def client(make_client: AppFactory) -> TestClient[Any, Any]:
    return await make_client()


@pytest.fixture
async def http_proxy() -> AsyncIterator[ConnectProxy]:
    """A started loopback HTTP proxy (CONNECT and absolute-form), closed after the test."""
    proxy = ConnectProxy()
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[tuple[Receiver, TestServer]]:
    """A loopback webhook receiver (tests/helpers/webhook_support.py) and its server; hung handlers released after."""
    rec = Receiver()
    server = await aiohttp_server(rec.app())
    yield rec, server
    rec.released.set()


@pytest.fixture
async def store(store_url: str, clock: ManualClock) -> AsyncIterator[Store]:
    """A fresh, empty store of each backend (`store_url`: SQLite and PostgreSQL) on the test's `clock`."""
    from store_backends import open_store  # imported here: pytest loads it as a plugin (pytest_plugins) first

    s = await open_store(store_url, clock)
    yield s
    await s.close()


@pytest.fixture
async def json_hook() -> AsyncIterator[tuple[str, list[dict[str, Any]], asyncio.Event]]:
    """A minimal webhook receiver on loopback for out-of-process servers: its URL, the JSON bodies received (in
    order), and an event set when one arrives. (In-process tests use `receiver`, which can also fail or hang.)"""
    got: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        got.append(json.loads(await request.read()))
        arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks/jimeng", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/jimeng", got, arrived
    finally:
        await runner.cleanup()


@pytest.fixture(autouse=True)
def no_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> Any:
    """Every test: no session id of the test accounts may appear in any captured log line."""
    caplog.set_level(logging.DEBUG)
    yield
    # caplog.records holds only the current phase (teardown here): check every phase of the test.
    records = [r for when in ("setup", "call", "teardown") for r in caplog.get_records(when)]
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in records)
    for secret in (CN_TOKEN, CN_TOKEN_2, US_SESSION, POOR_TOKEN):
        assert secret not in text, "a session token reached the logs"


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every temporary file of the test goes here, so leftovers can be seen."""
    directory = tmp_path / "spool"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory
