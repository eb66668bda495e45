"""`create_app(config)`: wires config, clock, upstream client, watcher and routes into one aiohttp app.

Long-lived objects are built here; the cleanup context starts the watcher loop and, on shutdown,
stops it and closes every upstream session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .api import images, meta, tokens, videos
from .clock import Clock, SystemClock
from .config import Config
from .errors import make_error_middleware
from .keys import ACCOUNTS, CLIENT, CLOCK, COMPOSITIONS, CONFIG, FETCHER, GENERATION, POOL, UPLOADER, VIDEOS, WATCHER
from .net.safe_fetch import FetchPolicy, SafeFetcher
from .services.accounts import AccountService
from .services.compositions import Compositions
from .services.generation import Generation
from .services.inputs import InputLoader
from .services.videos import VideoService
from .tasks.watcher import Watcher
from .upstream.client import JimengClient
from .upstream.transport import SessionPool
from .upstream.uploader import ImageUploader


def create_app(
    config: Config,
    *,
    clock: Clock | None = None,
    run_watcher: bool = True,
    identity_salt: bytes | None = None,
    fetcher: SafeFetcher | None = None,
) -> web.Application:
    """Build the server app. `run_watcher=False` leaves the watcher loop off so tests drive `run_once()`.

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
    accounts = AccountService(client, clock, cache_seconds=config.upstream.credit_cache_seconds)
    watcher = Watcher(client, config.watcher, clock)
    app[CONFIG] = config
    app[CLOCK] = clock
    app[POOL] = pool
    app[CLIENT] = client
    app[ACCOUNTS] = accounts
    app[WATCHER] = watcher
    app[GENERATION] = Generation(client, accounts, watcher, config, clock)
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
    app[VIDEOS] = VideoService(app[GENERATION], app[COMPOSITIONS])

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if run_watcher:
            await watcher.start()
        yield
        await watcher.stop()
        await pool.close()
        await app[FETCHER].close()

    app.cleanup_ctx.append(lifecycle)
    for table in (meta.routes, tokens.routes, images.routes, videos.routes):
        app.router.add_routes(table)
    return app
