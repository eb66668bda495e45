"""SIGTERM at any moment after the server's port opens stops it cleanly (exit 0, no traceback), even while the
simulator, the store or the app are still starting: the real command in a subprocess, signalled the moment
its port accepts a connection, and again once it is fully up."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from simulate_proc import free_port, start_simulate


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "tasks.db"}"\n[server]\nlog_level = "WARNING"\n', encoding="utf-8")
    return config


async def _port_open(port: int, proc: asyncio.subprocess.Process) -> None:
    """Return as soon as 127.0.0.1:`port` accepts a connection (the kernel accepts once the socket listens)."""
    async with asyncio.timeout(30):
        while True:
            assert proc.returncode is None, "the server exited before opening its port"
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.005)  # polling a port another process opens
                continue
            writer.close()
            return


@pytest.mark.parametrize("simulate", [True, False], ids=["simulate", "plain"])
async def test_sigterm_the_moment_the_port_opens_exits_cleanly(tmp_path: Path, simulate: bool) -> None:
    port = free_port()
    args = ["--simulate"] if simulate else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jimeng_server",
        *args,
        "--config",
        str(_config(tmp_path)),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await _port_open(port, proc)
        proc.send_signal(signal.SIGTERM)  # the start-up (simulator, store, app) is most likely still running
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    text = err.decode()
    assert proc.returncode == 0, text[-2000:]
    assert "Traceback" not in text
    assert "Task was destroyed" not in text and "Unclosed" not in text


async def test_sigterm_after_the_banner_still_exits_cleanly(tmp_path: Path) -> None:
    server = await start_simulate(_config(tmp_path), until="Bearer", seconds=30)
    await server.stop()  # asserts exit 0 and no traceback
