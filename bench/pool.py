"""Account pool spread and fail-over: concurrent async submits with ONE API key over N simulated pool accounts.

Starts the upstream simulator and the server (real clock, loopback HTTP, store in a temp dir), adds N pool
accounts and one key, then:

1. sends `--requests` concurrent `POST /v1/async/images/generations` with the key and prints how many tasks each
   account got (healthy pool: max - min <= 2);
2. lets one account start refusing (its session expires; the pool does not know yet), sends the same again, and
   prints the spread, how many attempts the refusing account turned away, its health, and the checks: every
   request answered 200 (none lost), every history id charged exactly once (none charged twice), nothing
   charged to the refusing account after it started refusing.

    .venv/bin/python bench/pool.py [--accounts 10] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from jimeng_server.api.appkeys import ACCOUNT_POOL, API_KEYS, STORE
from jimeng_server.app import create_app
from jimeng_server.cli import with_simulator_hosts
from jimeng_server.config import Config, SecurityConfig, StoreConfig
from jimeng_server.simulator import Simulator, simulator_hosts
from jimeng_server.upstream.regions import Region


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def burst(http: aiohttp.ClientSession, base: str, key: str, n: int, tag: str) -> list[tuple[int, dict[str, Any]]]:
    async def one(i: int) -> tuple[int, dict[str, Any]]:
        async with http.post(
            f"{base}/v1/async/images/generations",
            json={"prompt": f"{tag} {i}"},
            headers={"Authorization": f"Bearer {key}"},
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    return await asyncio.gather(*(one(i) for i in range(n)))


def spread_line(counts: dict[str, int]) -> str:
    values = list(counts.values())
    return f"per account: {dict(sorted(counts.items()))}\n  max - min = {max(values) - min(values)}"


async def tasks_per_account(app: web.Application, names: dict[int, str], since: float) -> dict[str, int]:
    counts = {name: 0 for name in names.values()}
    for record, _ in await app[STORE].recent(1_000_000):
        if record.created_at >= since and record.account_id in names:
            counts[names[record.account_id]] += 1
    return counts


async def run(accounts: int, requests: int, db_dir: Path) -> bool:
    sim = Simulator(seed=7)
    sessions = {f"acct-{i:02d}": f"benchpool{i:02d}aaaabbbbccccdddd" for i in range(accounts)}
    for session in sessions.values():
        sim.add_account(session, region=Region.CN, vip=1_000_000)
    sim_runner, sim_base = await serve(sim.create_app())
    config = with_simulator_hosts(
        Config(security=SecurityConfig(allow_private_networks=True), store=StoreConfig(path=str(db_dir / "pool.db"))),
        simulator_hosts(sim_base),
    )
    config = dataclasses.replace(config, upstream=dataclasses.replace(config.upstream, credit_cache_seconds=0.0))
    app = create_app(config, background=False)
    runner, base = await serve(app)
    ok = True
    try:
        pool = app[ACCOUNT_POOL]
        names = {}
        for name, session in sessions.items():
            names[(await pool.add(name, session)).id] = name
        key, _ = await app[API_KEYS].create("bench", rate_per_minute=1_000_000, max_in_flight=1_000_000)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            # 1. healthy pool
            start, t0 = time.time() - 1, time.perf_counter()
            answers = await burst(http, base, key, requests, "healthy")
            elapsed = time.perf_counter() - t0
            statuses = Counter(status for status, _ in answers)
            counts = await tasks_per_account(app, names, start)
            spread = max(counts.values()) - min(counts.values())
            print(f"1. healthy pool: {requests} concurrent submits, one key, {accounts} accounts")
            print(f"  answers: {dict(statuses)} in {elapsed:.2f} s ({requests / elapsed:.0f} submits/s)")
            print(f"  {spread_line(counts)}  -> {'OK' if spread <= 2 else 'FAIL'} (healthy: <= 2)")
            ok &= spread <= 2 and statuses == Counter({200: requests})

            # 2. one account starts refusing
            victim = "acct-03"
            sim.expire_session(sessions[victim])
            start, charges_before, journal_before = time.time(), len(sim.charges), len(sim.journal)
            answers = await burst(http, base, key, requests, "failover")
            statuses = Counter(status for status, _ in answers)
            counts = await tasks_per_account(app, names, start)
            ids = [body.get("history_id") for status, body in answers if status == 200]
            charges = sim.charges[charges_before:]
            charged = Counter(hid for _, hid, _ in charges)
            after = [c for c in charges if c[0] == sessions[victim]]
            turned_away = [
                e for e in sim.journal[journal_before:] if e.sessionid == sessions[victim] and e.ret == "1015"
            ]
            health = next(a for a in await pool.rows() if a.name == victim)
            print(f"\n2. {victim} starts refusing (session expired); the pool learns it from the refusals")
            print(f"  answers: {dict(statuses)}")
            print(f"  {spread_line(counts)}")
            healthy = [n for name, n in counts.items() if name != victim]
            print(f"  spread over the other accounts: max - min = {max(healthy) - min(healthy)}")
            print(f"  attempts {victim} turned away (ret 1015, nothing spent), each failed over: {len(turned_away)}")
            print(
                f"  {victim}: last error {health.last_error_code}, cooling down until "
                f"{time.strftime('%H:%M:%S', time.localtime(health.cooldown_until or 0))}"
            )
            lost = requests - statuses[200]
            twice = sum(1 for n in charged.values() if n > 1)
            unmatched = set(ids) ^ set(charged)
            print(
                f"  requests lost: {lost}; history ids charged twice: {twice}; ids answered but not charged or "
                f"charged but not answered: {len(unmatched)}; charges to {victim} after it refused: {len(after)}"
            )
            ok &= lost == 0 and twice == 0 and not unmatched and not after and len(set(ids)) == requests
            ok &= health.last_error_code == "TOKEN_EXPIRED" and max(healthy) - min(healthy) <= 2
    finally:
        await runner.cleanup()
        await sim_runner.cleanup()
    print(f"\n{'PASS' if ok else 'FAIL'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ok = asyncio.run(run(args.accounts, args.requests, Path(tmp)))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
