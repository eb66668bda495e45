"""A webhook sender in its own process, for the kill -9 / restart test: `python webhook_sender_proc.py DB`.

Opens the task store at DB, starts a `WebhookSender` (real clock, private networks allowed, secret from
JIMENG_WEBHOOK_SECRET) and runs until SIGTERM or SIGINT, then stops it cleanly and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from jimeng_server.clock import SystemClock
from jimeng_server.config import WebhookConfig
from jimeng_server.net.policy import FetchPolicy
from jimeng_server.store.sqlite import SqliteStore
from jimeng_server.webhooks.sender import WebhookSender
from jimeng_server.webhooks.signatures import secret_key


async def main(db_path: str, concurrency: int) -> None:
    clock = SystemClock()
    config = WebhookConfig(
        schedule=(0.0, 0.2, 0.5, 1.0), jitter=0.0, timeout=10.0, max_concurrency=concurrency, poll_interval=0.05
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with await SqliteStore.open(db_path, clock=clock) as store:
        sender = WebhookSender(
            store, config, clock, policy=FetchPolicy(allow_private_networks=True), secret=secret_key(config)
        )
        await sender.start()
        print("ready", flush=True)
        try:
            await stop.wait()
        finally:
            await sender.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8))
