"""The operator's first hour, small things (issue 24): `--help` opens with a whole sentence and lists `doctor`;
`accounts check` asks the upstream for every account at once (bounded by one timeout, not their sum); a sync
504 TASK_TIMEOUT carries the history id as a field; a model of the other kind points to the right endpoint;
the `--simulate` banner's callback example can work (a receiver on this machine, and what to set for it)."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pool_support import POOL_SESSIONS
from support import CN_TOKEN, AppFactory, bearer, drive, json_of

from jimeng_server import manage
from jimeng_server.cli import LOCAL_RECEIVER, parse_args, simulate_banner, with_simulator_hosts
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config, SecurityConfig, StoreConfig, UpstreamConfig
from jimeng_server.services import accounts as accounts_service
from jimeng_server.simulator import simulator_hosts
from jimeng_server.upstream import catalog

Client = TestClient[Any, Any]


def test_help_opens_with_a_whole_sentence_and_lists_doctor() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIMENG_")}
    done = subprocess.run(
        [sys.executable, "-m", "jimeng_server", "--help"], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    paragraphs = done.stdout.split("\n\n")
    description = " ".join(paragraphs[1].split())  # the paragraph after the usage lines
    assert description.startswith("Serve the Jimeng") and description.endswith(".")
    assert "`" not in description and "[--config" not in description
    assert "\n  doctor " in done.stdout and "accounts" in done.stdout and "keys" in done.stdout


# ------------------------------------------------------------------------------------------ accounts check


async def test_accounts_check_asks_for_every_account_at_once(
    aiohttp_server: Callable[..., Awaitable[TestServer]], tmp_path: Path
) -> None:
    """An upstream that never answers until all three balance reads are waiting on it: checked one after another
    the first read would time out alone; checked together all three arrive, and all three fail over time."""
    waiting = 0
    most = 0
    all_there = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        nonlocal waiting, most
        waiting += 1
        most = max(most, waiting)
        if waiting >= len(POOL_SESSIONS):
            all_there.set()
        try:
            await all_there.wait()
            return web.Response(status=503, text="busy")  # after all arrived: a refusal the check records
        finally:
            waiting -= 1

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    upstream = await aiohttp_server(app)
    base = Config(
        upstream=UpstreamConfig(timeout=5.0, connect_timeout=2.0, read_retries=0, retry_backoff=0.0),
        security=SecurityConfig(allow_private_networks=True),
        store=StoreConfig(path=str(tmp_path / "pool.db")),
    )
    config = with_simulator_hosts(base, simulator_hosts(str(upstream.make_url("")).rstrip("/")))
    for name, session in POOL_SESSIONS.items():
        assert await manage.run(config, parse_args(["accounts", "add", name, session]), out=io.StringIO()) == 0
    out = io.StringIO()
    assert await manage.run(config, parse_args(["accounts", "check"]), out=out) == 0
    assert most == len(POOL_SESSIONS), f"at most {most} balance read(s) were in flight together"
    table = out.getvalue()
    assert all(name in table for name in POOL_SESSIONS)
    assert all(session not in table for session in POOL_SESSIONS.values())


async def test_accounts_check_gives_up_on_an_account_after_the_check_bound(
    aiohttp_server: Callable[..., Awaitable[TestServer]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upstream that never answers: each account is recorded as UPSTREAM_TIMEOUT once the check's bound
    passes (here shortened), long before the upstream timeout, and the command still prints the table."""
    never = asyncio.Event()

    async def silent(request: web.Request) -> web.StreamResponse:
        await never.wait()
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", silent)
    upstream = await aiohttp_server(app)
    base = Config(
        upstream=UpstreamConfig(timeout=30.0, connect_timeout=2.0, read_retries=0, retry_backoff=0.0),
        security=SecurityConfig(allow_private_networks=True),
        store=StoreConfig(path=str(tmp_path / "pool.db")),
    )
    config = with_simulator_hosts(base, simulator_hosts(str(upstream.make_url("")).rstrip("/")))
    for name, session in POOL_SESSIONS.items():
        assert await manage.run(config, parse_args(["accounts", "add", name, session]), out=io.StringIO()) == 0
    monkeypatch.setattr(accounts_service, "CHECK_SECONDS", 0.3)
    out = io.StringIO()
    async with asyncio.timeout(10):  # far below the 30 s upstream timeout
        assert await manage.run(config, parse_args(["accounts", "check"]), out=out) == 0
    never.set()
    rows = [line for line in out.getvalue().splitlines() if any(name in line for name in POOL_SESSIONS)]
    assert len(rows) == len(POOL_SESSIONS) and all("UPSTREAM_TIMEOUT" in row for row in rows), out.getvalue()


async def test_an_unknown_account_is_refused_before_any_check(tmp_path: Path) -> None:
    config = Config(store=StoreConfig(path=str(tmp_path / "pool.db")))
    assert await manage.run(config, parse_args(["accounts", "add", "pa", POOL_SESSIONS["pa"]]), out=io.StringIO()) == 0
    assert await manage.run(config, parse_args(["accounts", "check", "pa", "nope"]), out=io.StringIO()) == 1


# ------------------------------------------------------------------------------------------ answers


async def test_a_sync_timeout_carries_the_history_id_as_a_field(client: Client, clock: ManualClock) -> None:
    (resp,) = await drive(
        client.app,
        clock,
        client.post("/v1/images/generations", json={"prompt": "never [sim:stuck0]"}, headers=bearer(CN_TOKEN)),
    )
    body = await json_of(resp)
    assert resp.status == 504 and body["error"]["code"] == "TASK_TIMEOUT"
    history_id = body["error"]["history_id"]
    assert history_id and history_id in body["error"]["message"]
    # The field is the task's id: the task is found with it and is still processing.
    task = await client.get(f"/v1/async/tasks/{history_id}", headers=bearer(CN_TOKEN))
    assert task.status == 200 and (await json_of(task))["status"] == 20


async def test_a_video_model_on_an_image_endpoint_points_to_the_video_endpoint(client: Client) -> None:
    video_model = next(iter(catalog.VIDEO_MODELS))
    for path in ("/v1/images/generations", "/v1/async/images/generations"):
        resp = await client.post(path, json={"prompt": "x", "model": video_model}, headers=bearer(CN_TOKEN))
        body = await json_of(resp)
        assert resp.status == 400 and body["error"]["code"] == "WRONG_ENDPOINT", body
        assert "/v1/videos/generations" in body["error"]["message"] and "video model" in body["error"]["message"]
    image_model = next(iter(catalog.IMAGE_MODELS))
    resp = await client.post(
        "/v1/async/videos/generations", json={"prompt": "x", "model": image_model}, headers=bearer(CN_TOKEN)
    )
    body = await json_of(resp)
    assert resp.status == 400 and body["error"]["code"] == "WRONG_ENDPOINT", body
    assert "/v1/images/generations" in body["error"]["message"]


async def test_the_banners_callback_example_reaches_a_receiver_here_when_allowed(
    make_client: AppFactory, config: Config
) -> None:
    guarded = simulate_banner("http://127.0.0.1:5100", "tok", "jk_x", "adm", private_ok=False)
    allowed = simulate_banner("http://127.0.0.1:5100", "tok", "jk_x", "adm", private_ok=True)
    assert LOCAL_RECEIVER in guarded and LOCAL_RECEIVER in allowed and "receiver.example" not in guarded
    assert "allow_private_networks = true" in guarded and "allow_private_networks" not in allowed
    body = {"prompt": "a cat in the snow", "callback_url": LOCAL_RECEIVER}
    open_client = await make_client()  # the test config allows private networks, as the banner then says
    resp = await open_client.post("/v1/async/images/generations", json=body, headers=bearer(CN_TOKEN))
    assert resp.status == 200, await json_of(resp)
    strict = await make_client(security=SecurityConfig(allow_private_networks=False))
    resp = await strict.post("/v1/async/images/generations", json=body, headers=bearer(CN_TOKEN))
    refused = await json_of(resp)
    assert resp.status == 400 and "allow_private_networks" in refused["error"]["message"], refused
