"""Uploads for an account: the building blocks ImageX and VOD share, and the ImageX uploader (§11.1, §11.2).

`UploadPlumbing` holds what both upload services need: STS credentials from `get_upload_token` cached per
account until shortly before they expire (fetched once even when several uploads ask at the same time, replaced
once when the service refuses them), the browser headers of every upload hop, SigV4-signed API calls
(`sigv4.sign_headers`, retried, answers checked) and the byte upload streamed from the spooled file (never read
whole into memory). Every hop goes through the account's proxy (`SessionPool.get(account.proxy)`), so the
upstream sees one IP per task (§15). `ImageUploader` is the ImageX flow on top of it; the VOD flow is
`vod_upload.VideoUploader`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, TypeVar

import aiohttp
from yarl import URL

from ..config import UploadConfig
from ..net.spool import Download
from . import imagex
from .client import JimengClient, accept_language
from .errors import UpstreamBadResponse, UpstreamError, UpstreamHttpError, UpstreamTimeout, UpstreamUnavailable
from .imagex import CommittedImage, UploadAddress, UploadCredentials
from .regions import constants
from .sigv4 import amz_date, sign_headers
from .tokens import Account

log = logging.getLogger(__name__)

_EXCERPT = 300
Attempt = Callable[[], Awaitable[tuple[int, bytes]]]
A = TypeVar("A")


class UploadPlumbing:
    """Credentials, signing, retried API calls and streamed byte uploads of one upload service.

    Subclasses set `label` (names the service in messages), `service` (the SigV4 service name), `scene`
    (the `get_upload_token` scene) and implement `base(account)` (the service's base URL for the account).
    """

    label: ClassVar[str] = "upload"
    service: ClassVar[str] = ""
    scene: ClassVar[int] = 0

    def __init__(self, client: JimengClient, config: UploadConfig) -> None:
        self.client = client
        self.config = config
        self._credentials: dict[str, UploadCredentials] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def base(self, account: Account) -> str:
        """The base URL of the service for the account's region."""
        raise NotImplementedError

    # ------------------------------------------------------------------ credentials

    def parse_credentials(self, data: Any, account: Account, now: float) -> UploadCredentials:
        """Credentials from `get_upload_token` data (the ImageX reading; VOD overrides the service)."""
        return imagex.parse_upload_token(data, account.region, now=now, default_ttl=self.config.credentials_ttl)

    async def credentials(self, account: Account, *, stale: UploadCredentials | None = None) -> UploadCredentials:
        """The account's credentials for this service: cached while valid (minus the margin), else fetched once.

        `stale` names credentials the upstream just refused: they are replaced even if not yet expired.
        """
        key = account.fingerprint
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            now = self.client.clock.time()
            cached = self._credentials.get(key)
            if cached is not None and cached is not stale and cached.valid_at(now, self.config.credentials_margin):
                return cached
            data = await self.client.get_upload_token(account, scene=self.scene)
            fresh = self.parse_credentials(data, account, now)
            self._credentials[key] = fresh
            return fresh

    def forget(self, account: Account) -> None:
        """Drop the account's cached credentials."""
        self._credentials.pop(account.fingerprint, None)

    async def with_credentials(
        self, account: Account, apply: Callable[[UploadCredentials], Awaitable[A]]
    ) -> tuple[UploadCredentials, A]:
        """Run the apply step with the account's credentials; cached ones the service refuses (HTTP 4xx) are
        replaced once and the step repeated. Returns the credentials used and the step's result."""
        creds = await self.credentials(account)
        try:
            return creds, await apply(creds)
        except UpstreamHttpError as exc:
            if not 400 <= exc.status < 500:
                raise
            log.info(
                "%s refused the upload credentials of %s (HTTP %d); fetching new ones",
                self.label,
                account.masked,
                exc.status,
            )
        creds = await self.credentials(account, stale=creds)
        return creds, await apply(creds)

    # ------------------------------------------------------------------ requests

    def browser_headers(self, account: Account) -> dict[str, str]:
        """The browser headers of every upload hop, with the account's web identity (§11.2)."""
        cfg = self.client.config
        origin = str(URL(cfg.hosts(account.region).web).origin())
        return imagex.browser_headers(
            origin,
            user_agent=cfg.user_agent,
            sec_ch_ua=cfg.sec_ch_ua,
            accept_language=accept_language(account.region),
        )

    def signed(
        self, account: Account, creds: UploadCredentials, method: str, params: list[tuple[str, str]], body: bytes
    ) -> dict[str, str]:
        """Browser headers plus the SigV4 headers of one attempt (service `self.service`, the account's
        region, `x-amz-date` from the clock now)."""
        signed = sign_headers(
            method,
            imagex.API_PATH,
            params,
            body,
            access_key=creds.access_key_id,
            secret_key=creds.secret_access_key,
            session_token=creds.session_token,
            region=constants(account.region).sigv4_region,
            service=self.service,
            amz_date=amz_date(self.client.clock.time()),
        )
        return {**self.browser_headers(account), **signed}

    async def signed_call(
        self,
        account: Account,
        creds: UploadCredentials,
        action: str,
        method: str,
        params: list[tuple[str, str]],
        body: bytes = b"",
    ) -> Any:
        """A signed GET (no body) or POST (JSON body) to the service's API path; returns the parsed JSON answer.

        Retried like every upload step (freshly signed each time). HTTP 4xx raises UpstreamHttpError naming the
        service's error; a non-JSON answer raises UpstreamBadResponse.
        """
        session = self.client.pool.get(account.proxy)
        url = imagex.api_url(self.base(account))

        async def attempt() -> tuple[int, bytes]:
            headers = self.signed(account, creds, method, params, body)
            if body:
                headers["Content-Type"] = "application/json"
            async with session.request(
                method, url, params=params, data=body or None, headers=headers, timeout=self.api_timeout()
            ) as resp:
                return resp.status, await resp.read()

        status, raw = await self.retrying(account, action, attempt)
        return checked_json(self.label, action, status, raw)

    async def put_file(
        self, account: Account, url: str, headers: dict[str, str], file: Download, *, answer_bytes: int = _EXCERPT
    ) -> bytes:
        """POST the spooled file's bytes to `url` (streamed from disk), retried; returns at most `answer_bytes`
        of the answer. A non-2xx answer raises UpstreamHttpError."""
        session = self.client.pool.get(account.proxy)
        headers = {**self.browser_headers(account), **headers, "Connection": "keep-alive"}
        timeout = aiohttp.ClientTimeout(total=self.config.timeout, sock_connect=self.client.config.connect_timeout)

        async def attempt() -> tuple[int, bytes]:
            # aiohttp streams an open file in chunks from a worker thread, with Content-Length from its size.
            stream = await open_for_reading(file.path)
            try:
                async with session.post(url, data=stream, headers=headers, timeout=timeout) as resp:
                    return resp.status, await resp.content.read(answer_bytes)
            finally:
                await asyncio.to_thread(stream.close)

        status, raw = await self.retrying(account, "upload", attempt)
        if not 200 <= status < 300:
            excerpt = raw[:_EXCERPT].decode("utf-8", "replace").strip()
            raise UpstreamHttpError(status, f"{self.label} upload: HTTP {status} ({excerpt[:200]})")
        return raw

    # ------------------------------------------------------------------ plumbing

    def api_timeout(self) -> aiohttp.ClientTimeout:
        """The timeout of one API call (the web-API timeouts)."""
        cfg = self.client.config
        return aiohttp.ClientTimeout(total=cfg.timeout, sock_connect=cfg.connect_timeout)

    async def retrying(self, account: Account, what: str, attempt: Attempt) -> tuple[int, bytes]:
        """Run `attempt` (fresh headers each time), retrying connection failures, timeouts, 429 and 5xx.

        Every upload step is safe to repeat: nothing is spent until generate. Returns the last status and body.
        """
        cfg = self.client.config
        attempts = 1 + max(0, cfg.read_retries)
        last: UpstreamError | None = None
        for n in range(attempts):
            if n:
                await self.client.clock.sleep(cfg.retry_backoff * (2 ** (n - 1)))
            try:
                status, raw = await attempt()
            except (TimeoutError, aiohttp.ServerTimeoutError):
                last = UpstreamTimeout(f"{self.label} {what}: no answer in time")
                continue
            except aiohttp.ClientError as exc:
                last = UpstreamUnavailable(f"{self.label} {what}: connection failed ({type(exc).__name__})")
                continue
            if status == 429 or status >= 500:
                last = UpstreamHttpError(status, f"{self.label} {what}: HTTP {status}")
                continue
            return status, raw
        assert last is not None
        log.warning(
            "%s %s failed after %d attempts for %s: %s", self.label, what, attempts, account.masked, last.reason
        )
        raise last


class ImageUploader(UploadPlumbing):
    """Uploads spooled files to ImageX for accounts; `upload()` returns the committed image."""

    label = "ImageX"
    service = imagex.IMAGEX_SERVICE
    scene = imagex.IMAGE_SCENE

    def base(self, account: Account) -> str:
        """The region's ImageX base URL."""
        return self.client.config.hosts(account.region).imagex

    async def upload(self, account: Account, file: Download) -> CommittedImage:
        """Apply, upload and commit one file for `account`. Raises UpstreamError subclasses.

        Credentials from the cache that ImageX refuses (HTTP 4xx on apply) are replaced once.
        """
        creds, address = await self.with_credentials(account, lambda c: self._apply(account, c, file.size))
        url = imagex.upload_url(self.base(account), address.upload_host, address.store_uri)
        await self.put_file(account, url, imagex.upload_headers(address.auth, file.crc32), file)
        return await self._commit(account, creds, address)

    async def _apply(self, account: Account, creds: UploadCredentials, size: int) -> UploadAddress:
        params = imagex.apply_query(creds.service_id, size, imagex.random_nonce(), account.region)
        return imagex.parse_apply(await self.signed_call(account, creds, imagex.APPLY_ACTION, "GET", params))

    async def _commit(self, account: Account, creds: UploadCredentials, address: UploadAddress) -> CommittedImage:
        params = imagex.commit_query(creds.service_id)
        body = imagex.commit_body(address.session_key)
        return imagex.parse_commit(await self.signed_call(account, creds, imagex.COMMIT_ACTION, "POST", params, body))


async def open_for_reading(path: Path) -> BinaryIO:
    """Open `path` for binary reading in a worker thread. If the caller is cancelled while the thread is at it
    (a sibling upload failed), the file is closed as soon as it is open, so nothing leaks."""

    def open_file() -> BinaryIO:
        return path.open("rb")

    opening = asyncio.ensure_future(asyncio.to_thread(open_file))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_opened)
        raise


def _close_opened(opening: asyncio.Future[BinaryIO]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def checked_json(label: str, action: str, status: int, raw: bytes) -> Any:
    """The JSON answer of an apply/commit; HTTP 4xx becomes UpstreamHttpError naming the service's error."""
    try:
        payload: Any = json.loads(raw)
    except ValueError:
        payload = None
    if status >= 400:
        problem = imagex.response_error(payload) or raw[:200].decode("utf-8", "replace")
        raise UpstreamHttpError(status, f"{label} {action}: HTTP {status} ({problem})")
    if payload is None:
        raise UpstreamBadResponse(f"{label} {action}: the answer is not JSON")
    return payload
