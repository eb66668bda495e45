"""`kill -9` during keeping loses nothing (issue 21): the server runs as a subprocess with `[results] keep =
"local"` against a simulator in this process whose CDN holds one download open; the server is SIGKILLed while that
download is in flight, started again on the same database and directory, and the held webhook then arrives once,
with every result kept and loading from the new process (real clock, short intervals and lease)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from simulate_proc import free_port
from support import CN_TOKEN, HoldGate
from webhook_support import Receiver

from jimeng_server.simulator import Simulator, simulator_hosts
from jimeng_server.simulator.faults import Fault, FaultKind
from jimeng_server.upstream.regions import Region


@pytest.fixture
async def live_sim(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[tuple[Simulator, str]]:
    sim = Simulator()  # real clock: the subprocess signs with real time
    sim.add_account(CN_TOKEN, region=Region.CN, vip=1000)
    server = await aiohttp_server(sim.create_app())
    yield sim, str(server.make_url("")).rstrip("/")


def config_file(tmp_path: Path, root: str, port: int) -> Path:
    lines = [
        f'[store]\npath = "{tmp_path / "tasks.db"}"\n',
        '[server]\nlog_level = "INFO"\n',  # kept in a file per run (`start`), shown when the test fails
        "[security]\nallow_private_networks = true\n",  # the webhook receiver is on loopback
        '[watcher]\nwatch = "all"\n[watcher.image]\nfirst_poll = 0.3\ninterval = 0.3\n',
        f'[results]\nkeep = "local"\npath = "{tmp_path / "kept"}"\npublic_base_url = "http://127.0.0.1:{port}"\n'
        'link_secret = "kill-nine"\nlease_seconds = 2.0\nretries = [0.5]\n',
    ]
    for region, hosts in simulator_hosts(root).items():
        lines.append(f"[upstream.regions.{region.value}]\n" + "".join(f'{k} = "{v}"\n' for k, v in hosts.items()))
    path = tmp_path / "config.toml"
    path.write_text("".join(lines), encoding="utf-8")
    return path


async def start(config: Path, port: int, log: Path) -> asyncio.subprocess.Process:
    """The server as a subprocess, its log written to `log`; returns once it answers /ping."""
    with log.open("wb") as out:  # the child keeps its own descriptor
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jimeng_server", "--config", str(config), "--port", str(port),
            stdout=asyncio.subprocess.DEVNULL, stderr=out,
        )  # fmt: skip
    async with aiohttp.ClientSession() as http, asyncio.timeout(20):
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/ping") as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)  # the subprocess is still starting


async def test_kill_9_while_a_result_downloads_then_restart_keeps_everything_and_sends_once(
    live_sim: tuple[Simulator, str], tmp_path: Path, receiver: tuple[Receiver, TestServer]
) -> None:
    sim, root = live_sim
    rec, hook_server = receiver
    port = free_port()
    config = config_file(tmp_path, root, port)
    held = HoldGate()
    sim.faults.add("/1.png", Fault(FaultKind.HOLD, hold=held))  # the CDN holds result 1's download open
    auth = {"Authorization": f"Bearer {CN_TOKEN}"}
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first = await start(config, port, logs[0])
    try:
        async with aiohttp.ClientSession() as http:
            body = {"prompt": "survive", "callback_url": str(hook_server.make_url("/hooks/k9"))}
            async with http.post(f"http://127.0.0.1:{port}/v1/async/images/generations", json=body, headers=auth) as r:
                hid = (await r.json())["history_id"]
        async with asyncio.timeout(20):
            await held.reached.wait()  # the download reached the CDN and is held there
        first.send_signal(signal.SIGKILL)
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    held.set()  # the dead process's request is answered into a closed socket
    assert not rec.requests  # the webhook was held while keeping

    second = await start(config, port, logs[1])
    try:
        try:
            await rec.wait_for(lambda: bool(rec.requests), timeout=30)
        except TimeoutError:
            shown = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-6000:]}" for log in logs)
            raise AssertionError(f"no webhook within 30 s of the restart; the servers' logs:\n{shown}") from None
        (got,) = rec.requests
        results = json.loads(got.body)["data"]["results"]
        assert [r["kept"] for r in results] == [True] * 4
        async with aiohttp.ClientSession() as http:
            for r in results:
                async with http.get(r["url"]) as resp:
                    assert resp.status == 200 and (await resp.read())[:8] == b"\x89PNG\r\n\x1a\n"
            async with http.get(f"http://127.0.0.1:{port}/v1/async/tasks/{hid}", headers=auth) as resp:
                task: Any = await resp.json()
            async with http.get(f"http://127.0.0.1:{port}/v1/async/tasks/{hid}/deliveries", headers=auth) as resp:
                deliveries: Any = await resp.json()
        assert task["results"] == results
        (event,) = deliveries["events"]  # one event, delivered by its one attempt: nothing sent twice
        assert (event["state"], event["attempts"]) == ("delivered", 1)
    finally:
        second.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await second.wait()
    assert len(list((tmp_path / "kept").glob("*/*.png"))) == 4
