"""How soon a sync answer follows the upstream's own finish, and how many polls it costs (issue 27).

    .venv/bin/python bench/latency.py [--n 1,20,300] [--singles 16] [--warmup 32] [--cold 8] [--spread 0.3]
                                      [--runs 3] [--modes forecast,learned] [--set watcher.adaptive=false ...]

Processes (all on loopback, Linux): the simulator (`--role sim` of this script: the real `Simulator` with
`image_step_seconds` 1 s and `step_spread` `--spread`, so a default image task ends after 4 s times its own
factor exp(N(0, spread)), a realistic spread of generation times; bench-only routes under `/__bench/`), the
server through its CLI (`python -m jimeng_server --config F`, default watcher settings plus `--set
SECTION.KEY=VALUE` overrides), and this process, the load client.

Each run starts a fresh server (nothing learnt). First the cold round: `--cold` tasks, 4 at a time, the first
tasks of the model after start (fewer than `learn_min_samples` have ended when each is polled, so only the
upstream's forecast or the fixed schedule can time them): figures `*_cold`. Then `--warmup` tasks (4 at a time)
teach the server the model's completion times (what a server that has run a while knows; the file it keeps
them in lives in a temp dir). Then, per N in `--n`: N concurrent sync text-to-image requests on ONE account (N =
1: `--singles` requests one after another). For each answer: overhead = the answer's arrival (time.time())
minus the simulator's own finish time of its record (same clock); polls_per_task = get_history_by_ids calls the
simulator answered during the round / tasks.

`--modes`: `forecast` (the server's defaults: polls timed by the upstream's forecast, `[watcher] use_forecast`)
and `learned` (`use_forecast = false`: learned completion times only, the schedule before the forecast was
used); each mode runs `--runs` times (a fresh simulator and server each), alternating, with the load average
noted (the machine is shared). Prints each run's figures, then min/median/max per figure and mode, and as its
LAST line one JSON object: per figure the median over the runs of the first mode (`overhead_p50_ms_<N>`,
`overhead_p99_ms_<N>`, `polls_per_task_<N>`, and `_cold`), `runs` (per mode and figure: [min, median, max]),
`load` (1-minute load average before each run) and `targets_met` (overhead p50 <= 300 ms at N=20, <= 600 ms at
N=300; polls per task <= 1.5 at N=1, <= 0.25 at N=300; judged on the first mode's medians when its N ran).
Exit status 1 when a judged target is missed.
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
MODES: dict[str, list[str]] = {"forecast": [], "learned": ["watcher.use_forecast=false"]}
"""`--modes`: the server settings each mode adds to `--set`."""
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

    async def round(self, n: int, singles: int, *, batch: int = 0) -> dict[str, float]:
        """N concurrent requests (N = 1: `singles` in a row; `batch` > 0: N requests, `batch` at a time);
        overhead figures and polls per task."""
        before = await self.polls()
        if batch:
            answers = []
            for start in range(0, n, batch):
                answers += await asyncio.gather(*(self.one() for _ in range(min(batch, n - start))))
        elif n == 1:
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


def note(figures: dict[str, Any], suffix: str, got: dict[str, float]) -> None:
    """Print one round's figures and keep them under `<figure>_<suffix>`."""
    print(
        f"{suffix}: {got['tasks']} tasks, overhead p50 {got['overhead_p50_ms']:.0f} ms, "
        f"p99 {got['overhead_p99_ms']:.0f} ms, {got['polls_per_task']:.3f} polls per task",
        flush=True,
    )
    figures[f"overhead_p50_ms_{suffix}"] = round(got["overhead_p50_ms"], 1)
    figures[f"overhead_p99_ms_{suffix}"] = round(got["overhead_p99_ms"], 1)
    figures[f"polls_per_task_{suffix}"] = round(got["polls_per_task"], 3)


async def run(args: argparse.Namespace, settings: list[str]) -> dict[str, Any]:
    """One run: a fresh simulator and server with `settings`; the cold round, warm-up, then each N."""
    sim_proc, sim_port = start_role(__file__, "sim", "--spread", str(args.spread))
    sim_root = f"http://127.0.0.1:{sim_port}"
    figures: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="jimeng-latency-") as tmp:
            work = Path(tmp)
            config = work / "config.toml"
            config.write_text(server_config(work, sim_root, settings), encoding="utf-8")
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
                    if args.cold:
                        note(figures, "cold", await client.round(args.cold, 1, batch=4))
                    for start in range(0, args.warmup, 4):
                        await asyncio.gather(*(client.one() for _ in range(min(4, args.warmup - start))))
                    print(f"warm-up: {args.warmup} tasks", flush=True)
                    for n in args.n:
                        note(figures, str(n), await client.round(n, args.singles))
            finally:
                if server.returncode is None:
                    server.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(server.wait(), 30)
                log.close()
    finally:
        stop(sim_proc)
    return figures


def spread_of(values: list[float]) -> list[float]:
    """[min, median, max]."""
    return [min(values), round(statistics.median(values), 3), max(values)]


def summary(results: dict[str, list[dict[str, Any]]], loads: list[float]) -> dict[str, Any]:
    """The closing JSON (see the module doc) from each mode's runs, and the figures printed beside it."""
    runs = {mode: {key: spread_of([r[key] for r in got]) for key in got[0]} for mode, got in results.items() if got}
    first = next(iter(runs))
    for mode, figures in runs.items():
        for key, (low, mid, high) in figures.items():
            print(f"{mode:9} {key:22} min {low:9.3f}  median {mid:9.3f}  max {high:9.3f}")
    out: dict[str, Any] = {key: mid for key, (_, mid, _) in runs[first].items()}
    out["mode"] = first
    out["runs"] = runs
    out["load"] = loads
    out["targets_met"] = {k: ok(out[k]) for k, ok in TARGETS.items() if k in out}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["sim"])
    parser.add_argument("--port-file", type=Path)
    parser.add_argument("--n", type=lambda s: [int(x) for x in s.split(",")], default=[1, 20, 300])
    parser.add_argument("--singles", type=int, default=16, help="requests in a row for N=1")
    parser.add_argument("--warmup", type=int, default=32)
    parser.add_argument("--cold", type=int, default=8, help="first tasks after start, 4 at a time (0: none)")
    parser.add_argument("--runs", type=int, default=3, help="runs per mode")
    parser.add_argument(
        "--modes",
        type=lambda s: [m for m in s.split(",") if m],
        default=list(MODES),
        help=f"comma-separated, from {', '.join(MODES)} (the first one's medians judge the targets)",
    )
    parser.add_argument("--spread", type=float, default=0.3, help="sigma of the per-task generation time factor")
    parser.add_argument("--set", action="append", default=[], help="SECTION.KEY=VALUE (TOML) in the server config")
    args = parser.parse_args()
    if args.role == "sim":
        asyncio.run(run_simulator(args.port_file, args.spread))
        return
    unknown = [m for m in args.modes if m not in MODES]
    if unknown or not args.modes or args.runs < 1:
        parser.error(f"--modes takes {', '.join(MODES)}; --runs at least 1")
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.modes}
    loads: list[float] = []
    for index in range(args.runs):
        for mode in args.modes:
            loads.append(round(os.getloadavg()[0], 2))
            print(f"run {index + 1}/{args.runs}, {mode} (load {loads[-1]})", flush=True)
            results[mode].append(asyncio.run(run(args, [*MODES[mode], *args.set])))
    figures = summary(results, loads)
    print(json.dumps(figures))
    raise SystemExit(0 if all(figures["targets_met"].values()) else 1)


if __name__ == "__main__":
    main()
