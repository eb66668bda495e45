"""`python -m jimeng_server --simulate` as a child process, for the tests that run the real command."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SimulateProcess:
    """A running `--simulate` server; `banner` is what it printed up to the line the start waited for."""

    proc: asyncio.subprocess.Process
    port: int
    banner: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self, *, seconds: float = 30.0) -> str:
        """SIGTERM (unless it has exited), wait for the exit; returns its stderr. Asserts a clean exit (0, no
        traceback)."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(seconds):
            _, err = await self.proc.communicate()
        text = err.decode()
        assert self.proc.returncode == 0, text[-2000:]
        assert "Traceback" not in text
        return text

    async def kill(self) -> None:
        """kill -9: nothing is saved on the way out."""
        self.proc.kill()
        await self.proc.communicate()


async def start_simulate(
    config: Path,
    *,
    until: str,
    port: int | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    seconds: float = 30.0,
) -> SimulateProcess:
    """Start `python -m jimeng_server --simulate --config CONFIG --host 127.0.0.1 --port PORT` and read its
    stdout until a line holds `until` (the start-up banner). Fails if it exits first or takes over `seconds`."""
    port = port or free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jimeng_server",
        "--simulate",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    text = ""
    try:
        async with asyncio.timeout(seconds):
            while until not in text:
                line = await proc.stdout.readline()
                assert line, f"the server exited before printing {until!r}"
                text += line.decode()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
        await proc.communicate()
        raise
    return SimulateProcess(proc, port, text)
