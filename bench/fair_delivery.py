"""Fair webhook delivery: a healthy receiver's latency while 1,000 events queue for a black hole.

One process, real clock, SQLite store, the real `WebhookSender` (default `max_concurrency` 64) and two loopback
receivers: a healthy one (answers 200 at once) and a black hole (accepts the connection, never answers). Each
scenario finishes `--healthy` tasks for the healthy receiver at a steady rate (through the production
`TaskSettler`: final state + outbox row in one transaction, then `wake()`) and reports the healthy webhooks'
finish -> arrival latency:

- `baseline`: no black hole;
- `black_hole`: 1,000 events for the black hole queued first (due before every healthy one), the gate on
  (`[webhooks] max_per_host`, circuit breaker at their defaults);
- `black_hole_gate_off` (with `--compare`): the same with the gate neutralised (`max_per_host` =
  `max_concurrency`, breaker never opens), i.e. the sender as it was.

The sender runs `--settle-in` seconds (1 s) before the first healthy task (it has taken in the black hole's
backlog by then: the figures are the steady state while the queue waits). The send timeout is `--timeout`
(5 s; production default 15 s) so a run takes seconds. The last line is JSON.

    PYTHONPATH=. /work/venv/bin/python bench/fair_delivery.py [--healthy 200] [--rate 25] [--compare]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from webhook_bench import Arrivals, arrival_receiver, done_record, percentile, processing_task

from jimeng_server.clock import SystemClock
from jimeng_server.config import WebhookConfig
from jimeng_server.net.policy import FetchPolicy
from jimeng_server.services.settlement import TaskSettler
from jimeng_server.store.sqlite import SqliteStore
from jimeng_server.tasks.records import Outcome, Reason, TaskKind, TaskStatus
from jimeng_server.webhooks.sender import WebhookSender

BLACK_HOLE_EVENTS = 1000


async def black_hole() -> tuple[asyncio.Server, str, list[asyncio.StreamWriter]]:
    """A receiver that takes connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/hook", held


async def scenario(
    name: str, healthy: int, rate: float, send_timeout: float, settle_in: float, db_dir: Path
) -> dict[str, Any]:
    async with arrival_receiver(healthy) as arrivals:
        return await _scenario(arrivals, name, healthy, rate, send_timeout, settle_in, db_dir)


async def _scenario(
    arrivals: Arrivals, name: str, healthy: int, rate: float, send_timeout: float, settle_in: float, db_dir: Path
) -> dict[str, Any]:
    arrived, all_arrived, good_url = arrivals.at, arrivals.all_arrived, arrivals.url
    hole, hole_url, held = await black_hole()

    clock = SystemClock()
    config = WebhookConfig(timeout=send_timeout, lease_seconds=max(60.0, send_timeout * 4))
    if name == "black_hole_gate_off":
        config = WebhookConfig(
            timeout=send_timeout,
            lease_seconds=max(60.0, send_timeout * 4),
            max_per_host=config.max_concurrency,
            breaker_failures=10**9,
        )
    record = done_record()
    async with await SqliteStore.open(db_dir / f"{name}.db", clock=clock) as store:
        now = clock.time()
        settler = TaskSettler(store, clock)
        if name != "baseline":
            for i in range(BLACK_HOLE_EVENTS):
                await store.insert(processing_task(f"hole-{i:05d}", hole_url, now))
            await settler.settle(
                [Outcome(f"hole-{i:05d}", TaskKind.IMAGE, TaskStatus.DONE, Reason.DONE, record) for i in range(1000)]
            )
        for i in range(healthy):
            await store.insert(processing_task(f"good-{i:05d}", good_url, now))
        sender = WebhookSender(store, config, clock, policy=FetchPolicy(allow_private_networks=True), secret=None)
        settler = TaskSettler(store, clock, sender=sender)
        await sender.start()
        await asyncio.sleep(settle_in)  # the sender takes in the black hole's backlog first (all scenarios wait)
        marked: dict[str, float] = {}
        started = time.perf_counter()
        for i in range(healthy):
            hid = f"good-{i:05d}"
            await settler.settle([Outcome(hid, TaskKind.IMAGE, TaskStatus.DONE, Reason.DONE, record)])
            marked[hid] = time.perf_counter()
            await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.perf_counter()))
        with contextlib.suppress(TimeoutError):  # a webhook that never came shows as not delivered
            await asyncio.wait_for(all_arrived.wait(), timeout=120)
        await sender.stop()
    for writer in held:
        writer.close()
    hole.close()
    latencies = [(arrived[h] - marked[h]) * 1000 for h in marked if h in arrived]
    return {
        "scenario": name,
        "healthy_delivered": len(latencies),
        "healthy_sent": healthy,
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
    }


async def run(args: argparse.Namespace) -> None:
    names = ["baseline", "black_hole"] + (["black_hole_gate_off"] if args.compare else [])
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        for run_no in range(args.runs):
            for name in names:
                out = await scenario(
                    name, args.healthy, args.rate, args.timeout, args.settle_in, Path(tmp) / f"r{run_no}"
                )
                results[name].append(out)
                print(
                    f"run {run_no + 1} {name:20s}: healthy {out['healthy_delivered']}/{out['healthy_sent']} delivered, "
                    f"p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms, max {out['max_ms']} ms"
                )
    summary: dict[str, Any] = {"healthy_events": args.healthy, "black_hole_events": BLACK_HOLE_EVENTS}
    for name, outs in results.items():
        p99s = sorted(o["p99_ms"] if o["p99_ms"] is not None else float("inf") for o in outs)
        summary[f"{name}_p99_ms"] = {"min": p99s[0], "median": p99s[len(p99s) // 2], "max": p99s[-1]}
    base, hole = summary["baseline_p99_ms"]["median"], summary["black_hole_p99_ms"]["median"]
    summary["black_hole_vs_baseline_p99"] = round(hole / base, 2) if base else None
    summary["within_2x"] = bool(base) and hole <= 2 * base
    print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--healthy", type=int, default=200, help="webhooks for the healthy receiver per scenario")
    parser.add_argument("--rate", type=float, default=25.0, help="healthy tasks finished per second")
    parser.add_argument("--timeout", type=float, default=5.0, help="the sender's request timeout (seconds)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle-in", type=float, default=1.0, help="seconds between start and the first healthy task")
    parser.add_argument("--compare", action="store_true", help="also run with the gate neutralised")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
