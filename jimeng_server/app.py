"""`create_app(config)`: the server app as a list of `setup_*` steps (the aiohttp-demos `polls` style).

Each step builds one group of objects, stores them under their `web.AppKey`, and appends the cleanup
context that starts and stops them. Contexts start in the order of the steps and stop in reverse, so the
order below is the start/stop order: background jobs, upstream sessions, fetcher, store, webhook sender, task
background work (resume, watcher, purge), the account pool (resume its tasks). The task work stops first and the
store closes after the sender. Every background task lives in a scope of the one `Jobs` owner (jobs.py): a
component's stop ends its scope's jobs, and the owner, closed last, ends anything left. The admin API and
dashboard are routes added only when an admin key is set.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from . import metrics
from .api import (
    admin,
    async_tasks,
    chat,
    credits,
    deliveries,
    files,
    images,
    meta,
    openai_videos,
    openapi,
    task_events,
    videos,
)
from .api.appkeys import (
    ACCOUNT_POOL,
    ACCOUNTS,
    API_KEYS,
    CLIENT,
    CLOCK,
    COMPOSITIONS,
    CONFIG,
    FETCHER,
    GENERATION,
    IDEMPOTENCY,
    INTAKE,
    JOBS,
    KEEPER,
    POOL,
    QUERIES,
    REPLICAS,
    RESULT_LINKS,
    RETENTION,
    SENDERS,
    SETTLER,
    STORE,
    TASK_COSTS,
    TASK_RECORDS,
    UPLOADER,
    VIDEOS,
    WATCHER,
    WEBHOOKS,
)
from .api.cors import setup_cors
from .api.limits import declared_size_guard
from .api.observability import setup_observability
from .api.openai_compat import check_aliases
from .api.postedits import setup_postedits
from .api.token_guard import caller_guard
from .clock import Clock, SystemClock
from .config import Config, ConfigError
from .errors import make_error_middleware
from .jobs import Jobs
from .net.fetcher import SafeFetcher
from .net.policy import FetchPolicy
from .services.accounts import AccountService
from .services.answers import AnswerCache
from .services.apikeys import ApiKeys
from .services.compositions import Compositions
from .services.file_links import link_key
from .services.file_stores import DiskFiles, FileStore, S3Files
from .services.generation import Generation
from .services.history_lookup import HistoryLookup
from .services.idempotency import IdempotencyKeys
from .services.image_inputs import ImageInputs
from .services.inputs import InputLoader
from .services.keeper import Keeper, default_public_base, results_root, upstream_netlocs
from .services.pool import AccountPool
from .services.replicas import Replicas
from .services.result_links import Keeping, ResultLinks
from .services.retention import Retention
from .services.settlement import TaskSettler
from .services.task_costs import CostReconciler
from .services.task_intake import TaskIntake
from .services.task_queries import TaskQueries
from .services.task_records import TaskRecords
from .services.videos import VideoService
from .store.backends import store_backend
from .store.base import ReplicaStore
from .store.secretbox import ENV_VAR as ACCOUNTS_KEY_ENV
from .store.secretbox import secret_box
from .upstream.client import JimengClient
from .upstream.model_file import use_model_file
from .upstream.transport import SessionPool
from .upstream.transports import Transports
from .upstream.uploader import ImageUploader
from .upstream.vod_upload import VideoUploader
from .watcher import Watcher
from .webhooks.processes import SenderProcesses
from .webhooks.sender import WebhookSender
from .webhooks.signatures import secret_key

log = logging.getLogger(__name__)

ROUTES = (
    meta.routes,
    openapi.routes,
    credits.routes,
    images.routes,
    videos.routes,
    async_tasks.routes,
    deliveries.routes,
    files.routes,
    chat.routes,
    task_events.routes,
    openai_videos.routes,
)


def create_app(
    config: Config,
    *,
    clock: Clock | None = None,
    background: bool = True,
    identity_salt: bytes | None = None,
    fetcher: SafeFetcher | None = None,
) -> web.Application:
    """Build the server app. `background=False` leaves the background loops off (watcher, webhook sender,
    periodic purge) so tests drive them by hand (`run_once()`, `drain()`). `fetcher` replaces the SSRF-safe
    fetcher built from `config.security` (tests: a fake resolver); the app owns and closes it either way.
    Raises ConfigError for a bad webhook secret, a bad model alias or a bad accounts encryption key."""
    restore_models = use_model_file(config.models.file)  # before the aliases: they may name its models
    try:
        check_aliases(config.models.all_aliases)
    except ConfigError:
        restore_models()
        raise
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=[make_error_middleware(config.server.max_body_bytes), declared_size_guard, caller_guard],
    )
    app[CONFIG] = config
    app[CLOCK] = clock or SystemClock()
    setup_jobs(app)
    setup_upstream(app, identity_salt)
    setup_fetcher(app, fetcher)
    setup_store(app)
    setup_webhooks(app, background)
    setup_pool(app)
    setup_account_health(app, background)
    setup_tasks(app, background)
    setup_results(app, background)
    setup_replicas(app, background)
    setup_generation(app)
    setup_postedits(app)
    setup_observability(app)
    setup_cors(app, config.server.cors_origins)
    for table in ROUTES:
        app.router.add_routes(table)
    admin.setup_admin(app, config.admin)

    async def models_restored(_: web.Application) -> None:
        restore_models()

    app.on_cleanup.append(models_restored)
    return app


def setup_jobs(app: web.Application) -> None:
    """The one owner of background jobs (jobs.py); each step below gives its components a scope of it. Its context
    is the first, so it closes last: after every component stopped its own jobs, anything still running (a job
    started after its component stopped) is named in a warning and cancelled."""
    jobs = app[JOBS] = Jobs("app")

    async def close_jobs(app: web.Application) -> AsyncIterator[None]:
        yield
        if jobs.live:
            names = sorted(task.get_name() for task in jobs.tasks())
            log.warning("%d background job(s) still running at shutdown, cancelled: %s", len(names), ", ".join(names))
        await jobs.close(0.0)

    app.cleanup_ctx.append(close_jobs)


def setup_upstream(app: web.Application, identity_salt: bytes | None) -> None:
    """Upstream sessions (one per proxy), the transports and the protocol client."""
    config, clock = app[CONFIG], app[CLOCK]
    up = config.upstream
    pool = app[POOL] = SessionPool(connect_timeout=up.connect_timeout, ca_file=up.tls_ca_file)
    transports = Transports(config.upstream, config.browser, pool)  # ConfigError when a transport cannot run
    app[CLIENT] = JimengClient(config.upstream, pool, clock, identity_salt=identity_salt, transports=transports)

    async def sessions(app: web.Application) -> AsyncIterator[None]:
        yield
        await transports.close()
        await pool.close()

    app.cleanup_ctx.append(sessions)


def setup_fetcher(app: web.Application, fetcher: SafeFetcher | None) -> None:
    """The SSRF-safe fetcher for caller-supplied URLs."""
    sec, up = app[CONFIG].security, app[CONFIG].uploads
    owned = app[FETCHER] = fetcher or SafeFetcher(
        FetchPolicy(
            allow_private_networks=sec.allow_private_networks,
            max_bytes=sec.max_download_bytes,
            connect_timeout=sec.fetch_connect_timeout,
            total_timeout=sec.fetch_timeout,
        ),
        temp_dir=up.temp_dir or None,
    )

    async def close_fetcher(app: web.Application) -> AsyncIterator[None]:
        yield
        await owned.close()

    app.cleanup_ctx.append(close_fetcher)


SENDER_ENTRY = "jimeng_server.cli:sender_main"
"""What a webhook sender process runs (`[webhooks] processes`)."""


def setup_store(app: web.Application, *, shared: bool = False) -> None:
    """The task store (tasks, idempotency keys, webhook outbox) and idempotency claims on it (`shared`: in a
    webhook sender process, beside the server's own)."""
    config, clock = app[CONFIG], app[CLOCK]
    store = app[STORE] = store_backend(config.store, clock, shared=shared)
    app[TASK_RECORDS] = TaskRecords(store)
    app[IDEMPOTENCY] = IdempotencyKeys(store, config.store, clock)

    async def open_store(app: web.Application) -> AsyncIterator[None]:
        await store.start()
        yield
        await store.close()

    app.cleanup_ctx.append(open_store)


def setup_webhooks(app: web.Application, background: bool) -> None:
    """The webhook sender (the env var JIMENG_WEBHOOK_SECRET overrides the configured secret). With
    `[webhooks] processes` and the background loops on, it does not send: the sender processes do
    (webhooks/processes.py), started after the store opened and stopped before it closes; its `wake()` wakes
    them."""
    config, store, clock = app[CONFIG], app[STORE], app[CLOCK]
    sender = app[WEBHOOKS] = WebhookSender(
        app[STORE],
        config.webhooks,
        app[CLOCK],
        policy=FetchPolicy(
            allow_private_networks=config.security.allow_private_networks,
            connect_timeout=min(config.security.fetch_connect_timeout, config.webhooks.timeout),
        ),
        secret=secret_key(config.webhooks),
        jobs=app[JOBS].scope("webhooks"),
    )

    if background and config.webhooks.processes:
        children = app[SENDERS] = SenderProcesses(
            config,
            clock,
            entry=SENDER_ENTRY,
            release=lambda: store.release_event_leases(now=clock.time()),
            on_delivery=metrics.webhook_delivery,
            jobs=app[JOBS].scope("webhook-senders"),
        )
        sender.elsewhere = children

        async def run_children(app: web.Application) -> AsyncIterator[None]:
            await children.start()
            yield
            await children.stop(grace=config.server.shutdown_grace)

        app.cleanup_ctx.append(run_children)
        return

    async def run_sender(app: web.Application) -> AsyncIterator[None]:
        if background:
            await sender.start()
        yield
        await sender.stop(grace=config.server.shutdown_grace)  # in-flight attempts may finish first

    app.cleanup_ctx.append(run_sender)


def create_sender_app(config: Config, *, clock: Clock | None = None) -> web.Application:
    """The app of one webhook sender process (`[webhooks] processes`; no routes, never served): the upstream
    client and the account pool (to re-sign expiring result links in event bodies), the store (`shared`) and the
    sender, started by its cleanup context. Raises ConfigError like `create_app`."""
    config = dataclasses.replace(config, webhooks=dataclasses.replace(config.webhooks, processes=0))  # it sends
    restore_models = use_model_file(config.models.file)
    app = web.Application()
    app[CONFIG] = config
    app[CLOCK] = clock or SystemClock()
    setup_jobs(app)
    setup_upstream(app, None)
    setup_store(app, shared=True)
    setup_pool(app)
    links = result_links(app)
    if links is not None:

        async def run_links(app: web.Application) -> AsyncIterator[None]:
            files = links.local.files if links.local is not None else None
            if files is not None:
                await files.start()  # kept files' links are signed here too
            yield
            await links.close()
            if files is not None:
                await files.close()

        app.cleanup_ctx.append(run_links)
    setup_webhooks(app, background=True)  # started last, stopped first
    if links is not None:
        app[WEBHOOKS].body_hook = links.event_body

    async def models_restored(_: web.Application) -> None:
        restore_models()

    app.on_cleanup.append(models_restored)
    return app


def setup_pool(app: web.Application) -> None:
    """Accounts: the pool and API keys (in the task store) for callers with a key, and the account service that
    picks the paying account (raw tokens or the pool). At start-up: warn when pool secrets are stored
    unencrypted; at shutdown: cancel the balance lookups in flight."""
    config, clock, store = app[CONFIG], app[CLOCK], app[STORE]
    pool = app[ACCOUNT_POOL] = AccountPool(
        store,
        secret_box(config.accounts),  # env JIMENG_ACCOUNTS_KEY overrides; a malformed key fails here
        clock,
        cooldown_seconds=config.accounts.cooldown_seconds,
        claim_daily=config.accounts.claim_daily,
        in_flight_window={"image": config.watcher.image.deadline, "video": config.watcher.video.deadline},
        browser=config.browser,
    )
    keys = app[API_KEYS] = ApiKeys(store, pool, clock)
    accounts = app[ACCOUNTS] = AccountService(
        app[CLIENT],
        clock,
        cache_seconds=config.upstream.credit_cache_seconds,
        cooldown_seconds=config.upstream.account_cooldown_seconds,
        risk_cooldown_seconds=config.upstream.risk_cooldown_seconds,
        pool=pool,
        keys=keys,
        claim_daily=config.accounts.claim_daily,
        jobs=app[JOBS].scope("balances"),
    )

    async def run_accounts(app: web.Application) -> AsyncIterator[None]:
        if not pool.box.sealing and await pool.rows():
            log.warning(
                "the account pool's session ids are stored unencrypted: set [accounts] encryption_key or %s",
                ACCOUNTS_KEY_ENV,
            )
        yield
        await accounts.close()

    app.cleanup_ctx.append(run_accounts)


def setup_account_health(app: web.Application, background: bool) -> None:
    """In the background, every `[accounts] recheck_seconds`: read again the pool accounts resting after a failed
    balance read (`AccountService.recheck_unhealthy`), so a healed proxy or upstream brings them back."""
    seconds = app[CONFIG].accounts.recheck_seconds
    if not background or seconds <= 0:
        return
    accounts, clock = app[ACCOUNTS], app[CLOCK]
    recheck = app[JOBS].scope("account-recheck")

    async def recheck_loop() -> None:
        while True:
            await clock.sleep(seconds)
            try:
                await accounts.recheck_unhealthy()
            except Exception:  # one failed round must not end the loop
                log.exception("re-checking unhealthy pool accounts failed")

    async def run_recheck(app: web.Application) -> AsyncIterator[None]:
        recheck.spawn(recheck_loop(), name="jimeng-account-recheck")
        yield
        await recheck.stop()

    app.cleanup_ctx.append(run_recheck)


def timings_path(config: Config) -> str | None:
    """Where the watcher keeps learned completion times: `[watcher] timings_file`; "" = beside the SQLite
    store (`<db>.timings.json`; not kept on PostgreSQL unless set); "off" = not kept."""
    name = config.watcher.timings_file
    if name == "off":
        return None
    if name:
        return name
    path = config.store.sqlite_path
    if config.store.backend != "sqlite" or not path or path == ":memory:":
        return None
    return f"{path}.timings.json"


def setup_tasks(app: web.Application, background: bool) -> None:
    """Settling, watching, recording and querying tasks; retention. At start-up: purge, then resume the
    background tasks left in flight, then start the loops; at shutdown the watcher stops before the writes
    in flight are drained."""
    config, clock, store, client = app[CONFIG], app[CLOCK], app[STORE], app[CLIENT]
    settler = app[SETTLER] = TaskSettler(store, clock, sender=app[WEBHOOKS])
    watcher = app[WATCHER] = Watcher(
        client,
        config.watcher,
        clock,
        on_progress=settler.progress,
        on_final=settler.settle,
        timings_path=timings_path(config),
        jobs=app[JOBS].scope("watcher"),
    )
    resolve = app[ACCOUNT_POOL].resolve
    intake = app[INTAKE] = TaskIntake(
        store, watcher, watch_all=config.watcher.watch == "all", resolve_account=resolve, box=app[ACCOUNT_POOL].box
    )
    app[ACCOUNTS].on_spent = intake.record_spent
    lookup = HistoryLookup(client, jobs=app[JOBS].scope("history-lookup"))
    answers = AnswerCache(config.store.answer_cache_bytes, clock, retention_seconds=config.store.retention_days * 86400)
    queries = app[QUERIES] = TaskQueries(
        store, watcher, settler, lookup, config.watcher, clock, resolve_account=resolve, answers=answers
    )
    costs = app[TASK_COSTS] = CostReconciler(
        store, client.get_credit_history, resolve, clock, answers=answers, jobs=app[JOBS].scope("task-costs")
    )
    settler.after_costs = queries.on_estimated = costs.notice
    retention = app[RETENTION] = Retention(
        store, config.store, clock, answers=answers, jobs=app[JOBS].scope("retention")
    )

    async def run_tasks(app: web.Application) -> AsyncIterator[None]:
        watcher.load_timings()
        await retention.purge()
        await intake.resume()
        if background:
            await watcher.start()
            retention.start()
        yield
        await retention.stop()
        await watcher.stop()
        watcher.save_timings()
        await lookup.close()
        await settler.drain()
        await costs.close()

    app.cleanup_ctx.append(run_tasks)


def result_links(app: web.Application) -> ResultLinks | None:
    """What `[results]` makes of result links that expire (None with `keep = "none"`): re-signing for task
    queries and webhook bodies, and with `keep = "local"` / `"s3"` where kept files go (`ResultLinks.local`)."""
    config = app[CONFIG]
    results = config.results
    if results.keep == "none":
        return None
    local: Keeping | None = None
    root = results_root(results, config.store)
    files: FileStore | None = None
    if results.keep == "local":
        key, stable = link_key(results.link_secret)
        if not stable:
            log.warning("[results] link_secret is empty: links to kept files stop working when the server restarts")
        if config.store.backend == "postgresql":
            log.warning("[results] keep = local with replicas: %s must be one directory shared by all of them", root)
        files = DiskFiles(root, key=key, base=results.public_base_url or default_public_base(config.server))
    elif results.keep == "s3":
        files = S3Files(results)  # ConfigError here when the s3 extra is missing
    if files is not None:
        local = Keeping(files, results.link_seconds, results.webhook_after_keep)
    return ResultLinks(
        app[CLIENT],
        app[STORE],
        app[CLOCK],
        margin=results.resign_margin,
        resolve_account=app[ACCOUNT_POOL].resolve,
        local=local,
        jobs=app[JOBS].scope("result-links"),
    )


def setup_results(app: web.Application, background: bool) -> None:
    """What happens to result links that expire (`[results]`, `result_links`): re-signing for task queries and
    webhook bodies, and with `keep = "local"` the keeper that downloads results into the results directory (its
    loop runs with the background loops). At shutdown the keeper stops and the re-signs in flight are
    cancelled."""
    config = app[CONFIG]
    results = config.results
    found = result_links(app)
    if found is None:
        return
    links = app[RESULT_LINKS] = found
    local = links.local
    root = results_root(results, config.store)
    app[QUERIES].links = links
    app[INTAKE].remember_owner = links.remember
    app[SETTLER].result_refs = links.refs_of
    app[SETTLER].after_settle = links.after_settle
    app[WEBHOOKS].body_hook = links.event_body
    keeper: Keeper | None = None
    if local is not None:
        policy = FetchPolicy(
            allow_private_networks=config.security.allow_private_networks,
            max_bytes=results.max_file_bytes,
            connect_timeout=config.security.fetch_connect_timeout,
            total_timeout=config.security.fetch_timeout,
            max_redirects=0,
        )
        temp = str(root / "tmp")
        keeper = app[KEEPER] = Keeper(
            app[STORE],
            results,
            app[CLOCK],
            root=root,
            files=local.files,
            fetcher=SafeFetcher(policy, temp_dir=temp),
            own_fetcher=SafeFetcher(dataclasses.replace(policy, allow_private_networks=True), temp_dir=temp),
            links=links,
            upstream_netlocs=upstream_netlocs(config.upstream),
            on_events=app[WEBHOOKS].wake,
            on_expired=app[QUERIES].answers.forget_all,
            jobs=app[JOBS].scope("keeper"),
        )
        links.on_jobs = keeper.wake
        links.local_recheck = results.sweep_interval

    async def run_links(app: web.Application) -> AsyncIterator[None]:
        if keeper is not None:
            await keeper.files.start()
            if background:
                await keeper.start()
        yield
        if keeper is not None:
            await keeper.stop()
        await links.close()

    app.cleanup_ctx.append(run_links)


def setup_replicas(app: web.Application, background: bool) -> None:
    """On a store shared by replicas (PostgreSQL) with the background loops on: watch leases and notices
    (services/replicas.py), adopting the stored background tasks. Started after the task work, stopped
    before it (stopping the watcher first)."""
    store = app[STORE]
    if not background or not isinstance(store, ReplicaStore):
        return
    watcher, intake = app[WATCHER], app[INTAKE]
    replicas = app[REPLICAS] = Replicas(
        store,
        store,
        watcher,
        intake.resume,
        app[WEBHOOKS],
        app[CLOCK],
        lease_seconds=app[CONFIG].store.watch_lease_seconds,
        jobs=app[JOBS].scope("replicas"),
    )

    async def run_replicas(app: web.Application) -> AsyncIterator[None]:
        await replicas.start()
        yield
        await replicas.stop()

    app.cleanup_ctx.append(run_replicas)


def setup_generation(app: web.Application) -> None:
    """Generation (images), input uploads, compositions and videos."""
    config, client = app[CONFIG], app[CLIENT]
    sec, up = config.security, config.uploads
    app[UPLOADER] = ImageUploader(client, up)
    generation = app[GENERATION] = Generation(
        client, app[ACCOUNTS], app[WATCHER], config, app[CLOCK], on_submitted=app[INTAKE].track
    )
    loader = InputLoader(
        app[FETCHER], max_bytes=sec.max_download_bytes, temp_dir=up.temp_dir or None, concurrency=up.concurrency
    )
    inputs = ImageInputs(loader, app[UPLOADER], client, concurrency=up.concurrency)
    app[COMPOSITIONS] = Compositions(generation, inputs)
    app[VIDEOS] = VideoService(generation, inputs, VideoUploader(client, up))
