"""The one owner of background jobs (jimeng_server/jobs.py): its contract on its own (spawn, shielded jobs, scopes,
stop and close with a grace, failures logged once), then the app: after its cleanup no task the server started is
still pending, with the watcher, the webhook sender and the keeper having run over real HTTP.

Deterministic: jobs wait on events the test sets; the loop is only yielded (`until`), never slept on."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from support import CN_TOKEN, bearer, json_of, until
from webhook_support import SECRET, Receiver

import jimeng_server
from jimeng_server.api.appkeys import JOBS
from jimeng_server.app import create_app
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config, ResultsConfig, WebhookConfig
from jimeng_server.jobs import Jobs, JobsClosed
from jimeng_server.simulator import Simulator

Client = TestClient[Any, Any]


def failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "jimeng_server.jobs" and r.levelno >= logging.ERROR]


async def forever() -> None:
    """A job that never ends by itself (a loop waiting for work that never comes)."""
    await asyncio.Event().wait()


async def yielded(times: int = 20) -> None:
    """Let the loop run the jobs' next steps (no time passes)."""
    for _ in range(times):
        await asyncio.sleep(0)


# ---------------------------------------------------------------------------------------------------------------
# The owner's contract


async def test_spawned_jobs_are_counted_and_stop_cancels_them_and_the_owner_stays_usable() -> None:
    jobs = Jobs("t")
    started, ended = asyncio.Event(), asyncio.Event()

    async def loop() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # a loop that never ends by itself
        finally:
            ended.set()

    task = jobs.spawn(loop(), name="t-loop")
    assert task.get_name() == "t-loop" and jobs.live == 1 and jobs.tasks() == [task]
    await started.wait()
    await jobs.stop()
    assert task.cancelled() and ended.is_set() and jobs.live == 0
    # A component may start again after its stop: the owner still takes jobs.
    again = jobs.spawn(asyncio.sleep(0, result="again"), name="t-again")
    assert await again == "again" and jobs.live == 0


async def test_a_failed_spawned_job_is_logged_once_with_its_name(caplog: pytest.LogCaptureFixture) -> None:
    jobs = Jobs("owner")

    async def broken() -> None:
        raise ValueError("boom")

    task = jobs.spawn(broken(), name="t-broken")
    await asyncio.wait([task])
    await yielded()
    del task
    gc.collect()  # an exception nobody retrieved would be reported now by asyncio as well
    (record,) = failures(caplog)
    assert "t-broken" in record.getMessage() and "owner" in record.getMessage() and "boom" in record.getMessage()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert jobs.live == 0


async def test_a_shielded_job_outlives_a_cancelled_caller_and_others_get_its_result() -> None:
    jobs = Jobs("t")
    release = asyncio.Event()
    steps: list[str] = []

    async def work() -> str:
        await release.wait()
        steps.append("done")
        return "answer"

    job = jobs.shield(work(), name="t-work")

    async def caller() -> str:
        return await job

    first, second = asyncio.ensure_future(caller()), asyncio.ensure_future(caller())
    await yielded()
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert first.cancelled() and not job.done() and jobs.live == 1
    release.set()
    assert await second == "answer" and steps == ["done"]
    assert await job == "answer"  # awaited again after it ended: the same result
    assert jobs.live == 0


async def test_any_awaitable_can_be_a_job() -> None:
    jobs = Jobs("t")
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    job = jobs.shield(answer, name="t-future")  # e.g. a hook typed as returning an Awaitable
    assert jobs.live == 1
    answer.set_result("ok")
    assert await job == "ok" and job.task.get_name() == "t-future"
    await yielded()
    assert jobs.live == 0


async def test_stop_waits_for_shielded_work_without_a_grace_limit() -> None:
    jobs = Jobs("t")
    release, loop_ended = asyncio.Event(), asyncio.Event()
    saved: list[str] = []

    async def loop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            loop_ended.set()

    async def save() -> None:
        await release.wait()
        saved.append("row")

    jobs.spawn(loop(), name="t-loop")
    job = jobs.shield(save(), name="t-save")
    stopping = asyncio.ensure_future(jobs.stop())
    await until(loop_ended.is_set, what="the spawned loop cancelled first")
    await yielded()
    assert not stopping.done() and not job.done()  # the save is waited for
    release.set()
    await stopping
    assert saved == ["row"] and job.task.result() is None and jobs.live == 0


async def test_close_with_no_grace_cancels_shielded_work_and_refuses_new_jobs() -> None:
    jobs = Jobs("t")
    job = jobs.shield(forever(), name="t-hung")
    waiter = asyncio.ensure_future(_await(job))
    await yielded()
    await jobs.close(0.0)
    assert job.task.cancelled() and jobs.live == 0 and jobs.closed
    with pytest.raises(asyncio.CancelledError):
        await waiter
    coro = asyncio.sleep(0)
    with pytest.raises(JobsClosed, match="t-late"):
        jobs.spawn(coro, name="t-late")
    with pytest.raises(JobsClosed):
        jobs.shield(asyncio.sleep(0), name="t-late-too")
    # The refused coroutines were closed, never left un-awaited (filterwarnings = error would fail on that).
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    gc.collect()


async def _await(job: Awaitable[Any]) -> Any:
    return await job


async def test_a_grace_lets_shielded_work_finish_in_time() -> None:
    jobs = Jobs("t")
    release = asyncio.Event()

    async def send() -> str:
        await release.wait()
        return "sent"

    job = jobs.shield(send(), name="t-send")
    stopping = asyncio.ensure_future(jobs.stop(3600.0))
    await yielded()
    assert not stopping.done()
    release.set()
    await stopping
    assert job.task.result() == "sent"


async def test_a_shielded_failure_reaches_its_caller_or_else_the_log(caplog: pytest.LogCaptureFixture) -> None:
    jobs = Jobs("t")

    async def broken(what: str) -> None:
        await asyncio.sleep(0)
        raise LookupError(what)

    awaited = jobs.shield(broken("seen"), name="t-awaited")
    with pytest.raises(LookupError, match="seen"):
        await awaited
    assert failures(caplog) == []  # its caller got it: not logged as well

    alone = jobs.shield(broken("unseen"), name="t-alone")  # nobody waits for it
    await asyncio.wait([alone.task])
    await yielded()
    (record,) = failures(caplog)
    assert "t-alone" in record.getMessage() and "unseen" in record.getMessage()


async def test_drain_waits_for_shielded_work_started_meanwhile_and_not_for_loops() -> None:
    jobs = Jobs("t")
    order: list[str] = []
    gate = asyncio.Event()

    async def second() -> None:
        await gate.wait()
        order.append("second")

    async def first() -> None:
        jobs.shield(second(), name="t-second")
        order.append("first")

    jobs.spawn(forever(), name="t-loop")
    jobs.shield(first(), name="t-first")
    draining = asyncio.ensure_future(jobs.drain())
    await until(lambda: order == ["first"], what="the first save")
    await yielded()
    assert not draining.done()
    gate.set()
    await draining
    assert order == ["first", "second"] and jobs.live == 1  # the loop goes on
    await jobs.stop()
    assert jobs.live == 0


async def test_stop_cuts_short_a_job_started_by_a_cancelled_job() -> None:
    jobs = Jobs("t")
    cleanup: list[asyncio.Task[None]] = []

    async def loop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleanup.append(jobs.spawn(forever(), name="t-cleanup"))

    jobs.spawn(loop(), name="t-loop")
    await yielded()
    await jobs.stop()
    assert len(cleanup) == 1 and cleanup[0].cancelled() and jobs.live == 0


async def test_scopes_count_in_their_parent_and_the_parent_close_reaches_them() -> None:
    root = Jobs("app")
    watcher, sender = root.scope("watcher"), root.scope("sender")
    assert watcher.name == "app/watcher"
    poll = watcher.spawn(forever(), name="t-poll")
    send = sender.spawn(forever(), name="t-send")
    assert root.live == 2 and sorted(t.get_name() for t in root.tasks()) == ["t-poll", "t-send"]
    await watcher.stop()  # one component's stop leaves the others alone
    assert poll.cancelled() and not send.done() and root.live == 1
    await root.close(0.0)
    assert send.cancelled() and root.live == 0 and watcher.closed and sender.closed
    with pytest.raises(JobsClosed):
        watcher.spawn(asyncio.sleep(0), name="t-late")
    with pytest.raises(JobsClosed):
        root.scope("late")


# ---------------------------------------------------------------------------------------------------------------
# The app: nothing the server started outlives its cleanup


def started_by_server(task: asyncio.Task[Any]) -> bool:
    """True for a task whose coroutine is the server's own code (not the simulator's, not aiohttp's server)."""
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None)
    filename = code.co_filename if code is not None else ""
    package = Path(jimeng_server.__file__).parent
    return filename.startswith(str(package)) and not filename.startswith(str(package / "simulator"))


@pytest.mark.wall_clock  # kept files' signed links are checked against the wall clock
async def test_after_cleanup_no_task_the_server_started_is_pending(
    aiohttp_client: Callable[..., Awaitable[Client]],
    config: Config,
    clock: ManualClock,
    sim: Simulator,
    receiver: tuple[Receiver, TestServer],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec, server = receiver
    cfg = dataclasses.replace(
        config,
        webhooks=WebhookConfig(secret=SECRET, jitter=0.0),
        results=ResultsConfig(keep="local", path=str(tmp_path / "kept"), link_secret="test-link-secret"),
    )
    app: web.Application = create_app(cfg, clock=clock, background=True, identity_salt=b"test-salt")
    client = await aiohttp_client(app)
    jobs = app[JOBS]
    assert jobs.live > 0  # the loops run: watcher, sender, keeper, retention
    hook = str(server.make_url("/hooks/done"))
    resp = await client.post(
        "/v1/async/images/generations", json={"prompt": "a cat", "callback_url": hook}, headers=bearer(CN_TOKEN)
    )
    body = await json_of(resp)
    assert resp.status == 200, body
    hid = body["history_id"]

    def kept() -> bool:
        return any(e.vhost == "cdn" and f"/{hid}/" in e.path and e.status == 200 for e in sim.journal)

    # The background loops alone do the work; the test moves virtual time a second per 50 turns of the loop (at
    # most 10 virtual minutes: no deadline of the task's is reached) until the receiver got the webhook.
    loop = asyncio.get_running_loop()
    end, start = loop.time() + 60.0, clock.time()
    turns = 0
    while not rec.on("/hooks/done"):
        assert loop.time() < end, "the webhook did not arrive"
        turns += 1
        if turns % 50 == 0 and clock.time() - start < 600:
            await clock.advance(1.0)
        await asyncio.sleep(0)
    (got,) = rec.on("/hooks/done")  # the watcher settled it, the keeper kept its results, the sender sent it
    event = json.loads(got.body)
    assert event["type"] == "task.succeeded" and event["data"]["history_id"] == hid, event
    assert kept() and all(r["kept"] for r in event["data"]["results"]), event  # held until the keeper kept them

    await client.close()  # the app's cleanup
    await yielded()
    left = [t for t in asyncio.all_tasks() if not t.done() and started_by_server(t)]
    assert left == [], [t.get_name() for t in left]
    assert jobs.live == 0 and jobs.closed
    assert clock.sleepers == 0  # no loop is left sleeping on the clock
    # Every component ended its own jobs: the owner, closed last, found nothing left.
    assert not [r for r in caplog.records if "still running at shutdown" in r.getMessage()]
