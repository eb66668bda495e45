"""Keeping results on disk (`[results] keep = "local"`): 100 results of 5 MiB kept by the server, its RSS growth,
and the keep throughput next to a plain `curl` of the same files.

    .venv/bin/python bench/keep.py [--runs 3] [--tasks 25] [--image-mb 5] [--concurrency 4]

Each run starts the simulator (every result image padded to `--image-mb` MiB) and the server (through its CLI,
`keep = "local"` into a temporary directory, `concurrency` downloads at once) as separate processes on loopback,
keeps one warm-up task, then submits `--tasks` async image tasks of 4 images at once and waits until every
result is kept (`/metrics`: `jimeng_results_kept_total`). It reports:
- the growth of the server's peak RSS (VmHWM, reset after the warm-up) over its RSS then: target < 30 MB;
- keep throughput: bytes kept / time from the first kept result to the last (the tasks settle together);
- `curl` throughput: the same result URLs fetched from the simulator's CDN by one `curl --parallel` with the
  same concurrency, to /dev/null.
Prints one line per run, min/median/max, and as the last line a JSON object. Linux only (/proc), needs curl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from children import free_port, serve_on_port_file, start_role, status_kb, stop, upstream_toml, wait_ready

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "benchkeep0000aaaabbbbccccddddeee"
MIB = 1024 * 1024


async def run_simulator(port_file: Path, item_image_bytes: int) -> None:
    from jimeng_server.simulator import SimSettings, Simulator
    from jimeng_server.upstream.regions import Region

    sim = Simulator(settings=SimSettings(image_step_seconds=0.2, item_image_bytes=item_image_bytes))
    sim.add_account(TOKEN, region=Region.CN, vip=10_000_000)
    await serve_on_port_file(sim.create_app(), port_file)


def server_config(directory: Path, sim_root: str, port: int, concurrency: int) -> Path:
    lines = [
        "[server]",
        'log_level = "WARNING"',
        "[store]",
        f'path = "{directory / "tasks.db"}"',
        "[security]",
        "allow_private_networks = true",
        "[watcher]",
        "tick = 0.2",
        'watch = "all"',
        "[watcher.image]",
        "first_poll = 0.3",
        "interval = 0.3",
        "[results]",
        'keep = "local"',
        f'path = "{directory / "kept"}"',
        f'public_base_url = "http://127.0.0.1:{port}"',
        'link_secret = "bench"',
        f"concurrency = {concurrency}",
        *upstream_toml(sim_root),
    ]
    path = directory / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def kept_total(http: aiohttp.ClientSession, base: str) -> float:
    async with http.get(f"{base}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("jimeng_results_kept_total "):
                return float(line.split()[1])
    return 0.0


async def submit(http: aiohttp.ClientSession, base: str, prompt: str) -> str:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with http.post(f"{base}/v1/async/images/generations", json={"prompt": prompt}, headers=auth) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return str(body["history_id"])


async def upstream_urls(http: aiohttp.ClientSession, base: str, ids: list[str]) -> list[str]:
    from jimeng_server.upstream.history import parse_record

    urls: list[str] = []
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for hid in ids:
        async with http.get(f"{base}/v1/async/tasks/{hid}", headers=auth) as resp:
            urls += parse_record((await resp.json())["raw_data"]).image_urls
    return urls


async def wait_kept(http: aiohttp.ClientSession, base: str, target: float, within: float) -> tuple[float, float]:
    """Poll /metrics every 20 ms until `target` results are kept: (time of the first kept, of the last)."""
    first = last = 0.0
    start = await kept_total(http, base)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        now = await kept_total(http, base)
        if now > start and not first:
            first = time.monotonic()
        if now >= target:
            last = time.monotonic()
            return first or last, last
        await asyncio.sleep(0.02)
    raise SystemExit(f"results were not kept within {within:g} s")


def curl_seconds(urls: list[str], concurrency: int) -> float:
    args = ["curl", "-s", "--parallel", "--parallel-max", str(concurrency)]
    for url in urls:
        args += ["-o", "/dev/null", url]
    started = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


async def one_run(args: argparse.Namespace) -> dict[str, float]:
    sim, sim_port = start_role(__file__, "sim", "--image-bytes", str(args.image_mb * MIB))
    directory = Path(tempfile.mkdtemp(prefix="bench-keep-"))
    port = free_port()
    config = server_config(directory, f"http://127.0.0.1:{sim_port}", port, args.concurrency)
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jimeng_server", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, base, server)
            await submit(http, base, "warm-up")
            await wait_kept(http, base, 4, 120)
            baseline = status_kb(server.pid, "VmRSS")
            await asyncio.to_thread(Path(f"/proc/{server.pid}/clear_refs").write_text, "5")  # VmHWM := RSS now
            ids = await asyncio.gather(*(submit(http, base, f"bench {n}") for n in range(args.tasks)))
            results = 4 * args.tasks
            first, last = await wait_kept(http, base, 4 + results, 600)
            hwm = status_kb(server.pid, "VmHWM")
            urls = await upstream_urls(http, base, list(ids))
        megabytes = results * args.image_mb * MIB / 1e6
        curl = curl_seconds(urls, args.concurrency)
        row = {
            "rss_growth_mb": (hwm - baseline) / 1024,
            "keep_mb_s": megabytes / max(last - first, 1e-6),
            "curl_mb_s": len(urls) * args.image_mb * MIB / 1e6 / curl,
            "results": float(results),
        }
        kept_files = len(list((directory / "kept").glob("*/*.png")))
        assert kept_files == results + 4, kept_files  # every result (and the warm-up's 4) is one file
        return row
    finally:
        server.terminate()
        await server.wait()
        stop(sim)
        shutil.rmtree(directory, ignore_errors=True)


def summary(rows: list[dict[str, float]], key: str) -> dict[str, float]:
    values = [r[key] for r in rows]
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for n in range(args.runs):
        row = await one_run(args)
        rows.append(row)
        print(
            f"run {n + 1}: {int(row['results'])} results of {args.image_mb} MiB kept; server RSS growth "
            f"{row['rss_growth_mb']:.1f} MB; keep {row['keep_mb_s']:.0f} MB/s; curl {row['curl_mb_s']:.0f} MB/s",
            flush=True,
        )
    out = {key: summary(rows, key) for key in ("rss_growth_mb", "keep_mb_s", "curl_mb_s")}
    for key, stats in out.items():
        print(f"{key}: min {stats['min']:.1f} / median {stats['median']:.1f} / max {stats['max']:.1f}")
    return {"bench": "keep", "runs": args.runs, "results_per_run": 4 * args.tasks, "image_mb": args.image_mb, **out}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["sim"])
    parser.add_argument("--port-file", type=Path)
    parser.add_argument("--image-bytes", type=int, default=5 * MIB)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=25)
    parser.add_argument("--image-mb", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    parsed = parser.parse_args()
    if parsed.role == "sim":
        asyncio.run(run_simulator(parsed.port_file, parsed.image_bytes))
    else:
        print(json.dumps(asyncio.run(main(parsed))))
