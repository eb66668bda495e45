"""Asking the upstream about history ids for queries, with concurrent lookups of one account coalesced.

While one `get_history_by_ids` call of an account is in flight, every id asked for meanwhile joins the
account's next call, which starts when the current one ends: N concurrent queries of one account cost at
most two upstream calls, not N.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..upstream.client import JimengClient
from ..upstream.payloads import history_image_info
from ..upstream.tokens import Account


@dataclass
class _Batch:
    """The ids of one upcoming call and the future of its answer."""

    future: asyncio.Future[dict[str, Any]]
    ids: set[str] = field(default_factory=set)
    image: bool = False


@dataclass
class _Lane:
    """One account: its call in flight (the lock) and the batch that forms meanwhile."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    forming: _Batch | None = None


class HistoryLookup:
    """`get(account, ids)` -> the upstream records of those ids (ids the upstream does not show are absent).

    Each call runs as a task owned by this object (a caller that goes away does not cancel a call others
    wait for); `close()` cancels and awaits them.
    """

    def __init__(self, client: JimengClient) -> None:
        self.client = client
        self._lanes: dict[str, _Lane] = {}
        self._calls: set[asyncio.Task[None]] = set()

    async def get(self, account: Account, ids: Sequence[str], *, image: bool) -> dict[str, Any]:
        """The records of `ids` from one call that starts after this request arrived (shared with concurrent
        requests of the same account). Raises the client's UpstreamError."""
        lane = self._lanes.setdefault(account.fingerprint, _Lane())
        batch = lane.forming
        if batch is None:
            batch = lane.forming = _Batch(asyncio.get_running_loop().create_future())
            call = asyncio.create_task(self._call(account, lane, batch), name="jimeng-history-lookup")
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)
        batch.ids.update(ids)
        batch.image = batch.image or image
        answer = await asyncio.shield(batch.future)
        return {hid: answer[hid] for hid in ids if hid in answer}

    def waiting(self, account: Account) -> int:
        """How many ids wait for the account's next call (metrics and tests)."""
        lane = self._lanes.get(account.fingerprint)
        return len(lane.forming.ids) if lane is not None and lane.forming is not None else 0

    async def close(self) -> None:
        """Cancel the calls in flight and wait for them."""
        calls = list(self._calls)
        for call in calls:
            call.cancel()
        for call in calls:
            with contextlib.suppress(asyncio.CancelledError):
                await call

    async def _call(self, account: Account, lane: _Lane, batch: _Batch) -> None:
        try:
            async with lane.lock:  # the account's previous call ends first; ids keep joining `batch`
                if lane.forming is batch:
                    lane.forming = None
                image_info = history_image_info() if batch.image else None
                answer = await self.client.get_history(account, sorted(batch.ids), image_info=image_info)
        except Exception as exc:
            batch.future.set_exception(exc)
            batch.future.exception()  # mark it retrieved: the waiters, if any, re-raise it
            return
        except BaseException:
            batch.future.cancel()
            raise
        finally:
            if lane.forming is batch:
                lane.forming = None
        batch.future.set_result(answer)
