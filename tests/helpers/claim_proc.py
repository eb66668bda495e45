"""Claims due webhook events from an SQLite store in its own process, for the cross-process claim test:
`python claim_proc.py DB`. Opens the store (`shared`, as a sender process does), prints "ready", waits for a line
on stdin (so two of these start claiming together), then claims two events at a time under a lease until a claim
comes back empty, printing each claimed event id on a line of its own, then "done"."""

from __future__ import annotations

import asyncio
import sys

from jimeng_server.clock import SystemClock
from jimeng_server.store.sqlite import SqliteStore


async def main(db_path: str) -> None:
    clock = SystemClock()
    store = SqliteStore(db_path, clock=clock, shared=True)
    await store.start()
    try:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        while True:
            now = clock.time()
            events = await store.claim_due_events(now=now, limit=2, lease_until=now + 600)
            if not events:
                break
            for event in events:
                print(event.event_id, flush=True)
    finally:
        await store.close()
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
