"""`create_app(config)`: wires config, clock, upstream client, watcher and routes into one aiohttp app.

Long-lived objects are built here; the cleanup context starts the watcher loop and, on shutdown,
stops it and closes every upstream session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from .api import async_tasks, deliveries, images, meta, tokens, videos
from .api.appkeys import (
    ACCOUNTS,
    CLIENT,
    CLOCK,
    COMPOSITIONS,
    CONFIG,
    FETCHER,
    GENERATION,
    IDEMPOTENCY,
    POOL,
    TASKS,
    UPLOADER,
    VIDEOS,
    WATCHER,
    WEBHOOKS,
)
from .clock import Clock, SystemClock
from .config import Config
from .errors import make_error_middleware
from .net.fetcher import SafeFetcher
from .net.policy import FetchPolicy
from .services.accounts import AccountService
from .services.compositions import Compositions
from .services.generation import Generation
from .services.idempotency import IdempotencyKeys
from .services.inputs import InputLoader
from .services.tasks import TaskService
from .services.videos import VideoService
from .upstream.client import JimengClient
from .upstream.transport import SessionPool
from .upstream.uploader import ImageUploader
from .upstream.vod_upload import VideoUploader
from .watcher import Watcher
from .webhooks.sender import WebhookSender
from .webhooks.signatures import secret_key


def create_app(
    config: Config,
    *,
    clock: Clock | None = None,
    run_watcher: bool = True,
    identity_salt: bytes | None = None,
    fetcher: SafeFetcher | None = None,
) -> web.Application:
    """Build the server app. `run_watcher=False` leaves the background loops off (watcher, webhook sender,
    periodic purge) so tests drive them by hand (`run_once()`, `drain()`). Raises ConfigError for a bad
    webhook secret.

    `fetcher` replaces the SSRF-safe fetcher built from `config.security` (tests: a fake resolver); the app
    owns and closes it either way.
    """
    clock = clock or SystemClock()
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=[make_error_middleware(config.server.max_body_bytes)],
    )
    pool = SessionPool(connect_timeout=config.upstream.connect_timeout)
    client = JimengClient(config.upstream, pool, clock, identity_salt=identity_salt)
    accounts = AccountService(
        client,
        clock,
        cache_seconds=config.upstream.credit_cache_seconds,
        cooldown_seconds=config.upstream.account_cooldown_seconds,
    )
    watcher = Watcher(client, config.watcher, clock)
    tasks = TaskService(config.store, config.watcher, watcher, client, clock)
    watcher.on_progress, watcher.on_final = tasks.on_progress, tasks.on_final
    app[CONFIG] = config
    app[CLOCK] = clock
    app[POOL] = pool
    app[CLIENT] = client
    app[ACCOUNTS] = accounts
    app[WATCHER] = watcher
    app[GENERATION] = Generation(client, accounts, watcher, config, clock, on_submitted=tasks.track)
    app[TASKS] = tasks
    webhooks = WebhookSender(
        lambda: tasks.store,
        config.webhooks,
        clock,
        policy=FetchPolicy(
            allow_private_networks=config.security.allow_private_networks,
            connect_timeout=min(config.security.fetch_connect_timeout, config.webhooks.timeout),
        ),
        secret=secret_key(config.webhooks),  # env JIMENG_WEBHOOK_SECRET overrides; a bad secret fails here
    )
    tasks.on_event = webhooks.wake
    app[WEBHOOKS] = webhooks
    app[IDEMPOTENCY] = IdempotencyKeys(lambda: tasks.store, config.store, clock)
    sec, up = config.security, config.uploads
    app[FETCHER] = fetcher or SafeFetcher(
        FetchPolicy(
            allow_private_networks=sec.allow_private_networks,
            max_bytes=sec.max_download_bytes,
            connect_timeout=sec.fetch_connect_timeout,
            total_timeout=sec.fetch_timeout,
        ),
        temp_dir=up.temp_dir or None,
    )
    app[UPLOADER] = ImageUploader(client, up)
    loader = InputLoader(
        app[FETCHER], max_bytes=sec.max_download_bytes, temp_dir=up.temp_dir or None, concurrency=up.concurrency
    )
    app[COMPOSITIONS] = Compositions(app[GENERATION], app[UPLOADER], loader, concurrency=up.concurrency)
    app[VIDEOS] = VideoService(app[GENERATION], app[COMPOSITIONS], VideoUploader(client, up))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if run_watcher:
            await watcher.start()
        yield
        await watcher.stop()
        await pool.close()
        await app[FETCHER].close()

    async def task_store(app: web.Application) -> AsyncIterator[None]:
        # Before `lifecycle`: the store is open (and in-flight tasks resumed) before the watcher starts,
        # and closed after it stops. The periodic purge runs with the background loops.
        await tasks.open()
        purge = asyncio.create_task(tasks.purge_forever(), name="jimeng-purge") if run_watcher else None
        yield
        if purge is not None:
            purge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purge
        await tasks.close()

    app.cleanup_ctx.append(task_store)

    async def webhook_sender(app: web.Application) -> AsyncIterator[None]:
        # After `task_store`: the sender starts once the store is open and stops before it closes.
        if run_watcher:
            await webhooks.start()
        yield
        await webhooks.stop()

    app.cleanup_ctx.append(webhook_sender)
    app.cleanup_ctx.append(lifecycle)
    for table in (meta.routes, tokens.routes, images.routes, videos.routes, async_tasks.routes, deliveries.routes):
        app.router.add_routes(table)
    return app
