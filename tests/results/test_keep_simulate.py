"""`--simulate` keeps results by default and serves them through the server's own port (issue 21: the
simulator's CDN is on a loopback port a container does not publish): an async task's query answers `/v1/files`
links on the server's port once kept, and they load. A real subprocess on the real clock (short intervals)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
from simulate_proc import start_simulate


async def test_simulate_serves_kept_results_through_its_own_port(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "tasks.db"}"\n'
        "[watcher.image]\nfirst_poll = 0.3\ninterval = 0.3\n"
        '[server]\nlog_level = "WARNING"\n',
        encoding="utf-8",
    )
    server = await start_simulate(config, until="Bearer", seconds=20)
    found = re.search(r"Bearer ([A-Za-z0-9_-]+)", server.banner)
    assert found is not None
    auth = {"Authorization": f"Bearer {found.group(1)}"}
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(60):
            async with http.post(
                f"{server.url}/v1/async/images/generations", json={"prompt": "a kept cat"}, headers=auth
            ) as resp:
                hid = (await resp.json())["history_id"]
            task: dict[str, Any] = {}
            while not (task.get("status") == 10 and all(r["kept"] for r in task["results"])):
                async with http.get(f"{server.url}/v1/async/tasks/{hid}?wait=5", headers=auth) as resp:
                    task = await resp.json()
                    assert resp.status == 200, task
                if task["status"] == 10:
                    await asyncio.sleep(0.2)  # a real process keeps its results in the background
            assert len(task["results"]) == 4
            for result in task["results"]:
                assert result["url"].startswith(f"http://127.0.0.1:{server.port}/v1/files/")
                async with http.get(result["url"]) as img:
                    assert img.status == 200 and img.content_type == "image/png"
                    assert (await img.read())[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        await server.stop()
    kept = list((tmp_path / "tasks-simulate-results").glob("*/*.png"))
    assert len(kept) == 4
