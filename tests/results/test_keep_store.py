"""Keep jobs in the store (issue 21), on SQLite and PostgreSQL: added once per result, claimed under a lease (a
claim that was never finished is claimed again after its lease), retried or given up, finished, the owners of a
kept file, held webhook events woken, and everything dropped with its task."""

from __future__ import annotations

import asyncio

from webhook_support import OWNER_FP, done_outcome, make_task

from jimeng_server.clock import ManualClock
from jimeng_server.services.settlement import TaskSettler
from jimeng_server.store.base import Store
from jimeng_server.store.keeping import KeepState

URLS = ["https://p3-sign.byteimg.com/a.png", "https://p3-sign.byteimg.com/b.png"]


async def test_jobs_are_added_once_and_only_for_stored_tasks(store: Store, clock: ManualClock) -> None:
    await store.insert(make_task("h1", None, created_at=clock.time()))
    await store.add_keep_jobs({"h1": URLS}, now=clock.time())
    await store.add_keep_jobs({"h1": ["https://other/x.png"]}, now=clock.time())  # position 0 exists: unchanged
    await store.add_keep_jobs({"ghost": URLS}, now=clock.time())
    jobs = await store.keep_jobs_of(["h1", "ghost"])
    assert list(jobs) == ["h1"]
    assert [(j.position, j.url, j.state, j.attempts) for j in jobs["h1"]] == [
        (0, URLS[0], KeepState.PENDING, 0),
        (1, URLS[1], KeepState.PENDING, 0),
    ]


async def test_claim_lease_retry_give_up_and_finish(store: Store, clock: ManualClock) -> None:
    await store.insert(make_task("h1", None, created_at=clock.time()))
    await store.add_keep_jobs({"h1": URLS}, now=clock.time())
    first = await store.claim_keep_jobs(now=clock.time(), lease_seconds=60, limit=10)
    assert [(j.position, j.state, j.attempts) for j in first] == [(0, KeepState.KEEPING, 1), (1, KeepState.KEEPING, 1)]
    assert await store.claim_keep_jobs(now=clock.time(), lease_seconds=60, limit=10) == []  # leased
    assert await store.next_keep_due(now=clock.time()) == clock.time() + 60
    await store.retry_keep_job("h1", 0, error="HTTP 503", next_attempt_at=clock.time() + 5, now=clock.time())
    await store.finish_keep_job("h1", 1, file_id="ab" * 32, size=10, content_type="image/png", now=clock.time())
    assert await store.next_keep_due(now=clock.time()) == clock.time() + 5
    await clock.advance(5)
    (again,) = await store.claim_keep_jobs(now=clock.time(), lease_seconds=60, limit=10)
    assert (again.position, again.attempts, again.error) == (0, 2, "HTTP 503")
    # The keeper died: after the lease the job is claimed again.
    await clock.advance(61)
    (reclaimed,) = await store.claim_keep_jobs(now=clock.time(), lease_seconds=60, limit=10)
    assert (reclaimed.position, reclaimed.attempts) == (0, 3)
    await store.retry_keep_job("h1", 0, error="gave up", next_attempt_at=None, now=clock.time())
    jobs = (await store.keep_jobs_of(["h1"]))["h1"]
    assert [(j.state, j.file_id, j.size, j.content_type) for j in jobs] == [
        (KeepState.FAILED, None, None, None),
        (KeepState.KEPT, "ab" * 32, 10, "image/png"),
    ]
    assert await store.next_keep_due(now=clock.time()) is None
    assert await store.kept_file_owners("ab" * 32) == {OWNER_FP}
    assert await store.kept_file_owners("cd" * 32) == frozenset()


async def test_concurrent_claims_never_share_a_job(store: Store, clock: ManualClock) -> None:
    for n in range(10):
        await store.insert(make_task(f"h{n}", None, created_at=clock.time()))
        await store.add_keep_jobs({f"h{n}": URLS}, now=clock.time())
    claims = await asyncio.gather(
        *(store.claim_keep_jobs(now=clock.time(), lease_seconds=60, limit=3) for _ in range(8))
    )
    keys = [(j.history_id, j.position) for claim in claims for j in claim]
    assert len(keys) == len(set(keys)) == 20


async def test_held_events_are_woken_and_jobs_go_with_their_task(store: Store, clock: ManualClock) -> None:
    await store.insert(make_task("h1", "https://hooks.example/x", created_at=clock.time()))
    await TaskSettler(store, clock).settle([done_outcome("h1", URLS)])
    await store.add_keep_jobs({"h1": URLS}, now=clock.time())
    (event,) = await store.claim_due_events(now=clock.time(), limit=5, lease_until=clock.time() + 60)
    await store.unclaim_events([event.event_id], now=clock.time() + 600)  # the sender held it back
    assert await store.wake_held_events("h1", now=clock.time() + 1) == 1
    (due,) = await store.claim_due_events(now=clock.time() + 1, limit=5, lease_until=clock.time() + 60)
    assert due.event_id == event.event_id
    # A task without an active event is purged with its jobs.
    await store.insert(make_task("h2", None, created_at=clock.time()))
    await TaskSettler(store, clock).settle([done_outcome("h2", URLS)])
    await store.add_keep_jobs({"h2": URLS}, now=clock.time())
    await clock.advance(7200)
    assert await store.purge_finished(older_than=60) == 1
    assert list(await store.keep_jobs_of(["h1", "h2"])) == ["h1"]


async def test_kept_files_oldest_first_and_expiring_them(store: Store, clock: ManualClock) -> None:
    for hid in ("h1", "h2"):
        await store.insert(make_task(hid, None, created_at=clock.time()))
        await store.add_keep_jobs({hid: URLS}, now=clock.time())
    await store.claim_keep_jobs(now=clock.time(), lease_seconds=60, limit=10)
    await store.finish_keep_job("h1", 0, file_id="aa" * 32 + ".png", size=7, content_type="image/png", now=1.0)
    await store.finish_keep_job("h2", 0, file_id="aa" * 32 + ".png", size=7, content_type="image/png", now=3.0)
    await store.finish_keep_job("h1", 1, file_id="bb" * 32 + ".png", size=9, content_type="image/png", now=2.0)
    files = await store.kept_files()
    assert [(f.file_id[:2], f.size, f.last_kept_at) for f in files] == [("bb", 9, 2.0), ("aa", 7, 3.0)]
    assert await store.expire_kept_files(["aa" * 32 + ".png"], now=4.0) == ["h1", "h2"]
    assert [f.file_id[:2] for f in await store.kept_files()] == ["bb"]
    jobs = await store.keep_jobs_of(["h1", "h2"])
    assert [j.state for j in jobs["h1"]] == [KeepState.EXPIRED, KeepState.KEPT]
    assert await store.kept_file_owners("aa" * 32 + ".png") == frozenset()
