"""How soon a sync answer follows the upstream's own finish, and how many polls it costs (issue 27).

    .venv/bin/python bench/latency.py [--n 1,20,300] [--singles 16] [--warmup 32] [--spread 0.3]
                                      [--set watcher.adaptive=false ...]

Processes (all on loopback, Linux): the simulator (`--role sim` of this script: the real `Simulator` with
`image_step_seconds` 1 s and `step_spread` `--spread`, so a default image task ends after 4 s times its own
factor exp(N(0, spread)), a realistic spread of generation times; bench-only routes under `/__bench/`), the
server through its CLI (`python -m jimeng_server --config F`, default watcher settings plus `--set
SECTION.KEY=VALUE` overrides), and this process, the load client.

First `--warmup` tasks (4 at a time) teach the server the model's completion times (what a server that has
run a while knows; the file it keeps them in lives in a temp dir). Then, per N in `--n`: N concurrent sync
text-to-image requests on ONE account (N = 1: `--singles` requests one after another). For each answer:
overhead = the answer's arrival (time.time()) minus the simulator's own finish time of its record (same
clock); polls_per_task = get_history_by_ids calls the simulator answered during the round / tasks. Prints
per-N figures and, as its LAST line, one JSON object with `overhead_p50_ms_<N>`, `overhead_p99_ms_<N>`,
`polls_per_task_<N>` and `targets_met` (overhead p50 <= 300 ms at N=20, <= 600 ms at N=300; polls per task
<= 1.5 at N=1, <= 0.25 at N=300; each judged when its N ran). Exit status 1 when a judged target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from children import free_port, serve_on_port_file, start_role, stop, upstream_toml, wait_ready

from jimeng_server.simulator import SimSettings, Simulator
from jimeng_server.upstream.regions import Region

TOKEN = "latencybench0aaaabbbbccccddddeeee"
BENCH = "/__bench/"
HISTORY = "/mweb/v1/get_history_by_ids"
HISTORY_ID = re.compile(r"/cdn/img/(\d+)/")
TARGETS: dict[str, Callable[[float], bool]] = {
    "overhead_p50_ms_20": lambda v: v <= 300,
    "overhead_p50_ms_300": lambda v: v <= 600,
    "polls_per_task_1": lambda v: v <= 1.5,
    "polls_per_task_300": lambda v: v <= 0.25,
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ------------------------------------------------------------------------------------------ the simulator role


class Probe:
    """Bench routes of the simulator child: `GET /__bench/polls` (get_history_by_ids calls answered so far) and
    `POST /__bench/finish` with `{"ids": [...]}` (each record's own finish time on the sim clock). The journal is
    cleared after each request (memory)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.polls = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == BENCH + "polls":
            return web.json_response({"polls": self.polls})
        if request.path == BENCH + "finish":
            ids = (await request.json())["ids"]
            records = self.sim.records
            return web.json_response({i: self.sim.finish_time(records[i]) if i in records else None for i in ids})
        response = await handler(request)
        self.polls += sum(1 for e in self.sim.journal if e.path == HISTORY and e.ret == "0")
        self.sim.journal.clear()
        return response


async def run_simulator(port_file: Path, spread: float) -> None:
    sim = Simulator(settings=SimSettings(image_step_seconds=1.0, step_spread=spread), seed=27)
    sim.add_account(TOKEN, region=Region.CN, vip=10**9)
    app = sim.create_app()
    app.middlewares.append(Probe(sim).middleware)
    await serve_on_port_file(app, port_file)


# ------------------------------------------------------------------------------------------ the load client


def server_config(work: Path, sim_root: str, overrides: list[str]) -> str:
    sections: dict[str, dict[str, str]] = {
        "server": {"log_level": '"WARNING"'},
        "store": {"path": json.dumps(str(work / "tasks.db"))},
    }
    for setting in overrides:
        key, _, value = setting.partition("=")
        section, _, name = key.strip().rpartition(".")
        sections.setdefault(section, {})[name] = value.strip()
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {v}" for k, v in values.items()]
    return "\n".join([*lines, *upstream_toml(sim_root)]) + "\n"


class Client:
    def __init__(self, http: aiohttp.ClientSession, server: str, sim_root: str) -> None:
        self.http = http
        self.server = server
        self.sim_root = sim_root

    async def one(self) -> tuple[str, float]:
        """One sync text-to-image request: (history id, arrival time of the answer)."""
        async with self.http.post(
            f"{self.server}/v1/images/generations",
            json={"prompt": "a lighthouse at dusk", "size": "1024x1024"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as resp:
            body = await resp.json()
            arrived = time.time()
        if resp.status != 200:
            raise SystemExit(f"the server answered {resp.status}: {body}")
        match = HISTORY_ID.search(body["data"][0]["url"])
        if match is None:
            raise SystemExit(f"no history id in {body['data'][0]['url']}")
        return match.group(1), arrived

    async def polls(self) -> int:
        async with self.http.get(f"{self.sim_root}{BENCH}polls") as resp:
            return int((await resp.json())["polls"])

    async def finishes(self, ids: list[str]) -> dict[str, float]:
        async with self.http.post(f"{self.sim_root}{BENCH}finish", json={"ids": ids}) as resp:
            return {k: float(v) for k, v in (await resp.json()).items()}

    async def round(self, n: int, singles: int) -> dict[str, float]:
        """N concurrent requests (N = 1: `singles` in a row); overhead figures and polls per task."""
        before = await self.polls()
        if n == 1:
            answers = [await self.one() for _ in range(singles)]
        else:
            answers = list(await asyncio.gather(*(self.one() for _ in range(n))))
        polls = await self.polls() - before
        ends = await self.finishes([hid for hid, _ in answers])
        overheads = sorted((arrived - ends[hid]) * 1000 for hid, arrived in answers)
        return {
            "tasks": len(answers),
            "overhead_p50_ms": statistics.median(overheads),
            "overhead_p99_ms": overheads[min(len(overheads) - 1, int(0.99 * len(overheads)))],
            "polls_per_task": polls / len(answers),
        }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sim_proc, sim_port = start_role(__file__, "sim", "--spread", str(args.spread))
    sim_root = f"http://127.0.0.1:{sim_port}"
    figures: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="jimeng-latency-") as tmp:
            work = Path(tmp)
            config = work / "config.toml"
            config.write_text(server_config(work, sim_root, args.set), encoding="utf-8")
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("JIMENG_")}
            log = (work / "server.log").open("wb")
            server = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "jimeng_server", "--config", str(config)),
                *("--host", "127.0.0.1", "--port", str(port)),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            connector = aiohttp.TCPConnector(limit=0)
            timeout = aiohttp.ClientTimeout(total=600)
            try:
                async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                    url = f"http://127.0.0.1:{port}"
                    await wait_ready(http, url, server)
                    client = Client(http, url, sim_root)
                    for start in range(0, args.warmup, 4):
                        await asyncio.gather(*(client.one() for _ in range(min(4, args.warmup - start))))
                    print(f"warm-up: {args.warmup} tasks", flush=True)
                    for n in args.n:
                        got = await client.round(n, args.singles)
                        print(
                            f"N={n}: {got['tasks']} tasks, overhead p50 {got['overhead_p50_ms']:.0f} ms, "
                            f"p99 {got['overhead_p99_ms']:.0f} ms, {got['polls_per_task']:.3f} polls per task",
                            flush=True,
                        )
                        figures[f"overhead_p50_ms_{n}"] = round(got["overhead_p50_ms"], 1)
                        figures[f"overhead_p99_ms_{n}"] = round(got["overhead_p99_ms"], 1)
                        figures[f"polls_per_task_{n}"] = round(got["polls_per_task"], 3)
            finally:
                if server.returncode is None:
                    server.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(server.wait(), 30)
                log.close()
    finally:
        stop(sim_proc)
    figures["targets_met"] = {k: ok(figures[k]) for k, ok in TARGETS.items() if k in figures}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["sim"])
    parser.add_argument("--port-file", type=Path)
    parser.add_argument("--n", type=lambda s: [int(x) for x in s.split(",")], default=[1, 20, 300])
    parser.add_argument("--singles", type=int, default=16, help="requests in a row for N=1")
    parser.add_argument("--warmup", type=int, default=32)
    parser.add_argument("--spread", type=float, default=0.3, help="sigma of the per-task generation time factor")
    parser.add_argument("--set", action="append", default=[], help="SECTION.KEY=VALUE (TOML) in the server config")
    args = parser.parse_args()
    if args.role == "sim":
        asyncio.run(run_simulator(args.port_file, args.spread))
        return
    figures = asyncio.run(run(args))
    print(json.dumps(figures))
    raise SystemExit(0 if all(figures["targets_met"].values()) else 1)


if __name__ == "__main__":
    main()
