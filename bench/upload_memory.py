"""Peak memory of the server while it proxies a 100 MiB input image to the (simulated) upstream, and while it
answers a sync `b64_json` request for 4 result images of 5 MiB.

    .venv/bin/python bench/upload_memory.py [--mb 100] [--image-mb 5] [--only upload,url,b64]

Starts the simulator and the server as two separate processes on loopback, plus a file server in this process,
then runs three requests, each against a fresh server process:
1. `upload`: a composition, multipart upload of one 100 MiB image file;
2. `url`: a composition, JSON request whose image is a 100 MiB URL download;
3. `b64`: a text-to-image request with `response_format=b64_json`; the simulator serves every result image
   padded to 5 MiB (`SimSettings.item_image_bytes`), so the answer carries 4 x 5 MiB as base64.
For each it prints the growth of the server's peak RSS (VmHWM, reset just before the request) over its RSS
after a warm-up request. Target: under 30 MB each (no file may sit whole in memory).
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from children import serve_on_port_file, start_role, status_kb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "benchsession0000aaaabbbbccccdddd"
MIB = 1024 * 1024


# ------------------------------------------------------------------------------------------ child roles


async def run_simulator(port_file: Path, item_image_bytes: int) -> None:
    from jimeng_server.simulator import SimSettings, Simulator
    from jimeng_server.upstream.regions import Region

    sim = Simulator(settings=SimSettings(image_step_seconds=0.2, item_image_bytes=item_image_bytes))
    sim.add_account(TOKEN, region=Region.CN, vip=1_000_000)
    await serve_on_port_file(sim.create_app(), port_file)


async def run_server(port_file: Path, sim_root: str, limit_mb: int, store: str) -> None:
    from jimeng_server.app import create_app
    from jimeng_server.cli import with_simulator_hosts
    from jimeng_server.config import Config, KindSchedule, SecurityConfig, ServerConfig, StoreConfig, WatcherConfig
    from jimeng_server.simulator import simulator_hosts

    config = Config(
        server=ServerConfig(max_body_mb=limit_mb, log_level="WARNING"),
        security=SecurityConfig(allow_private_networks=True, max_download_mb=limit_mb),
        watcher=WatcherConfig(tick=0.2, image=KindSchedule(first_poll=0.3, interval=0.3, deadline=120.0)),
        store=StoreConfig(path=store),
    )
    config = with_simulator_hosts(config, simulator_hosts(sim_root))
    await serve_on_port_file(create_app(config), port_file)


# ------------------------------------------------------------------------------------------ measuring


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def make_image(path: Path, size: int) -> None:
    from jimeng_server.simulator.media import png

    head = png(64, 48, (10, 120, 200))
    with path.open("wb") as f:
        f.write(head)
        left = size - len(head)
        block = b"\0" * MIB
        while left > 0:
            f.write(block[: min(left, MIB)])
            left -= MIB


async def post(session: aiohttp.ClientSession, base: str, path: str, **kw: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with session.post(f"{base}{path}", headers=headers, **kw) as resp:
        body: dict[str, Any] = await resp.json(content_type=None)
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {body}")
        return body


Send = Callable[[aiohttp.ClientSession, str], Awaitable[str]]
"""One measured request: sends it, checks the answer, returns a few words about it."""


async def sample_rss(pid: int, stop: asyncio.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], status_kb(pid, "VmRSS"))
        await asyncio.sleep(0.01)


async def scenario(name: str, sim_root: str, limit_mb: int, store_dir: Path, send: Send) -> float:
    server, port = start_role(
        __file__,
        "server",
        "--sim-root",
        sim_root,
        "--limit-mb",
        str(limit_mb),
        "--store",
        str(store_dir / f"{name}.db"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            small = aiohttp.FormData()
            small.add_field("prompt", "warm-up")
            from jimeng_server.simulator.media import png

            small.add_field("images", png(8, 8, (1, 2, 3)), filename="w.png", content_type="image/png")
            await post(session, base, "/v1/images/compositions", data=small)  # warm-up: imports, sessions, store
            await asyncio.sleep(0.5)
            baseline = status_kb(server.pid, "VmRSS")
            exact = reset_peak(server.pid)
            stop, peak = asyncio.Event(), [baseline]
            sampler = asyncio.create_task(sample_rss(server.pid, stop, peak))
            started = time.monotonic()
            what = await send(session, base)
            elapsed = time.monotonic() - started
            stop.set()
            await sampler
            hwm = status_kb(server.pid, "VmHWM") if exact else peak[0]
            growth = (max(hwm, peak[0]) - baseline) / 1024
            print(
                f"{name:<28} baseline RSS {baseline / 1024:7.1f} MiB  peak {max(hwm, peak[0]) / 1024:7.1f} MiB  "
                f"growth {growth:6.1f} MiB  ({elapsed:.1f} s, {what}, "
                f"{'VmHWM' if exact else 'sampled'})",
                flush=True,
            )
            return growth
    finally:
        server.terminate()
        server.wait(10)


async def bench(size_mb: int, image_mb: int, only: set[str]) -> int:
    size = size_mb * MIB
    limit_mb = max(size_mb, image_mb) + 2  # room for the multipart framing around the file
    with tempfile.TemporaryDirectory(prefix="jimeng-bench-") as tmp:
        work = Path(tmp)
        image = work / "big.png"
        if only & {"upload", "url"}:
            make_image(image, size)
        sim, sim_port = start_role(__file__, "sim", "--item-image-bytes", str(image_mb * MIB))
        sim_root = f"http://127.0.0.1:{sim_port}"
        files = web.Application()

        async def serve_file(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(image)

        files.router.add_get("/big.png", serve_file)
        runner = web.AppRunner(files, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        file_url = f"http://127.0.0.1:{runner.addresses[0][1]}/big.png"
        try:
            print(
                f"input image: {size_mb} MiB ({size} bytes); result images: {image_mb} MiB; "
                f"server limits max_body_mb = max_download_mb = {limit_mb}"
            )

            async def multipart(session: aiohttp.ClientSession, base: str) -> str:
                form = aiohttp.FormData()
                form.add_field("prompt", "bench multipart")
                form.add_field("images", image.open("rb"), filename="big.png", content_type="image/png")
                body = await post(session, base, "/v1/images/compositions", data=form)
                return f"{body['input_images']} image"

            async def url(session: aiohttp.ClientSession, base: str) -> str:
                fields = {"prompt": "bench url", "images": [file_url]}
                body = await post(session, base, "/v1/images/compositions", json=fields)
                return f"{body['input_images']} image"

            async def b64(session: aiohttp.ClientSession, base: str) -> str:
                body = await post(
                    session, base, "/v1/images/generations", json={"prompt": "bench b64", "response_format": "b64_json"}
                )
                sizes = [len(base64.b64decode(item["b64_json"], validate=True)) for item in body["data"]]
                if sizes != [image_mb * MIB] * len(sizes):
                    raise RuntimeError(f"unexpected image sizes {sizes}")
                return f"{len(sizes)} x {image_mb} MiB as b64_json"

            scenarios: dict[str, tuple[str, Send]] = {
                "upload": ("multipart upload", multipart),
                "url": ("URL download", url),
                "b64": ("b64_json answer", b64),
            }
            results = [
                await scenario(name, sim_root, limit_mb, work, send)
                for key, (name, send) in scenarios.items()
                if key in only
            ]
        finally:
            await runner.cleanup()
            sim.terminate()
            sim.wait(10)
    ok = all(r < 30 for r in results)
    print("target (< 30 MiB growth each):", "met" if ok else "NOT met")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="size of the input image in MiB")
    parser.add_argument("--image-mb", type=int, default=5, help="size of each result image (b64 scenario) in MiB")
    parser.add_argument("--only", default="upload,url,b64", help="comma-separated scenarios: upload, url, b64")
    parser.add_argument("--item-image-bytes", type=int, default=0)
    parser.add_argument("--role", choices=("bench", "sim", "server"), default="bench")
    parser.add_argument("--port-file", type=Path)
    parser.add_argument("--sim-root")
    parser.add_argument("--limit-mb", type=int, default=102)
    parser.add_argument("--store")
    args = parser.parse_args()
    if args.role == "sim":
        asyncio.run(run_simulator(args.port_file, args.item_image_bytes))
    elif args.role == "server":
        asyncio.run(run_server(args.port_file, args.sim_root, args.limit_mb, args.store))
    else:
        only = {name.strip() for name in args.only.split(",") if name.strip()}
        if not only or only - {"upload", "url", "b64"}:
            parser.error("--only takes upload, url and/or b64")
        raise SystemExit(asyncio.run(bench(args.mb, args.image_mb, only)))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
