"""What the webhook benches share (bench/webhook_latency.py, bench/fair_delivery.py): a receiver that records
when each task's webhook arrived, a processing task as the async API stores it, a finished record to settle it
with, and the percentile they report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

from aiohttp import web

from jimeng_server.tasks.records import TaskKind, TaskRecord
from jimeng_server.upstream.history import HistoryRecord, parse_record


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def processing_task(history_id: str, url: str, now: float, *, submit_id: str | None = None) -> TaskRecord:
    """A processing image task with `url` as its callback, as the async API would store it."""
    submit = submit_id or history_id
    task = TaskRecord.submitted(
        history_id, "fp-bench", "bench-token", TaskKind.IMAGE, "jimeng-4.5", submit, at=now, callback_url=url
    )
    return replace(task, upstream_status=20)


def done_record() -> HistoryRecord:
    """A finished upstream record with four images (what every benched task settles with)."""
    items = [{"image": {"large_images": [{"image_url": f"https://cdn.example/{n}.webp"}]}} for n in range(4)]
    return parse_record({"status": 50, "item_list": items})


@dataclass
class Arrivals:
    """A receiver's URL, when each task's first webhook arrived (perf_counter), and an event set once
    `expected` tasks have arrived."""

    url: str
    expected: int
    at: dict[str, float] = field(default_factory=dict)
    all_arrived: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def arrival_receiver(expected: int) -> AsyncIterator[Arrivals]:
    """A webhook receiver on loopback answering 200 to every POST to /hook, for the duration of the block."""
    arrivals = Arrivals("", expected)

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        arrivals.at.setdefault(body["data"]["history_id"], time.perf_counter())
        if len(arrivals.at) == arrivals.expected:
            arrivals.all_arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    arrivals.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield arrivals
    finally:
        await runner.cleanup()
