"""Webhook latency: time from marking tasks done to their webhooks arriving at a loopback receiver.

Writes N processing tasks with a callback_url, then marks them done one after another through the real
final path (`TaskSettler.settle()`: final state and outbox row in one transaction, then `WebhookSender.wake()`)
while a `WebhookSender` (real clock, signed, default config) delivers them to an aiohttp
receiver on 127.0.0.1. Reports p50/p90/p99/max of finish-committed -> request-received, and throughput.
Sender, receiver and finishing share one event loop (one process), so the figures include that contention.

    .venv/bin/python bench/webhook_latency.py [--tasks 500] [--concurrency 16] [--burst]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
from pathlib import Path

from webhook_bench import Arrivals, arrival_receiver, done_record, percentile, processing_task

from jimeng_server.clock import SystemClock
from jimeng_server.config import WebhookConfig
from jimeng_server.net.policy import FetchPolicy
from jimeng_server.services.settlement import TaskSettler
from jimeng_server.store.sqlite import SqliteStore
from jimeng_server.tasks.records import Outcome, Reason, TaskKind, TaskStatus
from jimeng_server.webhooks.sender import WebhookSender
from jimeng_server.webhooks.signatures import parse_secret


async def run(tasks: int, concurrency: int, db_dir: Path, *, burst: bool) -> None:
    async with arrival_receiver(tasks) as arrivals:
        await _run(arrivals, tasks, concurrency, db_dir, burst=burst)


async def _run(arrivals: Arrivals, tasks: int, concurrency: int, db_dir: Path, *, burst: bool) -> None:
    arrived, all_arrived, url = arrivals.at, arrivals.all_arrived, arrivals.url

    clock = SystemClock()
    secret = parse_secret("whsec_" + base64.b64encode(os.urandom(32)).decode())
    async with await SqliteStore.open(db_dir / "bench.db", clock=clock) as store:
        now = clock.time()
        for i in range(tasks):
            await store.insert(processing_task(f"bench-{i:05d}", url, now, submit_id=f"s{i}"))
        config = WebhookConfig(max_concurrency=concurrency)
        sender = WebhookSender(store, config, clock, policy=FetchPolicy(allow_private_networks=True), secret=secret)
        settler = TaskSettler(store, clock, sender=sender)
        await sender.start()
        marked: dict[str, float] = {}
        record = done_record()
        started = time.perf_counter()

        async def mark(i: int) -> None:
            hid = f"bench-{i:05d}"
            await settler.settle([Outcome(hid, TaskKind.IMAGE, TaskStatus.DONE, Reason.DONE, record)])
            marked[hid] = time.perf_counter()

        if burst:  # every finish queued at once (they still commit one by one on the store's connection)
            await asyncio.gather(*(mark(i) for i in range(tasks)))
        else:
            for i in range(tasks):
                await mark(i)
        finished_marking = time.perf_counter()
        await asyncio.wait_for(all_arrived.wait(), timeout=120)
        done = time.perf_counter()
        await sender.stop()

    latencies = [(arrived[h] - marked[h]) * 1000 for h in marked]
    mode = "burst (all finishes queued at once)" if burst else "sequential finishes"
    print(f"tasks: {tasks}, {mode}, sender max_concurrency: {concurrency}, signed: yes, receiver: {url}")
    print(
        f"marking {tasks} tasks done (finish + outbox row, one transaction each): "
        f"{(finished_marking - started) * 1000:.0f} ms"
    )
    print(
        f"all webhooks received {(done - started) * 1000:.0f} ms after the first mark "
        f"({tasks / (done - started):.0f} deliveries/s)"
    )
    print(
        f"latency finish->arrival: p50 {statistics.median(latencies):.1f} ms, p90 {percentile(latencies, 90):.1f} ms, "
        f"p99 {percentile(latencies, 99):.1f} ms, max {max(latencies):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--burst", action="store_true", help="queue every finish at once instead of one by one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args.tasks, args.concurrency, Path(tmp), burst=args.burst))


if __name__ == "__main__":
    main()
