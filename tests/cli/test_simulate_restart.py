"""`--simulate` shows restart safety, with real processes: submit with a callback_url, kill -9 the server, start
it again; the same demo token works, the task finishes, its result URLs (same simulator port) serve PNGs and
the webhook arrives. The banner shows async submit, query and callback examples."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
from simulate_proc import SimulateProcess, start_simulate


def token_of(server: SimulateProcess) -> str:
    found = re.search(r"Bearer ([A-Za-z0-9_-]+)", server.banner)
    assert found is not None, server.banner
    return found.group(1)


async def test_kill_restart_the_task_still_finishes_and_the_webhook_arrives(
    tmp_path: Path, json_hook: tuple[str, list[dict[str, Any]], asyncio.Event]
) -> None:
    hook_url, got, arrived = json_hook
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "tasks.db"}"\n'
        "[security]\nallow_private_networks = true\n"
        "[watcher.image]\nfirst_poll = 0.3\ninterval = 0.3\n"
        '[server]\nlog_level = "WARNING"\n',
        encoding="utf-8",
    )
    first = await start_simulate(config, until="callback_url", seconds=20)
    for example in ("/v1/async/images/generations", "/v1/async/tasks/", "callback_url"):
        assert example in first.banner
    base = first.url
    auth = {"Authorization": f"Bearer {token_of(first)}"}
    try:
        async with (
            aiohttp.ClientSession() as http,
            asyncio.timeout(20),
            http.post(
                f"{base}/v1/async/images/generations",
                json={"prompt": "a cat in the snow", "callback_url": hook_url},
                headers=auth,
            ) as resp,
        ):
            submitted = await resp.json()
            assert resp.status == 200, submitted
    finally:
        await first.kill()
    history_id = submitted["history_id"]
    assert not got  # the image takes seconds to make: it was not finished before the kill

    second = await start_simulate(config, until="callback_url", port=first.port, seconds=20)
    try:
        assert token_of(second) == token_of(first)
        async with aiohttp.ClientSession() as http, asyncio.timeout(60):
            task: dict[str, Any] = {}
            while task.get("status") not in (10, 30):  # bounded: each answer long-polls up to 10 s
                async with http.get(f"{base}/v1/async/tasks/{history_id}?wait=10", headers=auth) as resp:
                    task = await resp.json()
                    assert resp.status == 200, task
            assert task["status"] == 10 and task["item_count"] == 4, task
            for result in task["results"]:
                async with http.get(result["url"]) as img:
                    assert img.status == 200
                    assert (await img.read())[:8] == b"\x89PNG\r\n\x1a\n"
            await arrived.wait()
        (event,) = got
        assert event["type"] == "task.succeeded"
        assert event["data"]["history_id"] == history_id and event["data"]["status"] == 10
    finally:
        await second.stop()
    # The simulator's state sits beside the simulate store.
    assert (tmp_path / "tasks-simulate.sim.json").exists()
