"""Three replicas on one PostgreSQL, one SIGKILLed mid-flight: nothing lost, nothing done twice.

Starts (or uses `--postgres URL`) a PostgreSQL server, the upstream simulator and a webhook receiver in this
process, and three `python -m jimeng_server` processes on one fresh database. Each replica reaches the
simulator through its own loopback address (127.0.0.2-4), so the simulator's journal tells who polled what.
Then:

1. submits `--tasks` async image tasks with a callback URL and an Idempotency-Key, round-robin over the
   replicas and `--accounts` accounts;
2. SIGKILLs replica 1 while the tasks are in flight;
3. waits until every task is final and every webhook arrived, replays every Idempotency-Key on another live
   replica (same body: the first answer again; another body: 422), and prints the figures and checks:
   every task final, every webhook delivered (duplicates counted), each task generated once (simulator),
   no task polled by two replicas at once (per task, the poller changes only at a hand-over or take-over,
   never back, and the gap is reported), and the take-over time (kill -> first poll of the dead replica's
   tasks by another replica).

    .venv/bin/python bench/replicas.py [--tasks 300] [--lease 6] [--postgres postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from children import free_port, upstream_toml, wait_ready

from jimeng_server.simulator import Simulator
from jimeng_server.upstream.regions import Region

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "helpers"))
from store_backends import PgServer, local_server  # the tests' throw-away PostgreSQL

REPLICAS = 3
KILLED = 1
SUBMIT = "/v1/async/images/generations"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def replica_config(store_url: str, sim_root: str, lease: float) -> str:
    """The TOML of one replica: the shared database, the simulator's hosts, fast polls."""
    lines = [
        "[server]",
        'log_level = "WARNING"',
        "[store]",
        f'url = "{store_url}"',
        "pool_size = 5",
        f"watch_lease_seconds = {lease}",
        "[security]",
        "allow_private_networks = true",
        "[watcher]",
        "tick = 0.2",
        "[watcher.image]",
        "first_poll = 1.0",
        "interval = 1.0",
        "deadline = 900.0",
        "[webhooks]",
        "poll_interval = 0.5",
    ]
    return "\n".join([*lines, *upstream_toml(sim_root)]) + "\n"


class Journal:
    """Who polled which history id when: (monotonic time, replica index) per id."""

    def __init__(self) -> None:
        self.polls: dict[str, list[tuple[float, int]]] = defaultdict(list)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.endswith("/get_history_by_ids"):
            body = await request.json()
            # The address the replica connected to (127.0.0.2 + its index) tells who polled.
            sockname = request.transport.get_extra_info("sockname") if request.transport else None
            replica = int(str(sockname[0]).rsplit(".", 1)[1]) - 2 if sockname else -1
            now = time.monotonic()
            for hid in body.get("history_ids", []):
                self.polls[hid].append((now, replica))
        return await handler(request)


class Receiver:
    """Counts webhook deliveries per history id (any 2xx ends a delivery; duplicates are counted)."""

    def __init__(self) -> None:
        self.deliveries: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.deliveries[body["data"]["history_id"]] += 1
        return web.Response(status=204)


async def serve(app: web.Application, hosts: list[str], port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for host in hosts:
        await web.TCPSite(runner, host, port).start()
    return runner


async def run(args: argparse.Namespace, server: PgServer) -> bool:
    admin = await asyncpg.connect(server.url("postgres"))
    db = f"bench_{uuid.uuid4().hex[:12]}"
    await admin.execute(f"CREATE DATABASE {db}")
    await admin.close()
    store_url = server.url(db)

    sim = Simulator(seed=15)
    tokens = [f"sess0rep{i:02d}aaabbbbccccddddeeeef" for i in range(args.accounts)]
    for token in tokens:
        sim.add_account(token, region=Region.CN, vip=10**6)
    journal = Journal()
    sim_app = sim.create_app()
    sim_app.middlewares.append(journal.middleware)
    sim_port = free_port()
    replica_hosts = [f"127.0.0.{i + 2}" for i in range(REPLICAS)]
    sim_runner = await serve(sim_app, replica_hosts, sim_port)
    receiver = Receiver()
    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver.handle)
    hook_port = free_port()
    hook_runner = await serve(hook_app, ["127.0.0.1"], hook_port)
    callback = f"http://127.0.0.1:{hook_port}/hook"

    work = Path(tempfile.mkdtemp(prefix="jimeng-replicas-"))
    procs: list[asyncio.subprocess.Process] = []
    urls: list[str] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIMENG_")}
    ok = True
    try:
        for i, host in enumerate(replica_hosts):
            cfg = work / f"replica{i}.toml"
            cfg.write_text(replica_config(store_url, f"http://{host}:{sim_port}", args.lease), encoding="utf-8")
            port = free_port()
            with (work / f"replica{i}.log").open("wb") as log:
                procs.append(
                    await asyncio.create_subprocess_exec(
                        *(sys.executable, "-m", "jimeng_server", "--config", str(cfg)),
                        *("--host", "127.0.0.1", "--port", str(port)),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                )
            urls.append(f"http://127.0.0.1:{port}")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            for url, proc in zip(urls, procs, strict=True):
                await wait_ready(session, url, proc)
            await asyncio.sleep(args.lease * 1.5)  # let the replicas share the shards out
            leases = await shard_owners(store_url)
            print(f"replicas ready; watch shards held: {leases}")

            # 1. submits, round-robin
            answers: dict[int, dict[str, Any]] = {}
            limit = asyncio.Semaphore(30)

            async def submit(n: int) -> None:
                async with limit:
                    headers = {"Authorization": f"Bearer {tokens[n % len(tokens)]}", "Idempotency-Key": f"k{n}"}
                    body = {"prompt": f"replica bench {n}", "callback_url": callback}
                    async with session.post(urls[n % REPLICAS] + SUBMIT, json=body, headers=headers) as resp:
                        answers[n] = {"status": resp.status, "body": await resp.json()}

            started = time.monotonic()
            await asyncio.gather(*(submit(n) for n in range(args.tasks)))
            submitted = time.monotonic() - started
            refused = [n for n, a in answers.items() if a["status"] != 200]
            print(f"{args.tasks} submits answered in {submitted:.1f} s; not 200: {len(refused)}")
            ids = {n: a["body"]["history_id"] for n, a in answers.items() if a["status"] == 200}

            # 2. SIGKILL one replica while tasks are in flight
            await asyncio.sleep(args.kill_after)
            in_flight = await count_processing(store_url)
            procs[KILLED].send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await procs[KILLED].wait()
            print(f"replica {KILLED} SIGKILLed with {in_flight} task(s) still processing")

            # 3. wait for every task and webhook
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                if await count_processing(store_url) == 0 and set(ids.values()) <= set(receiver.deliveries):
                    break
                await asyncio.sleep(0.5)
            done_after = time.monotonic() - killed_at
            processing = await count_processing(store_url)
            missing_hooks = set(ids.values()) - set(receiver.deliveries)
            duplicates = sum(receiver.deliveries.values()) - len(receiver.deliveries)

            # Idempotency-Key replays on another live replica
            live = [i for i in range(REPLICAS) if i != KILLED]
            replay_bad = 0
            mismatch_bad = 0
            for n, first in answers.items():
                target = urls[next(i for i in live if i != n % REPLICAS)]
                headers = {"Authorization": f"Bearer {tokens[n % len(tokens)]}", "Idempotency-Key": f"k{n}"}
                body = {"prompt": f"replica bench {n}", "callback_url": callback}
                async with session.post(target + SUBMIT, json=body, headers=headers) as resp:
                    if resp.status != first["status"] or await resp.json() != first["body"]:
                        replay_bad += 1
                if n % 10 == 0:
                    other = {"prompt": f"another body {n}", "callback_url": callback}
                    async with session.post(target + SUBMIT, json=other, headers=headers) as resp:
                        mismatch_bad += resp.status != 422

        generated = len(sim.records)
        takeover, gaps, interleaved = poll_report(journal, killed_at)
        print(f"every task final: {processing == 0} ({processing} still processing), {done_after:.1f} s after the kill")
        print(
            f"webhooks: {len(receiver.deliveries)}/{len(ids)} tasks delivered, {len(missing_hooks)} missing, "
            f"{duplicates} duplicate deliveries"
        )
        print(f"generated upstream: {generated} for {len(ids)} accepted submits (each once: {generated == len(ids)})")
        print(
            f"Idempotency-Key replays on another replica: {len(answers) - replay_bad}/{len(answers)} identical; "
            f"different body -> 422: {'all' if mismatch_bad == 0 else f'{mismatch_bad} wrong'}"
        )
        print(
            f"polls: {sum(len(p) for p in journal.polls.values())} for {len(journal.polls)} tasks; "
            f"tasks whose poller changed: {len(gaps)}; poller changed back (two replicas alternating): "
            f"{interleaved}"
        )
        if gaps:
            print(
                f"  gap between the last poll of one replica and the first of the next: min {min(gaps):.2f} s, "
                f"median {statistics.median(gaps):.2f} s (lease {args.lease} s)"
            )
        if takeover:
            print(
                f"take-over after SIGKILL (kill -> first poll of each of its tasks by another replica): "
                f"median {statistics.median(takeover):.2f} s, max {max(takeover):.2f} s over {len(takeover)} tasks"
            )
        ok = (
            not refused
            and processing == 0
            and not missing_hooks
            and generated == len(ids)
            and replay_bad == 0
            and mismatch_bad == 0
            and interleaved == 0
            and all(g > 0 for g in gaps)
        )
        print("OK" if ok else "FAILED")
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await sim_runner.cleanup()
        await hook_runner.cleanup()
        if not ok:
            print(f"replica logs kept in {work}")
    return ok


def poll_report(journal: Journal, killed_at: float) -> tuple[list[float], list[float], int]:
    """Take-over delays of the killed replica's tasks, the gaps at each change of poller, and how many tasks
    saw a replica poll again after another had taken over (two replicas alternating)."""
    takeover: list[float] = []
    gaps: list[float] = []
    interleaved = 0
    for polls in journal.polls.values():
        polls.sort()
        owners = [r for r, _ in itertools.groupby(replica for _, replica in polls)]
        if len(owners) != len(set(owners)):
            interleaved += 1
        for (t1, r1), (t2, r2) in itertools.pairwise(polls):
            if r1 != r2:
                gaps.append(t2 - t1)
                if r1 == KILLED and t1 <= killed_at < t2:
                    takeover.append(t2 - killed_at)
    return takeover, gaps, interleaved


async def shard_owners(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT owner, COUNT(*) AS n FROM watch_leases GROUP BY owner ORDER BY owner")
    finally:
        await conn.close()
    return {str(row["owner"]).split(":")[1] if row["owner"] else "free": int(row["n"]) for row in rows}


async def count_processing(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT COUNT(*) FROM tasks WHERE status = 20"))
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--accounts", type=int, default=12)
    parser.add_argument("--lease", type=float, default=6.0, help="[store] watch_lease_seconds")
    parser.add_argument("--kill-after", type=float, default=1.0, help="seconds after the last submit")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--postgres", help="a server URL (postgresql://user@host:port); default: start one")
    args = parser.parse_args()
    if args.postgres:
        ok = asyncio.run(run(args, PgServer(args.postgres.rstrip("/"))))
    else:
        with local_server() as server:
            ok = asyncio.run(run(args, server))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
