"""`--simulate` seeds the account pool (issue 12): in a subprocess, the printed demo API key submits a task served
by one of three demo pool accounts, and the printed admin key opens the admin API that lists them. A second
run on the same store keeps the demo pool (the simulator's state survives restarts), the demo key and the admin
key (issue 24): the first run's task is found with the same key, the dashboard needs no new login. `--simulate
accounts|keys ...` act on the simulator's store."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
from simulate_proc import start_simulate


async def _run_once(config: Path, earlier_task: str | None = None) -> tuple[str, str, str]:
    """Start `--simulate`, check the demo key and the admin API (and that `earlier_task` is found with the key),
    stop it; returns (demo key, admin key, the history id it submitted)."""
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
            assert in_flight == 1 if earlier_task is None else in_flight >= 1
            async with http.get(f"{base}/admin") as resp:
                assert resp.status == 200
            if earlier_task is not None:  # the same key still owns the task of the earlier run
                async with http.get(
                    f"{base}/v1/async/tasks/{earlier_task}", headers={"Authorization": f"Bearer {key.group(1)}"}
                ) as resp:
                    found = await resp.json()
                    assert resp.status == 200 and found["history_id"] == earlier_task, found
        return key.group(1), admin.group(1), str(submitted["history_id"])
    finally:
        await server.stop()


async def test_simulate_seeds_a_demo_pool_and_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "tasks.db"}"\n[server]\nlog_level = "WARNING"\n', encoding="utf-8")
    first_key, first_admin, task = await _run_once(config)
    second_key, second_admin, _ = await _run_once(config, earlier_task=task)
    assert (second_key, second_admin) == (first_key, first_admin)
    kept = tmp_path / "tasks-simulate.keys.json"  # beside the simulate store, readable by the owner only
    assert kept.stat().st_mode & 0o077 == 0
    # The pool commands with --simulate act on the simulator's store: its demo pool and its demo key.
    accounts = await manage(config, "--simulate", "accounts", "list")
    assert accounts.returncode == 0, accounts.stderr
    assert accounts.stdout.count("simulator demo account") == 3
    keys = await manage(config, "--simulate", "keys", "list")
    assert keys.returncode == 0 and first_key[:8] in keys.stdout and first_key not in keys.stdout
    # Without --simulate they show the real store, which has no demo accounts.
    plain = await manage(config, "accounts", "list")
    assert plain.returncode == 0 and "simulator demo account" not in plain.stdout


async def manage(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m jimeng_server --config CONFIG ARGS...` to completion (off the event loop)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIMENG_")}
    command = [sys.executable, "-m", "jimeng_server", "--config", str(config), *args]
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, env=env, check=False
    )
