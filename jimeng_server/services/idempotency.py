"""Idempotency keys for submits: request hashing, claims on the task store, and the "credits spent" mark.

A submit carrying `Idempotency-Key` runs at most once per account and key within the key's lifetime: a
repeat replays the first answer. Whether a failed first request may simply run again depends on whether
it reached the upstream generate: the request's `SpendMark` is passed down to that one call, which marks it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..clock import Clock
from ..config import StoreConfig
from ..store.base import IdempotencyStore
from ..tasks.claims import IdempotencyClaim
from ..upstream.errors import UpstreamRetError
from .callers import Payer

MAX_KEY_LENGTH = 255


@dataclasses.dataclass(slots=True)
class SpendMark:
    """Whether a submit spent (or may have spent) credits: set once its generate was accepted, or sent with an
    unknown fate. Created per request by the idempotency wrapper and passed down to the one generate call.
    `payer` is set by a pooled submit for the account it is trying (None: a raw token pays for itself)."""

    spent: bool = False
    payer: Payer | None = None

    @contextmanager
    def attempt(self) -> Iterator[None]:
        """Wrap the one upstream generate call of a submit.

        Marks spent when the generate returns, or when it fails in a way that leaves its delivery unknown
        (timeout, reset, cancellation). A definite upstream refusal (a `ret` error: no credits, expired
        session, content refused) spends nothing, so the key may be retried.
        """
        try:
            yield
        except UpstreamRetError:
            raise
        except BaseException:
            self.spent = True
            raise
        self.spent = True


def valid_key(key: str) -> bool:
    """1 to 255 visible ASCII characters."""
    return 0 < len(key) <= MAX_KEY_LENGTH and all(33 <= ord(c) <= 126 for c in key)


def request_hash(method: str, path: str, canonical: Any) -> str:
    """SHA-256 of the method, the path and the canonical body (JSON with sorted keys).

    Spooled upload parts (objects with a `download` carrying `size` and `crc32`) count by file name,
    size and CRC-32, so a retried multipart upload with a new boundary still matches.
    """
    body = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_canonical_part)
    digest = hashlib.sha256()
    for piece in (method.upper(), path, body):
        digest.update(piece.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _canonical_part(obj: Any) -> Any:
    download = getattr(obj, "download", None)
    if download is not None and hasattr(download, "crc32"):
        return {"filename": getattr(obj, "filename", ""), "size": download.size, "crc32": download.crc32}
    if isinstance(obj, bytes):
        return {"sha256": hashlib.sha256(obj).hexdigest()}
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    return repr(obj)


class IdempotencyKeys:
    """Claims, completions and abandons of idempotency keys, with the configured lifetime and lease."""

    def __init__(self, store: IdempotencyStore, config: StoreConfig, clock: Clock) -> None:
        self._store = store
        self.ttl = config.idempotency_hours * 3600
        self.lease = config.idempotency_lease_minutes * 60
        self.clock = clock

    async def begin(self, account_fp: str, key: str, digest: str) -> IdempotencyClaim:
        """Claim the key (`IdempotencyStore.claim_idempotency_key`); an in-progress claim past the lease is void."""
        return await self._store.claim_idempotency_key(account_fp, key, digest, ttl=self.ttl, lease=self.lease)

    async def complete(self, account_fp: str, key: str, status: int, body: bytes) -> None:
        """Store the first answer so repeats replay it."""
        await self._store.complete_idempotency_key(account_fp, key, status=status, body=body)

    async def abandon(self, account_fp: str, key: str) -> None:
        """Release the key of a request that spent nothing, so a retry runs anew."""
        await self._store.release_idempotency_key(account_fp, key)
