"""`--simulate` seeds the account pool (issue 12): in a subprocess, the printed demo API key submits a task served
by one of three demo pool accounts, and the printed admin key opens the admin API that lists them. A second
run on the same store keeps the demo pool (the simulator's state survives restarts) and revokes the old demo key."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
from simulate_proc import start_simulate


async def _run_once(config: Path, old_key: str | None = None) -> tuple[str, str]:
    """Start `--simulate`, check the demo key and the admin API, stop it; returns (demo key, admin key)."""
    server = await start_simulate(config, until="Dashboard:", seconds=20)
    try:
        text = server.banner
        key = re.search(r"Bearer (jk_[A-Za-z0-9_-]+)", text)
        admin = re.search(r"admin key: ([A-Za-z0-9_-]+)", text)
        assert key is not None and admin is not None, text
        base = server.url
        async with aiohttp.ClientSession() as http, asyncio.timeout(30):
            async with http.post(
                f"{base}/v1/async/images/generations",
                json={"prompt": "a cat"},
                headers={"Authorization": f"Bearer {key.group(1)}"},
            ) as resp:
                submitted = await resp.json()
                assert resp.status == 200, submitted
            async with http.get(
                f"{base}/admin/api/accounts", headers={"Authorization": f"Bearer {admin.group(1)}"}
            ) as resp:
                accounts = (await resp.json())["data"]
            enabled = [a for a in accounts if a["enabled"]]
            assert len(enabled) == 3 and all(a["note"] == "simulator demo account" for a in enabled)
            # The second run also counts the first run's task while that one is still running.
            in_flight = sum(a["in_flight"] for a in enabled)
            assert in_flight == 1 if old_key is None else in_flight >= 1
            async with http.get(f"{base}/admin") as resp:
                assert resp.status == 200
            if old_key is not None:  # the demo key of an earlier run is revoked
                async with http.get(f"{base}/v1/async/tasks/1", headers={"Authorization": f"Bearer {old_key}"}) as resp:
                    assert resp.status == 401 and (await resp.json())["error"]["code"] == "API_KEY_REVOKED"
        return key.group(1), admin.group(1)
    finally:
        await server.stop()


async def test_simulate_seeds_a_demo_pool_and_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "tasks.db"}"\n[server]\nlog_level = "WARNING"\n', encoding="utf-8")
    first_key, _ = await _run_once(config)
    second_key, _ = await _run_once(config, old_key=first_key)
    assert first_key != second_key
