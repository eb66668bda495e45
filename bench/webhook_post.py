"""The webhook POST client's own cost: CPU per send of `SafeFetcher.post` (the path every webhook takes) against an
aiohttp receiver in another process on loopback, so the figure is the sender side's alone.

Sends `--posts` POSTs of a signed-webhook-sized body, `--concurrency` at once, and prints the client's CPU time
(process_time, user + system) per send in µs, the wall time, and how many connections the receiver saw (keep-alive
reuse). Repeats `--runs` times; the last line is JSON with min/median/max. CPU time is far less noisy than wall
time on a shared machine, but still compare alternately (e.g. against `git archive` of the previous commit).

    PYTHONPATH=. .venv/bin/python bench/webhook_post.py [--posts 3000] [--concurrency 16] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
from multiprocessing.connection import Connection

from aiohttp import web

from jimeng_server.net.fetcher import SafeFetcher
from jimeng_server.net.policy import FetchPolicy

BODY = json.dumps({"type": "task.succeeded", "data": {"history_id": "1" * 19, "urls": ["https://cdn.example/a"] * 4}})


def receiver(pipe: Connection) -> None:
    """A webhook receiver answering 200 with a small JSON body; sends its port, then the peers it saw on request."""
    peers: set[object] = set()

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        if request.transport is not None:
            peers.add(request.transport.get_extra_info("peername"))
        return web.json_response({"ok": True})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        pipe.send(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        while True:
            ask = await loop.run_in_executor(None, pipe.recv)
            if ask == "stop":
                break
            pipe.send(len(peers))
            peers.clear()
        await runner.cleanup()

    asyncio.run(main())


async def one_run(url: str, posts: int, concurrency: int) -> tuple[float, float]:
    """(CPU µs per send, wall seconds) of `posts` sends through one fresh fetcher."""
    fetcher = SafeFetcher(FetchPolicy(allow_private_networks=True))
    headers = {"Content-Type": "application/json", "webhook-id": "evt", "webhook-timestamp": "1700000000"}
    body = BODY.encode()
    left = posts

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            result = await fetcher.post(url, body=body, headers=headers, timeout=10)
            assert result.status == 200, result

    try:
        await fetcher.post(url, body=body, headers=headers, timeout=10)  # warm-up: imports, first connection
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return (time.process_time() - cpu) / posts * 1e6, time.perf_counter() - wall
    finally:
        await fetcher.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    child = multiprocessing.get_context("spawn").Process(target=receiver, args=(theirs,), daemon=True)
    child.start()
    port = ours.recv()
    url = f"http://127.0.0.1:{port}/hook"
    figures: list[float] = []
    try:
        for n in range(args.runs):
            us, wall = asyncio.run(one_run(url, args.posts, args.concurrency))
            ours.send("peers")
            connections = ours.recv()
            figures.append(us)
            print(f"run {n + 1}: {us:.1f} µs CPU per send, {args.posts / wall:.0f} sends/s, {connections} connections")
    finally:
        ours.send("stop")
        child.join(10)
    print(
        json.dumps(
            {
                "posts": args.posts,
                "concurrency": args.concurrency,
                "cpu_us_per_send_min": round(min(figures), 1),
                "cpu_us_per_send_median": round(statistics.median(figures), 1),
                "cpu_us_per_send_max": round(max(figures), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
