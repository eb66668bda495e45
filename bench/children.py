"""Child processes of the benches (Linux only: /proc), shared so no bench carries its own copy.

A bench runs its roles as separate processes: a role of the bench script itself (`start_role`: the child
serves on a free loopback port and writes it to a file, `serve_on_port_file`), and the server through its
public CLI (`python -m jimeng_server --config F --host 127.0.0.1 --port P`, then `wait_ready`), configured by a
TOML file whose upstream hosts point at the simulator (`upstream_toml`). `status_kb` and `cpu_seconds` read
what the kernel says about a child.

    proc, port = start_role(__file__, "sim", "--accounts", "10")   # runs: python <bench> --role sim
                                                                    #       --port-file F --accounts 10
    await serve_on_port_file(app, port_file)                        # in the child: never returns
    rss_kib = status_kb(proc.pid, "VmRSS")

Benches import it as a sibling module (`python bench/x.py` puts bench/ first on sys.path).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web


def start_role(
    script: str | os.PathLike[str], role: str, *args: str, timeout: float = 30.0
) -> tuple[subprocess.Popen[bytes], int]:
    """Start `python script --role ROLE --port-file F *args` and return the process and the port it wrote to F
    (RuntimeError if it exits or writes nothing within `timeout` seconds)."""
    port_file = Path(tempfile.mkstemp(prefix="bench-port-")[1])
    port_file.write_text("")
    proc = subprocess.Popen([sys.executable, str(script), "--role", role, "--port-file", str(port_file), *args])
    deadline = time.monotonic() + timeout
    try:
        while not port_file.read_text().strip():
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"{role} did not start")
            time.sleep(0.05)
        return proc, int(port_file.read_text())
    finally:
        port_file.unlink()


async def serve_on_port_file(app: web.Application, port_file: Path) -> None:
    """In a child role: serve `app` on 127.0.0.1 at a free port, write the port to `port_file`, run forever."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    await asyncio.to_thread(port_file.write_text, str(runner.addresses[0][1]))
    await asyncio.Event().wait()


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def status_kb(pid: int, field: str) -> int:
    """A kB field of /proc/PID/status (VmRSS, VmHWM, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process's main thread alone (/proc/PID/task/PID/stat): the event loop's,
    apart from worker threads (e.g. a SQLite connection's)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process, its live child processes (e.g. the server's webhook sender
    processes) and its children that ended and were waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    total = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    for child in child_pids(pid):
        with contextlib.suppress(OSError):  # ended meanwhile (its time is in cutime once waited for)
            total += cpu_seconds(child)
    return total


def child_pids(pid: int) -> list[int]:
    """The live child processes of `pid` (/proc/PID/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a child that takes its port as a flag)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def upstream_toml(sim_root: str) -> list[str]:
    """TOML lines pointing every region's upstream hosts at the simulator served at `sim_root`."""
    from jimeng_server.simulator import simulator_hosts

    lines: list[str] = []
    for region, hosts in simulator_hosts(sim_root).items():
        lines.append(f"[upstream.regions.{region.value}]")
        lines += [f'{name} = "{url}"' for name, url in hosts.items()]
    return lines


async def wait_ready(
    session: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process, within: float = 60.0
) -> None:
    """Wait until the server at `url` answers 200 on /readyz (SystemExit if it exits first or takes longer than
    `within` seconds)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise SystemExit(f"a server exited with {proc.returncode} at start-up")
        try:
            async with session.get(url + "/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"a server did not become ready within {within:g} s")
