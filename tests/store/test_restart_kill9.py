"""Restart safety against a real `kill -9`: the server runs as a subprocess against a simulator in this
process; it is SIGKILLed with async tasks in flight, started again on the same database, and the tasks
complete (real clock, short intervals)."""

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
from support import CN_TOKEN

from jimeng_server.simulator import Simulator, simulator_hosts
from jimeng_server.upstream.regions import Region


def _config(path: Path, root: str, store: Path, *, first_poll: float) -> Path:
    lines = [f'[store]\npath = "{store}"\n', '[server]\nlog_level = "WARNING"\n']
    lines.append('[watcher]\nwatch = "all"\n')  # every task is watched in the background, so resumed
    lines.append(f"[watcher.image]\nfirst_poll = {first_poll}\ninterval = 0.3\ndeadline = 120.0\n")
    for region, hosts in simulator_hosts(root).items():
        lines.append(f"[upstream.regions.{region.value}]\n" + "".join(f'{k} = "{v}"\n' for k, v in hosts.items()))
    path.write_text("".join(lines), encoding="utf-8")
    return path


class _Server:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jimeng_server",
            "--config",
            str(self.config),
            "--port",
            str(self.port),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        async with aiohttp.ClientSession() as http, asyncio.timeout(20):
            while True:
                try:
                    async with http.get(f"{self.base}/ping") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)  # the subprocess is still starting

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                await self.proc.wait()


@pytest.fixture
async def live_sim(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[tuple[Simulator, str]]:
    sim = Simulator()  # real clock: the subprocess signs with real time
    sim.add_account(CN_TOKEN, region=Region.CN, vip=1000)
    server = await aiohttp_server(sim.create_app())
    yield sim, str(server.make_url("")).rstrip("/")


async def test_kill_9_with_tasks_in_flight_then_restart_completes_them(
    live_sim: tuple[Simulator, str], tmp_path: Path
) -> None:
    sim, root = live_sim
    store = tmp_path / "tasks.db"
    # First life: polls would start only after 60 s, so every task is still in flight when it dies.
    first = _Server(_config(tmp_path / "a.toml", root, store, first_poll=60.0))
    await first.start()
    headers = {"Authorization": f"Bearer {CN_TOKEN}"}
    ids: list[str] = []
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(3):
                async with http.post(
                    f"{first.base}/v1/async/images/generations", json={"prompt": f"survivor {i}"}, headers=headers
                ) as resp:
                    body: Any = await resp.json()
                    assert resp.status == 200, body
                    ids.append(body["history_id"])
        await first.kill()
    finally:
        await first.stop()
    assert sim.generate_count == 3 and not sim.calls("/get_history_by_ids")

    # Second life, same database, short first poll: the resumed tasks complete.
    second = _Server(_config(tmp_path / "b.toml", root, store, first_poll=0.3))
    await second.start()
    try:
        async with aiohttp.ClientSession() as http:
            for hid in ids:
                async with http.get(f"{second.base}/v1/async/tasks/{hid}?wait=20", headers=headers) as resp:
                    body = await resp.json()
                    assert resp.status == 200, body
                    assert body["status"] == 10 and len(body["results"]) == 4, json.dumps(body)[:500]
    finally:
        await second.stop()
    assert sim.generate_count == 3  # nothing was submitted twice
    polled = {hid for e in sim.calls("/get_history_by_ids") for hid in e.body["history_ids"]}
    assert polled == set(ids)
    # The restarted watcher took them up again: it polled all three in one batched call (a query of a task
    # nobody watches would have asked about its id alone).
    assert any(sorted(e.body["history_ids"]) == sorted(ids) for e in sim.calls("/get_history_by_ids"))
