"""`concurrency.GroupCommit`: concurrent submits share flush calls (in submit order, at most `max_items` each), a
failed flush reaches exactly its batch's submitters, a cancelled submitter's item is still stored, and one flushing
task serves every waiting item (none per item) and is gone once they are settled."""

from __future__ import annotations

import asyncio

import pytest

from jimeng_server.concurrency import GroupCommit


class Store:
    """A flush target whose calls are held until released (`gate`), recording each call's items."""

    def __init__(self, *, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.stored: list[str] = []
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.fail_on = fail_on

    async def flush(self, items: list[str]) -> None:
        self.calls.append(list(items))
        self.entered.set()
        await self.gate.wait()
        if self.fail_on in items:
            raise OSError(f"disk full while writing {self.fail_on}")
        self.stored.extend(items)


async def test_submits_during_a_flush_share_the_next_call_in_order() -> None:
    store = Store()
    batch: GroupCommit[str] = GroupCommit(store.flush, max_items=3)
    first = asyncio.ensure_future(batch.submit("a"))
    await store.entered.wait()  # "a" is being written: the rest waits for the next calls
    rest = [asyncio.ensure_future(batch.submit(x)) for x in "bcdef"]
    await asyncio.sleep(0)
    store.gate.set()
    await asyncio.gather(first, *rest)
    assert store.calls == [["a"], ["b", "c", "d"], ["e", "f"]]
    assert store.stored == list("abcdef")


async def test_a_failed_flush_reaches_its_batch_and_the_next_batch_is_stored() -> None:
    store = Store(fail_on="c")
    batch: GroupCommit[str] = GroupCommit(store.flush, max_items=2)
    first = asyncio.ensure_future(batch.submit("a"))
    await store.entered.wait()
    rest = {x: asyncio.ensure_future(batch.submit(x)) for x in "bcd"}
    await asyncio.sleep(0)
    store.gate.set()
    await first
    for x in "bc":
        with pytest.raises(OSError, match="disk full while writing c"):
            await rest[x]
    await rest["d"]
    assert store.calls == [["a"], ["b", "c"], ["d"]]
    assert store.stored == ["a", "d"]


async def test_a_cancelled_submitter_still_has_its_item_stored() -> None:
    store = Store()
    batch: GroupCommit[str] = GroupCommit(store.flush)
    waiter = asyncio.ensure_future(batch.submit("a"))
    await store.entered.wait()
    waiter.cancel()
    await asyncio.sleep(0)
    assert not waiter.done()  # it waits for its item's write
    store.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert store.stored == ["a"]


async def test_one_flushing_task_serves_every_waiting_item_and_ends_with_them() -> None:
    store = Store()
    batch: GroupCommit[str] = GroupCommit(store.flush)
    before = len(asyncio.all_tasks())
    submits = [asyncio.ensure_future(batch.submit(str(n))) for n in range(100)]
    await store.entered.wait()
    assert len(asyncio.all_tasks()) == before + 100 + 1  # the submitters and one flusher
    store.gate.set()
    await asyncio.gather(*submits)
    assert len(asyncio.all_tasks()) == before
    assert store.calls == [[str(n) for n in range(100)]]
    await batch.submit("again")  # a later submit starts a flusher anew
    assert store.calls[-1] == ["again"] and len(asyncio.all_tasks()) == before
