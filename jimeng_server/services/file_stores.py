"""Where kept results go (`[results] keep = "local"` or `"s3"`), behind one `FileStore` interface: put a spooled
file under its id, remove files, and the link a caller opens one with.

- `DiskFiles`: the results directory (`file_links.file_path` layout); links are this server's signed
  `/v1/files/{id}` URLs (`api/files.py` serves them).
- `S3Files`: any S3-compatible bucket through aiobotocore (the optional extra `pip install 'jimeng-server[s3]'`,
  imported only when `keep = "s3"`; a missing extra is a start-up `ConfigError` naming it). Objects are
  `<s3_prefix><id>` with their content type; links are presigned GET URLs (at most 7 days, SigV4's limit), or
  `<public_base_url>/<s3_prefix><id>` for a public bucket or CDN in front of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ..config import ConfigError, ResultsConfig
from .file_links import content_type_of, file_path, file_url

S3_EXTRA_HINT = "pip install 'jimeng-server[s3]'"
PRESIGN_MAX = 7 * 86400
"""The longest lifetime of a SigV4 presigned URL."""


class FileStore(Protocol):
    """A place for kept files (see the module doc). `links_expire`: False when its links never expire."""

    links_expire: bool

    async def start(self) -> None:
        """Connect (before the first use)."""
        ...

    async def put(self, source: Path, file_id: str) -> None:
        """Store the spooled file `source` as `file_id` (it is consumed: moved or deleted); storing an id that is
        there already keeps the one there."""
        ...

    async def delete(self, file_ids: Sequence[str]) -> None:
        """Remove these files (missing ones are fine)."""
        ...

    async def url(self, file_id: str, expires: int, now: float) -> str:
        """The link that opens `file_id` until `expires` (unix seconds; `now` is the current time)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def _move(source: Path, target: Path) -> None:
    if target.exists():
        source.unlink(missing_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)


class DiskFiles:
    """Kept files in a directory, opened through this server's signed links."""

    links_expire = True

    def __init__(self, root: Path, *, key: bytes, base: str) -> None:
        self.root = root
        self.key = key
        self.base = base

    async def start(self) -> None:
        """Create the directory."""
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def put(self, source: Path, file_id: str) -> None:
        """See `FileStore.put` (a rename: the spool directory is inside `root`)."""
        await asyncio.to_thread(_move, source, file_path(self.root, file_id))

    async def delete(self, file_ids: Sequence[str]) -> None:
        """See `FileStore.delete`."""
        for file_id in file_ids:
            await asyncio.to_thread(file_path(self.root, file_id).unlink, missing_ok=True)

    async def url(self, file_id: str, expires: int, now: float) -> str:
        """See `FileStore.url`."""
        return file_url(self.base, self.key, file_id, expires)

    async def close(self) -> None:
        """Nothing to release."""


class S3Files:
    """Kept files in an S3-compatible bucket (see the module doc)."""

    def __init__(self, config: ResultsConfig) -> None:
        """Check the settings and that the extra is installed (ConfigError naming what to do); `start()` connects."""
        if not config.s3_bucket:
            raise ConfigError('results.s3_bucket: keep = "s3" needs the bucket\'s name')
        try:
            from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
            from aiobotocore.session import get_session  # type: ignore[import-untyped]
        except ImportError:
            raise ConfigError(f'results.keep = "s3" needs the s3 extra: {S3_EXTRA_HINT}') from None
        access = os.environ.get("JIMENG_S3_ACCESS_KEY", "") or config.s3_access_key
        secret = os.environ.get("JIMENG_S3_SECRET_KEY", "") or config.s3_secret_key
        self._options: dict[str, Any] = {
            "region_name": config.s3_region,
            "config": AioConfig(
                signature_version="s3v4",
                s3={"addressing_style": "path" if config.s3_path_style else "virtual"},
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        }
        if config.s3_endpoint:
            self._options["endpoint_url"] = config.s3_endpoint
        if access and secret:
            self._options.update(aws_access_key_id=access, aws_secret_access_key=secret)
        self._session = get_session()
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self.bucket = config.s3_bucket
        self.prefix = config.s3_prefix
        self.public_base = config.public_base_url.rstrip("/")
        self.links_expire = not self.public_base

    async def start(self) -> None:
        """Create the client (no request is made)."""
        if self._client is None:
            self._client = await self._stack.enter_async_context(self._session.create_client("s3", **self._options))

    def key_of(self, file_id: str) -> str:
        """The object key of a file."""
        return f"{self.prefix}{file_id}"

    async def put(self, source: Path, file_id: str) -> None:
        """See `FileStore.put` (one PUT streamed from the spooled file; the spool file is deleted)."""
        try:
            size = (await asyncio.to_thread(source.stat)).st_size
            with source.open("rb") as body:
                await self._client.put_object(
                    Bucket=self.bucket,
                    Key=self.key_of(file_id),
                    Body=body,
                    ContentType=content_type_of(file_id),
                    ContentLength=size,
                )
        finally:
            await asyncio.to_thread(source.unlink, missing_ok=True)

    async def delete(self, file_ids: Sequence[str]) -> None:
        """See `FileStore.delete` (batches of 1,000, S3's limit)."""
        ids = list(file_ids)
        for start in range(0, len(ids), 1000):
            objects = [{"Key": self.key_of(i)} for i in ids[start : start + 1000]]
            await self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})

    async def url(self, file_id: str, expires: int, now: float) -> str:
        """See `FileStore.url`: `<public_base_url>/<key>` when set, else a presigned GET URL."""
        if self.public_base:
            return f"{self.public_base}/{self.key_of(file_id)}"
        seconds = max(1, min(PRESIGN_MAX, int(expires - now)))
        url: str = await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.key_of(file_id)}, ExpiresIn=seconds
        )
        return url

    async def close(self) -> None:
        """Close the client."""
        self._client = None
        await self._stack.aclose()
