"""Browser transport cost: added latency per generate and memory per account context.

Simulator and server run in this process on loopback with the real clock. Async image submits (the call that
carries generate) go through the server twice: with `transport = "aiohttp"`, then with `transport = "browser"`
(a real headless Chromium, `[browser] executable`). Reports the first browser submit (Chromium start + the
account's context + the page and its script), warm submits (p50/p90) against aiohttp's, and the proportional
memory (PSS, from /proc) of the Chromium processes with 1 and with N account contexts open.

    .venv/bin/python bench/browser_transport.py [--accounts 4] [--submits 20] [--executable /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from jimeng_server.api.appkeys import CLIENT
from jimeng_server.app import create_app
from jimeng_server.cli import with_simulator_hosts
from jimeng_server.config import BrowserConfig, Config, StoreConfig
from jimeng_server.simulator import Simulator, simulator_hosts
from jimeng_server.upstream.browser import BrowserTransport
from jimeng_server.upstream.regions import Region
from jimeng_server.upstream.tokens import Account


def children(pid: int) -> list[int]:
    """Every descendant process id of `pid` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def chromium_pss_mb() -> float:
    """Proportional set size (MiB) of this process's Chromium descendants (shared pages split fairly)."""
    total = 0
    for pid in children(os.getpid()):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            if "chrom" not in comm:
                continue
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def submits(base: str, token: str, n: int) -> list[float]:
    """Seconds per async image submit (sequential), for `token`."""
    out = []
    async with aiohttp.ClientSession() as session:
        for i in range(n):
            start = time.perf_counter()
            async with session.post(
                f"{base}/v1/async/images/generations",
                json={"prompt": f"bench {i}"},
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                body = await resp.json()
                if resp.status not in (200, 202):
                    raise SystemExit(f"submit failed: HTTP {resp.status} {body}")
            out.append(time.perf_counter() - start)
    return out


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def run(accounts: int, n: int, executable: str, tmp: Path) -> None:
    sim = Simulator(seed=7)
    tokens = [f"benchbrowser{i:04d}aaaabbbbccccdddd" for i in range(accounts)]
    for token in tokens:
        sim.add_account(token, region=Region.CN, vip=100_000)
    sim_runner, sim_root = await serve(sim.create_app())
    base_config = with_simulator_hosts(Config(), simulator_hosts(sim_root))
    results: dict[str, list[float]] = {}
    try:
        for transport in ("aiohttp", "browser"):
            config = dataclasses.replace(
                base_config,
                upstream=dataclasses.replace(base_config.upstream, transport=transport),
                browser=BrowserConfig(executable=executable, max_contexts=accounts),
                store=StoreConfig(path=str(tmp / f"{transport}.db")),
            )
            app = create_app(config, run_watcher=False)
            runner, base = await serve(app)
            try:
                results[transport] = await submits(base, tokens[0], n + 1)
                if transport == "browser":
                    one = chromium_pss_mb()
                    for token in tokens[1:]:
                        await submits(base, token, 1)
                    many = chromium_pss_mb()
                    chosen = app[CLIENT].transports.for_account(Account(sessionid=tokens[0], region=Region.CN))
                    assert isinstance(chosen, BrowserTransport)
                    contexts = chosen.open_contexts
            finally:
                await runner.cleanup()
    finally:
        await sim_runner.cleanup()
    plain, browser = results["aiohttp"][1:], results["browser"][1:]
    print(f"generate submits per transport: {n} warm (after 1 first), one account, loopback simulator")
    print(f"aiohttp  submit:      p50 {ms(plain, 50):7.1f} ms   p90 {ms(plain, 90):7.1f} ms")
    print(f"browser  first submit:        {1000 * results['browser'][0]:7.1f} ms (Chromium start + context + page)")
    print(f"browser  warm submit: p50 {ms(browser, 50):7.1f} ms   p90 {ms(browser, 90):7.1f} ms")
    print(f"browser  added latency (warm p50): {ms(browser, 50) - ms(plain, 50):7.1f} ms")
    print(f"Chromium PSS with 1 context: {one:7.1f} MiB; with {contexts} contexts: {many:7.1f} MiB")
    if contexts > 1:
        print(f"memory per additional account context: {(many - one) / (contexts - 1):7.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--submits", type=int, default=20)
    parser.add_argument("--executable", default=BrowserConfig().executable)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args.accounts, args.submits, args.executable, Path(tmp)))


if __name__ == "__main__":
    main()
