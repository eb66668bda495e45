"""Keeping results on local disk (`[results] keep = "local"`, README "Keeping results").

`Keeper` works the store's keep jobs (`base.KeepStore`): it claims due jobs under a lease (`lease_seconds`; a
keeper killed mid-way leaves its jobs to be claimed again once the lease ran out, by this process after a restart
or by another replica), at most `concurrency` at a time, and for each one:

1. refuses a URL whose host is neither one of the upstream's own hosts (`[upstream.regions]`, the simulator's in
   `--simulate`) nor under `[results] cdn_hosts` (https only): such a job is given up at once and nothing is
   fetched;
2. takes a re-signed link when the stored one expires (`ResultLinks.urls`, the task's own account);
3. downloads it through the SSRF guard (`SafeFetcher`: checked addresses, no redirects, at most
   `max_file_bytes`, streamed to a temporary file in the results directory); `own_fetcher` (the operator's
   upstream hosts, e.g. the simulator on loopback) may reach private addresses, `fetcher` (CDN hosts) may not
   unless `[security] allow_private_networks`;
4. names the file by the SHA-256 of its bytes and its sniffed type and puts it in the `FileStore` (the results
   directory, an S3 bucket; the same bytes kept twice are one file), then marks the job kept;
5. on failure schedules the next attempt per `[results] retries` (then gives up, keeping the reason).

When every job of a task is final, its held webhook events are made due (`wake_held_events`) and the sender is
woken. Every `sweep_interval` the loop also applies retention (`sweep`: `keep_days`, `max_total_mb`).
`run_once()` / `drain()` / `sweep()` drive it without the loop (tests, virtual clock).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from ..clock import Clock, sleep_unless
from ..config import ResultsConfig, ServerConfig, StoreConfig, UpstreamConfig
from ..imageinfo import sniff_format
from ..jobs import Jobs
from ..metrics import keep_failure, kept_files_removed, result_kept
from ..net.errors import FetchError, TooLargeError, UnsafeURLError
from ..net.fetcher import SafeFetcher
from ..store.base import Store
from ..store.keeping import KeepJob
from ..upstream.links import url_expiry
from .file_links import EXTENSIONS, file_id_of
from .file_stores import FileStore
from .result_links import ResultLinks

log = logging.getLogger(__name__)

IDLE_WAIT = 30.0
"""Longest sleep of the loop between looks at the store (a wake or a due job ends it sooner)."""
_HASH_CHUNK = 1024 * 1024
MIB = 1024 * 1024


def results_root(results: ResultsConfig, store: StoreConfig) -> Path:
    """The directory of kept files: `[results] path`, else `<store file>-results` beside the SQLite store."""
    if results.path:
        return Path(results.path)
    db = Path(store.sqlite_path)
    return db.with_name(f"{db.stem}-results")


def default_public_base(server: ServerConfig) -> str:
    """`http://<host>:<port>` of the server itself (a wildcard host read as loopback)."""
    host = server.host if server.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{server.port}"


def upstream_netlocs(upstream: UpstreamConfig) -> frozenset[str]:
    """`host[:port]` of every configured upstream host (the simulator's in `--simulate`)."""
    urls = [u for hosts in upstream.regions.values() for u in dataclasses.astuple(hosts)]
    return frozenset(urlsplit(u).netloc.lower() for u in urls if urlsplit(u).netloc)


def host_allowed(url: str, upstream_netlocs: Collection[str], cdn_hosts: Sequence[str]) -> bool:
    """True when `url` is on one of the upstream's own hosts (`host[:port]` as configured) or an https URL on a
    host under one of `cdn_hosts`."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or parts.scheme not in ("http", "https"):
        return False
    if parts.netloc.lower() in upstream_netlocs:
        return True
    return parts.scheme == "https" and any(host == s or host.endswith("." + s) for s in cdn_hosts)


def sniffed_type(head: bytes, declared: str | None) -> str:
    """The content type of a kept file: from its first bytes (image formats, MP4's `ftyp`), else the declared
    one when it is a known type, else `application/octet-stream`."""
    image = sniff_format(head)
    if image is not None:
        return f"image/{image}"
    if head[4:8] == b"ftyp":
        return "video/mp4"
    ctype = (declared or "").split(";")[0].strip().lower()
    return ctype if ctype in EXTENSIONS else "application/octet-stream"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class KeepGaveUp(Exception):
    """A job that no further attempt can help (its host is not the upstream's, its file is too large)."""


class Keeper:
    """Works the keep jobs (see the module doc). `on_settled_task` is called with a history id whose jobs are all
    final and whose held events were woken (the sender's `wake`)."""

    def __init__(
        self,
        store: Store,
        config: ResultsConfig,
        clock: Clock,
        *,
        root: Path,
        files: FileStore,
        fetcher: SafeFetcher,
        own_fetcher: SafeFetcher | None = None,
        links: ResultLinks,
        upstream_netlocs: Collection[str],
        on_events: Callable[[], None] | None = None,
        on_expired: Callable[[Sequence[str]], None] | None = None,
        jobs: Jobs | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.root = root
        self.files = files
        self.fetcher = fetcher
        self.own_fetcher = own_fetcher or fetcher
        self.links = links
        self.upstream_netlocs = frozenset(n.lower() for n in upstream_netlocs)
        self.on_events = on_events
        self.on_expired = on_expired
        self._next_sweep = 0.0
        self._wakeup = asyncio.Event()
        self._jobs = jobs or Jobs("keeper")
        self._loop: asyncio.Task[None] | None = None
        self._kept: dict[str, asyncio.Event] = {}  # tasks someone waits on: set once all their jobs are final

    def wake(self) -> None:
        """Look for due jobs now (after adding some)."""
        self._wakeup.set()

    @property
    def temp_dir(self) -> Path:
        """Where downloads are spooled (for the results directory, inside it: putting a file is a rename)."""
        return self.root / "tmp"

    async def start(self) -> None:
        """Create the directories and start the loop (idempotent)."""
        if self._loop is None:
            self.temp_dir.mkdir(parents=True, exist_ok=True)
            await self.files.start()
            self._loop = self._jobs.spawn(self._run(), name="jimeng-keeper")

    async def stop(self) -> None:
        """Stop the loop (the jobs it had claimed are claimed again after their lease) and close the fetchers."""
        self._loop = None
        await self._jobs.stop()
        await self.fetcher.close()
        await self.own_fetcher.close()
        await self.files.close()

    async def wait_kept(self, history_id: str, seconds: float) -> bool:
        """Wait until every keep job of the task is final (kept or given up), at most `seconds` on the clock;
        True when they are. A task whose jobs are not added yet (its settle is being written) is waited for."""
        event = self._kept.setdefault(history_id, asyncio.Event())
        try:
            if await self._all_final(history_id):
                return True
            self.wake()
            await sleep_unless(self.clock, seconds, event)
            return event.is_set() or await self._all_final(history_id)
        finally:
            if self._kept.get(history_id) is event and not event.is_set():
                del self._kept[history_id]

    async def _all_final(self, history_id: str) -> bool:
        jobs = (await self.store.keep_jobs_of([history_id])).get(history_id, [])
        return bool(jobs) and all(job.state.final for job in jobs)

    async def run_once(self) -> int:
        """Claim the due jobs (at most `concurrency`) and work them to their end; returns how many."""
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        now = self.clock.time()
        jobs = await self.store.claim_keep_jobs(
            now=now, lease_seconds=self.config.lease_seconds, limit=max(1, self.config.concurrency)
        )
        await asyncio.gather(*(self._work(job) for job in jobs))
        for history_id in dict.fromkeys(job.history_id for job in jobs):
            await self._maybe_release(history_id)
        return len(jobs)

    async def drain(self) -> int:
        """`run_once()` until nothing is due now; returns how many jobs were worked."""
        total = 0
        while n := await self.run_once():
            total += n
        return total

    async def sweep(self) -> int:
        """Remove the files kept longer than `keep_days` ago and, beyond `max_total_mb`, the least recently kept
        ones; their results are marked expired first (then answered with the upstream's link). Returns how many
        files were removed."""
        now = self.clock.time()
        files = await self.store.kept_files()
        doomed = [
            f for f in files if self.config.keep_days > 0 and f.last_kept_at < now - self.config.keep_days * 86400
        ]
        if self.config.max_total_mb > 0:
            gone = {f.file_id for f in doomed}
            total = sum(f.size for f in files if f.file_id not in gone)
            for f in files:  # least recently kept first
                if total <= self.config.max_total_mb * MIB:
                    break
                if f.file_id not in gone:
                    doomed.append(f)
                    total -= f.size
        if not doomed:
            return 0
        ids = [f.file_id for f in doomed]
        tasks = await self.store.expire_kept_files(ids, now=now)
        await self.files.delete(ids)
        kept_files_removed(len(ids))
        log.info("retention: removed %d kept file(s) of %d task(s)", len(ids), len(tasks))
        if self.on_expired is not None:
            self.on_expired(tasks)
        return len(ids)

    async def _run(self) -> None:
        while True:
            if self.clock.time() >= self._next_sweep:
                self._next_sweep = self.clock.time() + self.config.sweep_interval
                try:
                    await self.sweep()
                except Exception:
                    log.exception("retention of kept files failed; trying again at the next sweep")
            try:
                worked = await self.run_once()
            except Exception:
                log.exception("keeping results: a round failed; trying again shortly")
                worked = 0
            if worked:
                continue
            due = await self._next_due()
            due = min(due, self._next_sweep) if due is not None else self._next_sweep
            wait = max(0.0, min(IDLE_WAIT, due - self.clock.time()))
            await sleep_unless(self.clock, wait, self._wakeup)
            self._wakeup.clear()

    async def _next_due(self) -> float | None:
        try:
            return await self.store.next_keep_due(now=self.clock.time())
        except Exception:
            log.exception("keeping results: the store could not say when jobs are due")
            return None

    async def _work(self, job: KeepJob) -> None:
        try:
            file_id, size, ctype = await self._keep(job)
        except Exception as exc:  # every failure is recorded; a bug must not leave the job leased
            gave_up = isinstance(exc, KeepGaveUp | TooLargeError | UnsafeURLError)
            await self._failed(job, exc, gave_up=gave_up)
            return
        await self.store.finish_keep_job(
            job.history_id, job.position, file_id=file_id, size=size, content_type=ctype, now=self.clock.time()
        )
        result_kept(size)

    async def _keep(self, job: KeepJob) -> tuple[str, int, str]:
        url = await self._source(job)
        own = urlsplit(url).netloc.lower() in self.upstream_netlocs
        download = await (self.own_fetcher if own else self.fetcher).download(url, what="result")
        try:
            digest = await asyncio.to_thread(_sha256, download.path)
            ctype = sniffed_type(download.head, download.content_type)
            file_id = file_id_of(digest, ctype)
            await self.files.put(download.path, file_id)
        except BaseException:
            download.cleanup()
            raise
        return file_id, download.size, ctype

    async def _source(self, job: KeepJob) -> str:
        """The URL to fetch: the stored one, or a re-signed one when it expires; only on allowed hosts."""
        url = job.url
        if self.links.expiring(url_expiry(url)):
            row = await self.store.get(job.history_id)
            if row is not None and row.results is not None:
                fresh = await self.links.urls(row)
                if job.position < len(fresh):
                    url = fresh[job.position]
        if not host_allowed(url, self.upstream_netlocs, self.config.cdn_hosts):
            host = urlsplit(url).netloc or "?"
            raise KeepGaveUp(f"{host} is not one of the upstream's hosts; the result was not fetched")
        return url

    async def _failed(self, job: KeepJob, exc: BaseException, *, gave_up: bool) -> None:
        schedule = self.config.retries
        delay = None if gave_up or job.attempts > len(schedule) else schedule[job.attempts - 1]
        now = self.clock.time()
        reason = str(exc) if isinstance(exc, KeepGaveUp | FetchError | UnsafeURLError) else type(exc).__name__
        if not isinstance(exc, KeepGaveUp | FetchError | UnsafeURLError):
            log.error("keeping result %d of task %s failed", job.position, job.history_id, exc_info=exc)
        else:
            log.warning("keeping result %d of task %s failed: %s", job.position, job.history_id, reason)
        next_at = now + delay if delay is not None else None
        await self.store.retry_keep_job(job.history_id, job.position, error=reason, next_attempt_at=next_at, now=now)
        keep_failure(next_at is None)

    async def _maybe_release(self, history_id: str) -> None:
        """Once every job of the task is final, make its held webhook events due and wake the sender."""
        if not await self._all_final(history_id):
            return
        waiting = self._kept.pop(history_id, None)
        if waiting is not None:
            waiting.set()
        if await self.store.wake_held_events(history_id, now=self.clock.time()) and self.on_events is not None:
            self.on_events()
