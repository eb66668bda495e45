"""ImageX image uploads for an account: credentials (cached), apply, byte upload, commit (§11.1, §11.2).

Every hop goes through the account's proxy (`SessionPool.get(account.proxy)`), so the upstream sees one IP
per task (§15). Upload credentials are cached per account until shortly before they expire and fetched
once even when several uploads ask at the same time. The bytes are streamed from the spooled file; they
are never read whole into memory. Apply and commit are signed with SigV4 (`sigv4.sign_headers`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from yarl import URL

from ..config import UploadConfig
from ..net.safe_fetch import Download
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


class ImageUploader:
    """Uploads spooled files to ImageX for accounts; `upload()` returns the committed image."""

    def __init__(self, client: JimengClient, config: UploadConfig) -> None:
        self.client = client
        self.config = config
        self._credentials: dict[str, UploadCredentials] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ credentials

    async def credentials(self, account: Account, *, stale: UploadCredentials | None = None) -> UploadCredentials:
        """The account's ImageX credentials: cached while valid (minus the margin), else fetched once.

        `stale` names credentials the upstream just refused: they are replaced even if not yet expired.
        """
        key = account.fingerprint
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            now = self.client.clock.time()
            cached = self._credentials.get(key)
            if cached is not None and cached is not stale and cached.valid_at(now, self.config.credentials_margin):
                return cached
            data = await self.client.get_upload_token(account, scene=imagex.IMAGE_SCENE)
            fresh = imagex.parse_upload_token(data, account.region, now=now, default_ttl=self.config.credentials_ttl)
            self._credentials[key] = fresh
            return fresh

    def forget(self, account: Account) -> None:
        """Drop the account's cached credentials."""
        self._credentials.pop(account.fingerprint, None)

    # ------------------------------------------------------------------ the four steps

    async def upload(self, account: Account, file: Download) -> CommittedImage:
        """Apply, upload and commit one file for `account`. Raises UpstreamError subclasses.

        Credentials from the cache that ImageX refuses (HTTP 4xx on apply) are replaced once.
        """
        creds = await self.credentials(account)
        try:
            address = await self._apply(account, creds, file.size)
        except UpstreamHttpError as exc:
            if not 400 <= exc.status < 500:
                raise
            log.info(
                "ImageX refused the upload credentials of %s (HTTP %d); fetching new ones", account.masked, exc.status
            )
            creds = await self.credentials(account, stale=creds)
            address = await self._apply(account, creds, file.size)
        await self._put(account, address, file)
        return await self._commit(account, creds, address)

    def _base(self, account: Account) -> str:
        return self.client.config.hosts(account.region).imagex

    def _browser_headers(self, account: Account) -> dict[str, str]:
        cfg = self.client.config
        origin = str(URL(cfg.hosts(account.region).web).origin())
        return imagex.browser_headers(
            origin,
            user_agent=cfg.user_agent,
            sec_ch_ua=cfg.sec_ch_ua,
            accept_language=accept_language(account.region),
        )

    def _signed(
        self, account: Account, creds: UploadCredentials, method: str, params: list[tuple[str, str]], body: bytes
    ) -> dict[str, str]:
        signed = sign_headers(
            method,
            imagex.API_PATH,
            params,
            body,
            access_key=creds.access_key_id,
            secret_key=creds.secret_access_key,
            session_token=creds.session_token,
            region=constants(account.region).sigv4_region,
            service=imagex.IMAGEX_SERVICE,
            amz_date=amz_date(self.client.clock.time()),
        )
        return {**self._browser_headers(account), **signed}

    async def _apply(self, account: Account, creds: UploadCredentials, size: int) -> UploadAddress:
        params = imagex.apply_query(creds.service_id, size, imagex.random_nonce(), account.region)
        session = self.client.pool.get(account.proxy)
        url = imagex.api_url(self._base(account))

        async def attempt() -> tuple[int, bytes]:
            headers = self._signed(account, creds, "GET", params, b"")
            async with session.get(url, params=params, headers=headers, timeout=self._api_timeout()) as resp:
                return resp.status, await resp.read()

        status, raw = await self._retrying(account, imagex.APPLY_ACTION, attempt)
        return imagex.parse_apply(_checked_json(imagex.APPLY_ACTION, status, raw))

    async def _put(self, account: Account, address: UploadAddress, file: Download) -> None:
        url = imagex.upload_url(self._base(account), address.upload_host, address.store_uri)
        session = self.client.pool.get(account.proxy)
        headers = {
            **self._browser_headers(account),
            **imagex.upload_headers(address.auth, file.crc32),
            "Connection": "keep-alive",
        }
        timeout = aiohttp.ClientTimeout(total=self.config.timeout, sock_connect=self.client.config.connect_timeout)

        async def attempt() -> tuple[int, bytes]:
            # aiohttp streams an open file in chunks from a worker thread, with Content-Length from its size.
            stream = await asyncio.to_thread(file.path.open, "rb")
            try:
                async with session.post(url, data=stream, headers=headers, timeout=timeout) as resp:
                    return resp.status, await resp.content.read(_EXCERPT)
            finally:
                await asyncio.to_thread(stream.close)

        status, raw = await self._retrying(account, "upload", attempt)
        if not 200 <= status < 300:
            excerpt = raw.decode("utf-8", "replace").strip()
            raise UpstreamHttpError(status, f"ImageX upload: HTTP {status} ({excerpt[:200]})")

    async def _commit(self, account: Account, creds: UploadCredentials, address: UploadAddress) -> CommittedImage:
        params = imagex.commit_query(creds.service_id)
        body = imagex.commit_body(address.session_key)
        session = self.client.pool.get(account.proxy)
        url = imagex.api_url(self._base(account))

        async def attempt() -> tuple[int, bytes]:
            headers = {**self._signed(account, creds, "POST", params, body), "Content-Type": "application/json"}
            async with session.post(
                url, params=params, data=body, headers=headers, timeout=self._api_timeout()
            ) as resp:
                return resp.status, await resp.read()

        status, raw = await self._retrying(account, imagex.COMMIT_ACTION, attempt)
        return imagex.parse_commit(_checked_json(imagex.COMMIT_ACTION, status, raw))

    # ------------------------------------------------------------------ plumbing

    def _api_timeout(self) -> aiohttp.ClientTimeout:
        cfg = self.client.config
        return aiohttp.ClientTimeout(total=cfg.timeout, sock_connect=cfg.connect_timeout)

    async def _retrying(self, account: Account, what: str, attempt: Attempt) -> tuple[int, bytes]:
        """Run `attempt` (fresh headers each time), retrying connection failures, timeouts, 429 and 5xx.

        Every ImageX step is safe to repeat: nothing is spent until generate. Returns the last status and body.
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
                last = UpstreamTimeout(f"ImageX {what}: no answer in time")
                continue
            except aiohttp.ClientError as exc:
                last = UpstreamUnavailable(f"ImageX {what}: connection failed ({type(exc).__name__})")
                continue
            if status == 429 or status >= 500:
                last = UpstreamHttpError(status, f"ImageX {what}: HTTP {status}")
                continue
            return status, raw
        assert last is not None
        log.warning("ImageX %s failed after %d attempts for %s: %s", what, attempts, account.masked, last.reason)
        raise last


def _checked_json(action: str, status: int, raw: bytes) -> Any:
    """The JSON answer of an apply/commit; HTTP 4xx becomes UpstreamHttpError naming the ImageX error."""
    try:
        payload: Any = json.loads(raw)
    except ValueError:
        payload = None
    if status >= 400:
        problem = imagex.response_error(payload) or raw[:200].decode("utf-8", "replace")
        raise UpstreamHttpError(status, f"ImageX {action}: HTTP {status} ({problem})")
    if payload is None:
        raise UpstreamBadResponse(f"ImageX {action}: the answer is not JSON")
    return payload
