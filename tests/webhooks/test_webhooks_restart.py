"""Durability: a sender process killed with SIGKILL while deliveries are in flight loses nothing.

100 finished tasks with callbacks are written through the real finish path; a sender runs in a child
process against a loopback receiver that takes 30 deliveries and then hangs every further one; the child
is killed -9 with 8 sends in flight, started again, and every one of the 100 webhook-ids must arrive
(in-flight ones again, with the same id), each event ending `delivered`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook
from webhook_support import SECRET, Receiver, Reply, add_done_task

from jimeng_server.clock import ManualClock
from jimeng_server.store.outbox import EventState
from jimeng_server.store.sqlite import SqliteStore

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parents[1] / "helpers" / "webhook_sender_proc.py"
EVENTS = 100
CONCURRENCY = 8
FIRST_RUN_OK = 30


async def spawn(db: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "JIMENG_WEBHOOK_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            str(db),
            str(CONCURRENCY),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
            env=env,
        )


async def test_kill_9_with_deliveries_in_flight_loses_nothing(
    tmp_path: Path, receiver: tuple[Receiver, TestServer]
) -> None:
    rec, server = receiver
    db = tmp_path / "tasks.db"
    log = tmp_path / "sender.log"
    clock = ManualClock(start=time.time() - 1)  # events are due by the child's real clock
    async with await SqliteStore.open(db, clock=clock) as store:
        for i in range(EVENTS):
            await add_done_task(store, clock, f"h{i:03d}", str(server.make_url("/hook")))

    rec.script("/hook", *[Reply(200)] * FIRST_RUN_OK, *[Reply(hang=True)] * CONCURRENCY)
    child = await spawn(db, log)
    try:
        await rec.wait_for(lambda: len(rec.acked) == FIRST_RUN_OK and rec.active == CONCURRENCY, timeout=20)
        in_flight = {r.headers["webhook-id"] for r in rec.requests[FIRST_RUN_OK:]}
        child.send_signal(signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    rec.released.set()  # the hung requests' client is gone; let the handlers end
    async with await SqliteStore.open(db, clock=clock) as store:
        counts = await store.event_state_counts()
    assert counts == {
        EventState.DELIVERED: FIRST_RUN_OK,
        EventState.DELIVERING: CONCURRENCY,
        EventState.PENDING: EVENTS - FIRST_RUN_OK - CONCURRENCY,
    }

    child = await spawn(db, log)
    try:
        await rec.wait_for(lambda: len(set(rec.acked)) == EVENTS, timeout=20)
        child.send_signal(signal.SIGTERM)
        assert await child.wait() == 0, log.read_text()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()

    assert len(in_flight) == CONCURRENCY
    assert in_flight <= set(rec.acked)  # the interrupted sends were made again, with the same ids
    assert len(set(rec.ids())) == EVENTS
    for got in rec.requests[-5:]:
        Webhook(SECRET).verify(got.body, got.headers)
    async with await SqliteStore.open(db, clock=clock) as store:
        assert await store.event_state_counts() == {EventState.DELIVERED: EVENTS}
