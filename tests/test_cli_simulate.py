"""The README's run command, end to end: `python -m jimeng_server --simulate` in a subprocess, then a
real text-to-image request whose URLs serve valid PNGs. Uses the real clock (short watcher intervals)."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_simulate_mode_serves_real_pngs(tmp_path: Path) -> None:
    store = tmp_path / "tasks.db"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\npath = "{store}"\n'
        "[watcher.image]\nfirst_poll = 0.5\ninterval = 0.5\ndeadline = 60.0\n"
        '[server]\nlog_level = "WARNING"\n',
        encoding="utf-8",
    )
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jimeng_server",
        "--simulate",
        "--config",
        str(config),
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        text = ""
        async with asyncio.timeout(20):
            while "Bearer" not in text:
                line = await proc.stdout.readline()
                assert line, "the server exited before printing the demo command"
                text += line.decode()
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
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
