"""The store's work per finished task (issue 27 item 2), from the settle to the recorded delivery.

`--tasks` image tasks with a callback URL (four results each, links that say when they expire, a realistic
upstream record) are inserted, then finished through the production settler (`services.settlement.TaskSettler`
with the result refs hook of `services.result_links`) in batches of `--batch`, their events claimed as the webhook
sender claims them (`claim_and_next_due`, or on an older tree `claim_due_events` + `next_event_due`) and their
deliveries recorded (`record_attempts`). Counted for the settle, claim and record phases together, per finished
task: statements SQLite ran (its trace callback, on the write and the read connections), trips to aiosqlite's
threads, and the CPU those threads used (`time.thread_time` around each trip); and the main thread's CPU. With
`--handoff` the settler hands its events to a sender in its process as the server's does (`TakesEvents`: the
settle writes them already claimed, up to `--batch` per settle) and no claim statement runs. With
`--backend postgresql` (a throw-away local server, tests/helpers/store_backends.local_server): statements (an
`executemany` one per row, BEGIN and COMMIT included) and round trips instead.

    PYTHONPATH=. /work/venv/bin/python bench/finish_store.py [--tasks 2000] [--batch 10] [--runs 3] \
        [--backend sqlite|postgresql] [--handoff]

Last line: JSON (each figure's min / median / max over the runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jimeng_server.clock import ManualClock
from jimeng_server.services import result_links
from jimeng_server.services.settlement import TaskSettler
from jimeng_server.store.base import Store
from jimeng_server.store.outbox import Attempt, AttemptResult, EventClaim, EventState, OutboxEvent
from jimeng_server.store.postgres import PostgresStore
from jimeng_server.store.sqlite import SqliteStore
from jimeng_server.tasks.records import Outcome, Reason, TaskKind, TaskRecord, TaskStatus
from jimeng_server.upstream.history import parse_record

HOOK = "https://hooks.example/cb"
TESTS = Path(__file__).resolve().parent.parent / "tests" / "helpers"


def outcome(history_id: str, now: float) -> Outcome:
    """A done image task of four results, as the watcher hands it to the settler."""
    expires = int(now) + 3600
    items = [
        {
            "common_attr": {"id": f"{history_id}{n}", "status": 50, "description": "a cat " * 20},
            "image": {
                "large_images": [
                    {
                        "image_uri": f"tos-cn-i-sim/{history_id}-{n}",
                        "image_url": f"https://cdn.example/{history_id}-{n}.png?x-expires={expires}&x-signature=s",
                        "width": 2048,
                        "height": 2048,
                    }
                ]
            },
        }
        for n in range(4)
    ]
    record = parse_record({"status": 50, "history_record_id": history_id, "item_list": items, "fail_code": "0"})
    return Outcome(history_id, TaskKind.IMAGE, TaskStatus.DONE, Reason.DONE, record)


class Meter:
    """Trips, statements and thread CPU of the store's connections."""

    def __init__(self) -> None:
        self.trips = 0
        self.statements = 0
        self.cpu = 0.0

    async def attach(self, store: Store) -> None:
        assert isinstance(store, SqliteStore)
        for conn in [store._conn, *store._readers]:
            await self._wrap(conn)

    async def _wrap(self, conn: Any) -> None:
        original = conn._execute

        def count(_statement: str) -> None:
            self.statements += 1

        async def metered(fn: Any, *args: Any, **kwargs: Any) -> Any:
            self.trips += 1

            def timed() -> Any:
                start = time.thread_time()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.cpu += time.thread_time() - start

            return await original(timed)

        await conn._execute(lambda: conn._conn.set_trace_callback(count))
        conn._execute = metered

    def detach(self) -> None:
        """Nothing to undo: the store's connections are closed with it."""


async def claim(store: Store, now: float, limit: int) -> list[Any]:
    if hasattr(store, "claim_and_next_due"):
        events, _ = await store.claim_and_next_due(now=now, limit=limit, lease_until=now + 60)
        return list(events)
    events = await store.claim_due_events(now=now, limit=limit, lease_until=now + 60)
    await store.next_event_due(now=now)
    return list(events)


class Taker:
    """A sender in the settler's process (`services.settlement.TakesEvents`) that takes every event it is handed;
    the bench records their deliveries."""

    def __init__(self, clock: ManualClock, most: int) -> None:
        self.clock = clock
        self.most = most
        self.taken: list[OutboxEvent] = []

    def reserve(self, most: int) -> EventClaim:
        return EventClaim(min(most, self.most), self.clock.time() + 60)

    async def take(self, claim: EventClaim, events: Sequence[OutboxEvent]) -> None:
        self.taken.extend(events)

    def wake(self) -> None:
        pass


async def finish_all(
    store: Store, clock: ManualClock, tasks: int, batch: int, meter: Any, *, handoff: bool = False
) -> dict[str, float]:
    """Insert `tasks` tasks, then (metered) settle them, claim their events (or take those the settle claimed,
    with `handoff`) and record their deliveries."""
    for n in range(tasks):
        await store.insert(
            TaskRecord.submitted(
                f"h{n}", f"fp{n % 10}", "tok", TaskKind.IMAGE, "jimeng-4.5", f"s{n}", at=clock.time(), callback_url=HOOK
            )
        )
    taker = Taker(clock, batch) if handoff else None
    settler = TaskSettler(store, clock, sender=taker)
    links = result_links.ResultLinks(None, store, clock, margin=300.0)  # type: ignore[arg-type]
    if hasattr(settler, "result_refs"):
        settler.result_refs = links.refs_of
    settler.after_settle = links.after_settle
    outcomes = [outcome(f"h{n}", clock.time()) for n in range(tasks)]
    await meter.attach(store)
    cpu_start = time.thread_time()
    for i in range(0, tasks, batch):
        await settler.settle(outcomes[i : i + batch])
    delivered = 0
    handed = [taker.taken[i : i + batch] for i in range(0, len(taker.taken), batch)] if taker else []
    while events := (handed.pop(0) if handed else await claim(store, clock.time(), batch)):
        results = [
            AttemptResult(Attempt(e.event_id, 1, clock.time(), 200, None, 5, None), EventState.DELIVERED)
            for e in events
        ]
        await store.record_attempts(results)
        delivered += len(events)
    main_cpu = time.thread_time() - cpu_start
    meter.detach()
    assert delivered == tasks, f"delivered {delivered} of {tasks}"
    figures = {"statements_per_task": meter.statements / tasks, "trips_per_task": meter.trips / tasks}
    if isinstance(meter, Meter):
        figures["sqlite_thread_us_per_task"] = meter.cpu / tasks * 1e6
    figures["main_thread_us_per_task"] = main_cpu / tasks * 1e6
    return figures


class PgMeter:
    """Statements (an `executemany` counts one per row; BEGIN and COMMIT count) and round trips of the store's
    PostgreSQL connections, counted on the `PgDb` and transaction methods of this process."""

    def __init__(self) -> None:
        self.trips = 0
        self.statements = 0
        self._undo: list[tuple[Any, str, Any]] = []

    async def attach(self, _store: Store) -> None:
        import asyncpg.transaction

        from jimeng_server.store.postgres import PgDb

        def counted(cls: Any, name: str, per_call: Any) -> None:
            original = getattr(cls, name)

            async def wrapper(this: Any, *args: Any, **kwargs: Any) -> Any:
                self.trips += 1
                self.statements += per_call(args)
                return await original(this, *args, **kwargs)

            self._undo.append((cls, name, original))
            setattr(cls, name, wrapper)

        for name in ("fetch", "fetchrow", "fetchval", "execute"):
            counted(PgDb, name, lambda _args: 1)
        counted(PgDb, "executemany", lambda args: len(list(args[1])) if len(args) > 1 else 0)
        counted(asyncpg.transaction.Transaction, "start", lambda _args: 1)
        counted(asyncpg.transaction.Transaction, "commit", lambda _args: 1)

    def detach(self) -> None:
        for cls, name, original in reversed(self._undo):
            setattr(cls, name, original)
        self._undo.clear()


async def one_run(tasks: int, batch: int, backend: str, handoff: bool) -> dict[str, float]:
    clock = ManualClock(1_767_225_600.0)
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            async with await SqliteStore.open(Path(tmp) / "bench.db", clock=clock) as store:
                return await finish_all(store, clock, tasks, batch, Meter(), handoff=handoff)
    sys.path.insert(0, str(TESTS))
    import asyncpg
    from store_backends import local_server

    with local_server() as server:
        admin = await asyncpg.connect(server.url("postgres"))
        await admin.execute("CREATE DATABASE bench")
        await admin.close()
        async with await PostgresStore.open(server.url("bench"), clock=clock) as pg_store:
            return await finish_all(pg_store, clock, tasks, batch, PgMeter(), handoff=handoff)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--handoff", action="store_true", help="the settle claims its events for the sender")
    args = parser.parse_args()
    runs = [await one_run(args.tasks, args.batch, args.backend, args.handoff) for _ in range(args.runs)]
    for n, figures in enumerate(runs, 1):
        print(f"run {n}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))
    summary: dict[str, Any] = {
        "backend": args.backend,
        "tasks": args.tasks,
        "batch": args.batch,
        "handoff": args.handoff,
    }
    for key in runs[0]:
        values = sorted(r[key] for r in runs)
        summary[key] = {
            "min": round(values[0], 2),
            "median": round(statistics.median(values), 2),
            "max": round(values[-1], 2),
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
