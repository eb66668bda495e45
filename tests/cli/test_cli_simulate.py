"""The README's run command, end to end: `python -m jimeng_server --simulate` in a subprocess, then a
real text-to-image request whose URLs serve valid PNGs. Uses the real clock (short watcher intervals)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
from simulate_proc import start_simulate


async def test_simulate_mode_serves_real_pngs(tmp_path: Path) -> None:
    store = tmp_path / "tasks.db"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\npath = "{store}"\n'
        "[watcher.image]\nfirst_poll = 0.5\ninterval = 0.5\ndeadline = 60.0\n"
        '[server]\nlog_level = "WARNING"\n',
        encoding="utf-8",
    )
    server = await start_simulate(config, until="Bearer", seconds=20)
    port = server.port
    try:
        text = server.banner
        token = re.search(r"Bearer ([A-Za-z0-9_-]+)", text)
        assert token is not None
        async with aiohttp.ClientSession() as http, asyncio.timeout(30):
            async with http.post(
                f"http://127.0.0.1:{port}/v1/images/generations",
                json={"prompt": "a cat in the snow", "model": "jimeng-4.5"},
                headers={"Authorization": f"Bearer {token.group(1)}"},
            ) as resp:
                body = await resp.json()
                assert resp.status == 200, body
            urls = [d["url"] for d in body["data"]]
            assert len(urls) == 4
            for url in urls:
                async with http.get(url) as img:
                    assert img.status == 200
                    assert (await img.read())[:8] == b"\x89PNG\r\n\x1a\n"
        # Simulated tasks live in their own store file, apart from real ones.
        assert (tmp_path / "tasks-simulate.db").exists() and not store.exists()
    finally:
        await server.stop()
