"""Store operations per second on the shared table code (issue 23), one backend at a time, in one process.

Times the store calls the server makes per task, each phase over `--tasks` tasks: `insert` (one call each,
as submits do), `progress` (update_progress in batches of `--batch`), `settle` (settle in batches of
`--batch`, every task with a callback URL, so each writes its outbox event), `claim` (claim_due_events in
batches of `--batch` until none is due), `attempts` (record_attempts for those), `get` (one call each) and
`idem` (claim_idempotency_key then complete_idempotency_key, one key per task). Figures are operations
(tasks) per second per phase; a fresh database per run.

    .venv/bin/python bench/store_ops.py [--tasks 2000] [--batch 100] [--backend sqlite|postgresql]

PostgreSQL runs on a throw-away local server (tests/helpers/store_backends.local_server). Last line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from jimeng_server.clock import ManualClock
from jimeng_server.store.base import Store
from jimeng_server.store.outbox import Attempt, AttemptResult, EventState
from jimeng_server.store.postgres import PostgresStore
from jimeng_server.store.sqlite import SqliteStore
from jimeng_server.tasks.records import Finish, NewEvent, Progress, Settlement, TaskKind, TaskRecord, TaskStatus

TESTS = Path(__file__).resolve().parent.parent / "tests" / "helpers"
DONE = Settlement(TaskStatus.DONE, 50, "", None, ("https://example.com/1.webp",), 1, {"status": 50})


HOOK = "https://hooks.example/cb"


def record(n: int) -> TaskRecord:
    return TaskRecord.submitted(
        f"h{n}", f"fp{n % 10}", "tok", TaskKind.IMAGE, "jimeng-4.5", f"s{n}", at=1000.0, callback_url=HOOK
    )


async def timed(figures: dict[str, float], name: str, count: int, body: Callable[[], Awaitable[None]]) -> None:
    start = time.perf_counter()
    await body()
    figures[name] = round(count / (time.perf_counter() - start))


async def run(store: Store, clock: ManualClock, tasks: int, batch: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    ids = range(tasks)
    chunks = [list(ids[i : i + batch]) for i in range(0, tasks, batch)]

    async def insert() -> None:
        for n in ids:
            await store.insert(record(n))

    async def progress() -> None:
        for chunk in chunks:
            await store.update_progress([Progress(f"h{n}", 20, 0, {"status": 20}) for n in chunk])

    async def settle() -> None:
        for chunk in chunks:
            finals = [Finish(f"h{n}", DONE, NewEvent(f"e{n}", "task.succeeded", "{}")) for n in chunk]
            settled = await store.settle(finals)
            assert all(s.event_written for s in settled) and len(settled) == len(chunk)

    claimed: list[str] = []

    async def claim() -> None:
        await clock.advance(1)
        while events := await store.claim_due_events(now=clock.time(), limit=batch, lease_until=clock.time() + 60):
            claimed.extend(e.event_id for e in events)

    async def attempts() -> None:
        for i in range(0, len(claimed), batch):
            results = [
                AttemptResult(Attempt(event_id, 1, clock.time(), 200, None, 5, None), EventState.DELIVERED)
                for event_id in claimed[i : i + batch]
            ]
            await store.record_attempts(results)

    async def get() -> None:
        for n in ids:
            assert await store.get(f"h{n}") is not None

    async def idem() -> None:
        for n in ids:
            await store.claim_idempotency_key(f"fp{n % 10}", f"k{n}", "hash")
            await store.complete_idempotency_key(f"fp{n % 10}", f"k{n}", status=200, body=b"{}")

    for name, body in [
        ("insert", insert),
        ("progress", progress),
        ("settle", settle),
        ("claim", claim),
        ("attempts", attempts),
        ("get", get),
        ("idem", idem),
    ]:
        await timed(figures, name, tasks, body)
    assert len(claimed) == tasks, f"claimed {len(claimed)} of {tasks} events"
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    clock = ManualClock()
    if args.backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            async with await SqliteStore.open(Path(tmp) / "bench.db", clock=clock) as sqlite_store:
                figures = await run(sqlite_store, clock, args.tasks, args.batch)
    else:
        sys.path.insert(0, str(TESTS))
        import asyncpg
        from store_backends import local_server

        with local_server() as server:
            admin = await asyncpg.connect(server.url("postgres"))
            await admin.execute("CREATE DATABASE bench")
            await admin.close()
            async with await PostgresStore.open(server.url("bench"), clock=clock) as pg_store:
                figures = await run(pg_store, clock, args.tasks, args.batch)
    for name, value in figures.items():
        print(f"{name:>9}: {value:>8} ops/s")
    print(json.dumps({"backend": args.backend, "tasks": args.tasks, "batch": args.batch, "ops_per_s": figures}))


if __name__ == "__main__":
    asyncio.run(main())
