"""Asking the upstream about history ids for queries, with concurrent lookups of one account coalesced.

While one `get_history_by_ids` call of an account is in flight, every id asked for meanwhile joins the
account's next call, which starts when the current one ends: N concurrent queries of one account cost at
most two upstream calls, not N.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..jobs import Job, Jobs
from ..upstream.client import JimengClient
from ..upstream.payloads import history_image_info
from ..upstream.tokens import Account


@dataclass
class _Batch:
    """The ids of one upcoming call and the call (a shielded job) that answers them."""

    call: Job[dict[str, Any]] | None = None
    ids: set[str] = field(default_factory=set)
    image: bool = False


@dataclass
class _Lane:
    """One account: its call in flight (the lock) and the batch that forms meanwhile."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    forming: _Batch | None = None


class HistoryLookup:
    """`get(account, ids)` -> the upstream records of those ids (ids the upstream does not show are absent).

    Each call runs as a shielded job of `jobs` (a caller that goes away does not cancel a call others wait for; a
    call that fails with nobody waiting is logged there); `close()` cancels and awaits them.
    """

    def __init__(self, client: JimengClient, *, jobs: Jobs | None = None) -> None:
        self.client = client
        self._lanes: dict[str, _Lane] = {}
        self._jobs = jobs or Jobs("history-lookup")

    async def get(self, account: Account, ids: Sequence[str], *, image: bool) -> dict[str, Any]:
        """The records of `ids` from one call that starts after this request arrived (shared with concurrent
        requests of the same account). Raises the client's UpstreamError."""
        lane = self._lanes.setdefault(account.fingerprint, _Lane())
        batch = lane.forming
        if batch is None:
            batch = lane.forming = _Batch()
            batch.call = self._jobs.shield(self._call(account, lane, batch), name="jimeng-history-lookup")
        batch.ids.update(ids)
        batch.image = batch.image or image
        assert batch.call is not None
        answer = await batch.call
        return {hid: answer[hid] for hid in ids if hid in answer}

    def waiting(self, account: Account) -> int:
        """How many ids wait for the account's next call (metrics and tests)."""
        lane = self._lanes.get(account.fingerprint)
        return len(lane.forming.ids) if lane is not None and lane.forming is not None else 0

    async def close(self) -> None:
        """Cancel the calls in flight and wait for them."""
        await self._jobs.stop(0.0)

    async def _call(self, account: Account, lane: _Lane, batch: _Batch) -> dict[str, Any]:
        try:
            async with lane.lock:  # the account's previous call ends first; ids keep joining `batch`
                if lane.forming is batch:
                    lane.forming = None
                image_info = history_image_info() if batch.image else None
                return await self.client.get_history(account, sorted(batch.ids), image_info=image_info)
        finally:
            if lane.forming is batch:
                lane.forming = None
