"""Load bench for the async task API: N async image tasks over M accounts against the in-process simulator.

Simulator and server run in this process on loopback with the real clock (the simulator's timeline is
sped up). Prints submit latency (p50/p99), upstream polls per minute while the tasks are in flight, query
throughput for terminal tasks, and the process's RSS.

    .venv/bin/python bench/async_load.py [--tasks 1000] [--accounts 10] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import resource
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from jimeng_server.api.appkeys import WATCHER
from jimeng_server.app import create_app
from jimeng_server.cli import with_simulator_hosts
from jimeng_server.config import Config, KindSchedule, StoreConfig, WatcherConfig
from jimeng_server.simulator import SimSettings, Simulator, simulator_hosts


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB."""
    current = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            current = int(line.split()[1]) / 1024
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(tasks: int, accounts: int, concurrency: int, step: float, queries: int) -> None:
    sim = Simulator(settings=SimSettings(image_step_seconds=step), seed=7)
    tokens = [f"bench{i:02d}aaaabbbbccccddddeeeeffff" for i in range(accounts)]
    for token in tokens:
        sim.add_account(token, vip=10**9)
    sim_runner, sim_root = await serve(sim.create_app())
    with tempfile.TemporaryDirectory() as tmp:
        base = Config(
            watcher=WatcherConfig(
                batch_size=100, tick=0.5, image=KindSchedule(first_poll=5.0, interval=4.0, deadline=900.0)
            ),
            store=StoreConfig(path=str(Path(tmp) / "bench.db")),
        )
        config = with_simulator_hosts(base, simulator_hosts(sim_root))
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, host="127.0.0.1"))
        app = create_app(config)
        runner, root = await serve(app)
        watcher = app[WATCHER]
        sem = asyncio.Semaphore(concurrency)
        latencies: list[float] = []
        ids: list[tuple[str, str]] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

            async def submit(i: int) -> None:
                token = tokens[i % accounts]
                async with sem:
                    t0 = time.perf_counter()
                    async with http.post(
                        f"{root}/v1/async/images/generations",
                        json={"prompt": f"bench task {i}", "model": "jimeng-4.5"},
                        headers={"Authorization": f"Bearer {token}"},
                    ) as resp:
                        body = await resp.json()
                        assert resp.status == 200, body
                    latencies.append(time.perf_counter() - t0)
                ids.append((token, body["history_id"]))

            started = time.perf_counter()
            await asyncio.gather(*(submit(i) for i in range(tasks)))
            submit_wall = time.perf_counter() - started
            print(f"submitted {tasks} tasks over {accounts} accounts in {submit_wall:.1f} s")
            print(
                f"submit latency: p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
                f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, mean {statistics.mean(latencies) * 1000:.1f} ms"
            )

            # Upstream polls while (nearly) all tasks are in flight.
            window = 10.0
            calls0, pending0, t0 = len(sim.calls("/get_history_by_ids")), watcher.pending, time.perf_counter()
            await asyncio.sleep(window)
            calls1, pending1 = len(sim.calls("/get_history_by_ids")), watcher.pending
            elapsed = time.perf_counter() - t0
            print(
                f"upstream polls in the {window:g} s after the last submit: {(calls1 - calls0) / elapsed * 60:.0f}/min "
                f"(in flight {pending0} -> {pending1}; {accounts} accounts, batch of up to 100 ids per call)"
            )
            cur, peak = rss_mb()
            print(f"RSS with {pending1} tasks in flight: {cur:.0f} MiB (peak {peak:.0f} MiB)")

            while watcher.pending:  # noqa: ASYNC110 - a bench sampling the watcher, not a sync point
                await asyncio.sleep(0.5)
            total_polls = len(sim.calls("/get_history_by_ids"))
            in_flight = time.perf_counter() - started
            print(
                f"all final {in_flight:.1f} s after the first submit; {total_polls} polls in all "
                f"({total_polls / in_flight * 60:.0f} per minute on average while tasks were in flight)"
            )

            # Query throughput for terminal tasks (answered from the store: no upstream call).
            before = len(sim.journal)

            async def query(i: int) -> None:
                token, hid = ids[i % len(ids)]
                async with (
                    sem,
                    http.get(f"{root}/v1/async/tasks/{hid}", headers={"Authorization": f"Bearer {token}"}) as resp,
                ):
                    body = await resp.json()
                    assert resp.status == 200 and body["status"] == 10, body

            t0 = time.perf_counter()
            await asyncio.gather(*(query(i) for i in range(queries)))
            q_elapsed = time.perf_counter() - t0
            print(
                f"terminal-task queries: {queries / q_elapsed:.0f} req/s ({queries} GETs, concurrency "
                f"{concurrency}); upstream calls during queries: {len(sim.journal) - before}"
            )
            cur, peak = rss_mb()
            print(f"RSS at the end: {cur:.0f} MiB (peak {peak:.0f} MiB; simulator, server and client in one process)")
        await runner.cleanup()
    await sim_runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--step", type=float, default=8.0, help="simulator seconds per history step")
    parser.add_argument("--queries", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(run(args.tasks, args.accounts, args.concurrency, args.step, args.queries))


if __name__ == "__main__":
    main()
