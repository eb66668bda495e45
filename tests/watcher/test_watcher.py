"""The watcher with the real client against the simulator, on a manual clock: timing, completion rules, errors,
batching and the background loop. Facts are read from the simulator's journal."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, CN_TOKEN_2, AppFactory, run_tick
from watcher_support import HISTORY, submit

from jimeng_server.api.appkeys import WATCHER
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config, KindSchedule, WatcherConfig
from jimeng_server.services.generation import Submission
from jimeng_server.simulator import Fault, FaultKind, Script, Simulator, Step
from jimeng_server.tasks.records import Outcome, Reason, TaskKind, TaskStatus
from jimeng_server.upstream.codes import StatusPolicy
from jimeng_server.upstream.tokens import parse_token
from jimeng_server.watcher import Watcher


def watch(client: TestClient[Any, Any], sub: Submission) -> asyncio.Future[Outcome]:
    return client.app[WATCHER].watch(sub.account, sub.history_id, sub.kind, submitted_at=sub.submitted_at)


async def tick(watcher: Watcher, clock: ManualClock, dt: float = 0.0) -> int:
    """Move time by `dt`, then run one watcher tick to completion (burst mode: `support.run_tick`)."""
    if dt:
        await clock.advance(dt)
    return await run_tick(watcher, clock)


async def run_for(watcher: Watcher, clock: ManualClock, seconds: float, step: float = 0.1) -> None:
    """Tick every `step` seconds of virtual time for `seconds` (absolute targets: no float drift)."""
    start = clock.time()
    n = round(seconds / step)
    for k in range(1, n + 1):
        await clock.advance(start + k * step - clock.time())
        await tick(watcher, clock)


def poll_times(sim: Simulator, start: float) -> list[float]:
    return [round(e.time - start, 3) for e in sim.calls(HISTORY)]


async def test_first_poll_not_before_first_poll(
    client: TestClient[Any, Any], sim: Simulator, clock: ManualClock
) -> None:
    watcher = client.app[WATCHER]
    sub = await submit(client)
    fut = watch(client, sub)
    first = watcher.schedule_for(TaskKind.IMAGE).first_poll
    assert first == 5.0
    assert await tick(watcher, clock) == 0
    await run_for(watcher, clock, first - 0.1)
    assert sim.calls(HISTORY) == [], "polled before first_poll"
    await run_for(watcher, clock, 0.1)
    (call,) = sim.calls(HISTORY)
    assert call.time - sub.submitted_at == pytest.approx(first)
    assert call.body["history_ids"] == [sub.history_id]
    assert "image_info" in call.body
    outcome = fut.result()
    assert outcome.status is TaskStatus.DONE and outcome.reason is Reason.DONE
    assert len(outcome.urls) == 4


async def test_status_42_and_45_stretch_the_interval(
    client: TestClient[Any, Any], sim: Simulator, clock: ManualClock
) -> None:
    watcher = client.app[WATCHER]
    sim.settings.image_step_seconds = 20.0
    sim.next_script = Script([Step(20, 0), Step(42, 2), Step(45, 3), Step(10, 4)])
    sub = await submit(client)
    fut = watch(client, sub)
    await run_for(watcher, clock, 70)
    assert fut.done() and fut.result().status is TaskStatus.DONE
    times = poll_times(sim, sub.submitted_at)
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(times)]
    # status 20 at 0-20 s, 42 at 20-40 s, 45 at 40-60 s, 10 after; base interval 4 s.
    assert times[0] == pytest.approx(5.0)
    assert gaps == pytest.approx([4.0] * 4 + [4.8] * 4 + [6.0] * 4, abs=0.15)
    assert times[-1] == pytest.approx(64.2, abs=0.2)


async def test_past_the_deadline_the_watch_slows_down_then_settles_as_timeout(
    make_client: AppFactory, config: Config, sim: Simulator, clock: ManualClock
) -> None:
    """The kind's deadline ends a sync wait, not the task: polls go on, doubling their interval up to
    `slow_interval`, and the task is settled as failed (TIMEOUT) only at the `settle_after` horizon."""
    schedule = KindSchedule(first_poll=5.0, interval=4.0, deadline=60.0)
    client = await make_client(
        watcher=dataclasses.replace(config.watcher, image=schedule, slow_interval=32.0, settle_after=300.0)
    )
    watcher = client.app[WATCHER]
    sub = await submit(client, "nothing [sim:stuck0]")
    fut = watch(client, sub)
    await run_for(watcher, clock, 299.5, step=0.5)
    assert not fut.done() and watcher.is_watching(sub.history_id)
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(poll_times(sim, sub.submitted_at))]
    late = [g for g in gaps if g > 4.0]
    assert gaps[:13] == pytest.approx([4.0] * 13, abs=0.6)
    assert late[:3] == pytest.approx([8.0, 16.0, 32.0], abs=0.6) and set(late[3:]) <= {32.0, 32.5}
    await run_for(watcher, clock, 1.0, step=0.5)
    outcome = fut.result()
    assert (outcome.status, outcome.reason) == (TaskStatus.FAILED, Reason.TIMEOUT)
    assert "300" in outcome.detail
    assert outcome.record is not None and outcome.record.item_count == 0
    polls = len(sim.calls(HISTORY))
    await run_for(watcher, clock, 100, step=1.0)
    assert len(sim.calls(HISTORY)) == polls, "polled after the task was settled"
    assert watcher.pending == 0


async def test_unchanged_items_do_not_end_the_watch_early(
    make_client: AppFactory, config: Config, sim: Simulator, clock: ManualClock
) -> None:
    schedule = KindSchedule(first_poll=5.0, interval=4.0, deadline=60.0)
    client = await make_client(watcher=dataclasses.replace(config.watcher, image=schedule, settle_after=60.0))
    watcher = client.app[WATCHER]
    sub = await submit(client, "one forever [sim:stuck]")
    fut = watch(client, sub)
    await run_for(watcher, clock, 59.5, step=0.5)
    # Many unchanged polls with an item do NOT end the wait early (unlike the reference's 5 stable rounds).
    assert len(sim.calls(HISTORY)) > 5 and not fut.done()
    await run_for(watcher, clock, 1.0, step=0.5)
    outcome = fut.result()
    assert (outcome.status, outcome.reason) == (TaskStatus.FAILED, Reason.TIMEOUT)
    assert outcome.record is not None and outcome.record.item_count == 1


async def test_not_visible_grace_then_visible(client: TestClient[Any, Any], sim: Simulator, clock: ManualClock) -> None:
    watcher = client.app[WATCHER]
    sub = await submit(client, "shy [sim:hidden=3]")
    fut = watch(client, sub)
    await run_for(watcher, clock, 30, step=1.0)
    outcome = fut.result()
    assert outcome.status is TaskStatus.DONE
    assert len(sim.calls(HISTORY)) == 4  # three misses, then the record


async def test_never_visible_is_not_found_after_not_visible_polls(
    client: TestClient[Any, Any], sim: Simulator, clock: ManualClock
) -> None:
    watcher = client.app[WATCHER]
    limit = watcher.config.not_visible_polls
    sub = await submit(client, "ghost [sim:hidden=1000]")
    fut = watch(client, sub)
    await run_for(watcher, clock, 5 + 4 * (limit - 1) + 0.5, step=0.5)
    assert len(sim.calls(HISTORY)) == limit and not fut.done()
    await run_for(watcher, clock, 4.0, step=0.5)
    outcome = fut.result()
    assert (outcome.status, outcome.reason) == (TaskStatus.FAILED, Reason.NOT_FOUND)
    assert outcome.record is None
    assert len(sim.calls(HISTORY)) == limit + 1
    await run_for(watcher, clock, 20, step=1.0)
    assert len(sim.calls(HISTORY)) == limit + 1


async def test_transient_poll_error_does_not_fail_the_task(
    make_client: AppFactory, config: Config, sim: Simulator, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client(upstream=dataclasses.replace(config.upstream, read_retries=0))
    watcher = client.app[WATCHER]
    sim.inject(HISTORY, Fault(FaultKind.HTTP_500), times=2)
    sub = await submit(client)
    fut = watch(client, sub)
    await run_for(watcher, clock, 20, step=0.5)
    outcome = fut.result()
    assert outcome.status is TaskStatus.DONE and len(outcome.urls) == 4
    statuses = [e.status for e in sim.calls(HISTORY)]
    assert statuses == [500, 500, 200]
    # The failure is logged with the masked account only.
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "poll" in r.getMessage()]
    assert len(warnings) == 2
    assert all(sub.account.masked in w for w in warnings)


async def test_transient_errors_with_client_retries(
    client: TestClient[Any, Any], sim: Simulator, clock: ManualClock
) -> None:
    watcher = client.app[WATCHER]
    sim.inject(HISTORY, Fault(FaultKind.HTTP_500), times=2)  # read_retries=2 absorbs both inside one poll
    sub = await submit(client)
    fut = watch(client, sub)
    await run_for(watcher, clock, 6, step=0.5)
    assert fut.result().status is TaskStatus.DONE
    assert [e.status for e in sim.calls(HISTORY)] == [500, 500, 200]


async def test_errors_until_the_horizon_settle_as_timeout_with_last_error(
    make_client: AppFactory, config: Config, sim: Simulator, clock: ManualClock
) -> None:
    schedule = KindSchedule(first_poll=5.0, interval=4.0, deadline=30.0)
    client = await make_client(
        upstream=dataclasses.replace(config.upstream, read_retries=0),
        watcher=dataclasses.replace(config.watcher, image=schedule, settle_after=30.0),
    )
    watcher = client.app[WATCHER]
    sim.inject(HISTORY, Fault(FaultKind.RET, ret="1019", errmsg="shark not pass"), times=100)
    sub = await submit(client)
    fut = watch(client, sub)
    await run_for(watcher, clock, 31, step=0.5)
    outcome = fut.result()
    assert outcome.reason is Reason.TIMEOUT
    assert "1019" in outcome.detail


async def test_session_refused_fails_with_session_expired(
    make_client: AppFactory, config: Config, sim: Simulator, clock: ManualClock
) -> None:
    client = await make_client(watcher=dataclasses.replace(config.watcher, session_refusal_window=20.0))
    watcher = client.app[WATCHER]
    sim.next_script = Script([Step(20, 0)])
    sub = await submit(client)
    fut = watch(client, sub)
    await run_for(watcher, clock, 5.5, step=0.5)
    assert len(sim.calls(HISTORY)) == 1 and not fut.done()
    sim.expire_session(CN_TOKEN)
    await run_for(watcher, clock, 4.0, step=0.5)
    assert not fut.done(), "failed on one refused poll"
    await run_for(watcher, clock, 40.0, step=0.5)  # refused for longer than session_refusal_window
    outcome = fut.result()
    assert (outcome.status, outcome.reason) == (TaskStatus.FAILED, Reason.SESSION_EXPIRED)
    rets = [e.ret for e in sim.calls(HISTORY)]
    assert rets[0] == "0" and set(rets[1:]) == {"1015"} and 3 <= len(rets) <= 5, rets  # backed off
    await run_for(watcher, clock, 20, step=1.0)
    assert len(sim.calls(HISTORY)) == len(rets), "polled a task of a refused session"


async def test_no_poll_after_final(client: TestClient[Any, Any], sim: Simulator, clock: ManualClock) -> None:
    watcher = client.app[WATCHER]
    sim.next_script = Script([Step(20, 0), Step(20, 2), Step(30, 2, "1001")])
    sub = await submit(client)
    fut = watch(client, sub)
    await run_for(watcher, clock, 60, step=0.5)
    outcome = fut.result()
    assert (outcome.status, outcome.reason) == (TaskStatus.FAILED, Reason.UPSTREAM_FAILED)
    assert outcome.fail_code == "1001" and len(outcome.urls) == 2
    (final,) = [e for e in sim.calls(HISTORY) if e.time - sub.submitted_at >= 2]
    assert final is sim.calls(HISTORY)[-1]
    assert len(sim.calls(HISTORY)) == 1
    assert watcher.pending == 0 and not watcher.is_watching(sub.history_id)


async def test_watching_twice_returns_the_same_future(client: TestClient[Any, Any], clock: ManualClock) -> None:
    sub = await submit(client)
    assert watch(client, sub) is watch(client, sub)
    assert client.app[WATCHER].pending == 1
    await run_for(client.app[WATCHER], clock, 6, step=1.0)
    assert client.app[WATCHER].pending == 0


async def test_background_loop_polls_and_stops_cleanly(
    client: TestClient[Any, Any], sim: Simulator, clock: ManualClock
) -> None:
    watcher = client.app[WATCHER]
    sub = await submit(client)
    fut = watch(client, sub)
    await watcher.start()
    await watcher.start()  # idempotent
    loops = [t for t in asyncio.all_tasks() if t.get_name() == "jimeng-watcher"]
    assert len(loops) == 1
    end = asyncio.get_running_loop().time() + 10.0
    while not fut.done() and asyncio.get_running_loop().time() < end:
        if clock.sleepers:
            await clock.advance(1.0)
        else:
            await asyncio.sleep(0)
    assert fut.done() and fut.result().status is TaskStatus.DONE
    assert len(sim.calls(HISTORY)) == 1
    await watcher.stop()
    assert loops[0].done()
    assert [t for t in asyncio.all_tasks() if t.get_name() == "jimeng-watcher"] == []
    assert clock.sleepers == 0
    # A stopped loop no longer ticks.
    second = await submit(client, "after stop")
    fut2 = watch(client, second)
    await clock.advance(30)
    await asyncio.sleep(0)
    assert len(sim.calls(HISTORY)) == 1 and not fut2.done()
    await watcher.stop()  # stopping twice is fine


@pytest.mark.parametrize(("polls_per_account", "ticks"), [(1, [[3], [3], [1]]), (2, [[3, 3], [1]])])
async def test_batch_size_caps_ids_per_call_and_a_backlog_gets_parallel_polls(
    make_client: AppFactory,
    config: Config,
    sim: Simulator,
    clock: ManualClock,
    polls_per_account: int,
    ticks: list[list[int]],
) -> None:
    watcher_config = dataclasses.replace(config.watcher, batch_size=3, polls_per_account=polls_per_account)
    client = await make_client(watcher=watcher_config)
    watcher = client.app[WATCHER]
    subs = [await submit(client, f"cat {i}") for i in range(7)]
    futs = [watch(client, s) for s in subs]
    await clock.advance(5.0)
    sizes = []
    for _ in ticks:
        seen = len(sim.calls(HISTORY))
        polls = await tick(watcher, clock)
        sizes.append(sorted((len(e.body["history_ids"]) for e in sim.calls(HISTORY)[seen:]), reverse=True))
        assert polls == len(sizes[-1])
    assert sizes == ticks
    assert all(f.done() and f.result().status is TaskStatus.DONE for f in futs)
    polled = [hid for e in sim.calls(HISTORY) for hid in e.body["history_ids"]]
    assert sorted(polled) == sorted(s.history_id for s in subs)  # each task polled once: no batch overlaps


async def test_one_call_per_account_per_tick(client: TestClient[Any, Any], sim: Simulator, clock: ManualClock) -> None:
    watcher = client.app[WATCHER]
    subs = [await submit(client, "a"), await submit(client, "b"), await submit(client, "c", CN_TOKEN_2)]
    futs = [watch(client, s) for s in subs]
    assert await tick(watcher, clock, 5.0) == 2
    calls = sim.calls(HISTORY)
    assert len(calls) == 2
    by_session = {e.sessionid: sorted(e.body["history_ids"]) for e in calls}
    assert by_session == {
        CN_TOKEN: sorted([subs[0].history_id, subs[1].history_id]),
        CN_TOKEN_2: [subs[2].history_id],
    }
    assert all(f.done() for f in futs)


def test_default_watcher_config_matches_the_spec() -> None:
    cfg = WatcherConfig()
    assert 5 <= cfg.image.first_poll <= 10 and 3 <= cfg.image.interval <= 5 and cfg.image.deadline == 900
    assert 10 <= cfg.video.first_poll <= 15 and 5 <= cfg.video.interval <= 10 and cfg.video.deadline == 1200


class _GateClient:
    """A stand-in upstream for one scheduling property: account A's poll hangs until released."""

    statuses = StatusPolicy()

    def __init__(self, slow_fingerprint: str) -> None:
        self.slow = slow_fingerprint
        self.release = asyncio.Event()
        self.calls: list[str] = []

    async def get_history(self, account: Any, ids: list[str], *, image_info: Any = None) -> dict[str, Any]:
        self.calls.append(account.fingerprint)
        if account.fingerprint == self.slow:
            await self.release.wait()
        return {hid: {"status": 20, "item_list": []} for hid in ids}


async def test_a_slow_account_does_not_hold_up_other_accounts(clock: ManualClock) -> None:
    slow, fast = parse_token(CN_TOKEN), parse_token(CN_TOKEN_2)
    upstream = _GateClient(slow.fingerprint)
    watcher = Watcher(upstream, WatcherConfig(), clock)  # type: ignore[arg-type]
    watcher.watch(slow, "1000000000001", TaskKind.IMAGE)
    watcher.watch(fast, "1000000000002", TaskKind.IMAGE)
    await watcher.start()
    for _ in range(30):  # 30 virtual seconds: several of the fast account's intervals
        await clock.advance(1.0)
    assert upstream.calls.count(slow.fingerprint) == 1, "one poll per account in flight at a time"
    assert upstream.calls.count(fast.fingerprint) >= 5, "the fast account kept being polled"
    await watcher.stop()  # cancels the hung poll too
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("jimeng-")] == []


class _DoneClient:
    """A stand-in upstream that answers every id as finished (status 50, success) and journals each call's ids."""

    statuses = StatusPolicy()  # the client's meanings of the disputed statuses (the defaults)

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def get_history(self, account: Any, ids: list[str], *, image_info: Any = None) -> dict[str, Any]:
        self.batches.append(list(ids))
        await asyncio.sleep(0)
        return {hid: {"status": 50, "item_list": []} for hid in ids}


async def test_a_backlog_is_drained_at_once_not_one_batch_per_tick(clock: ManualClock) -> None:
    upstream = _DoneClient()
    config = WatcherConfig(batch_size=3, polls_per_account=1)
    watcher = Watcher(upstream, config, clock)  # type: ignore[arg-type]
    account = parse_token(CN_TOKEN)
    futs = [watcher.watch(account, f"20000000000{i:02d}", TaskKind.IMAGE) for i in range(7)]
    await watcher.start()
    await clock.advance(config.image.first_poll)
    # No more virtual time passes: each poll that ends starts the next one of the account's backlog.
    outcomes = await asyncio.wait_for(asyncio.gather(*futs), timeout=10)
    assert [len(b) for b in upstream.batches] == [3, 3, 1]
    assert all(o.status is TaskStatus.DONE for o in outcomes)
    await watcher.stop()


async def test_a_tick_polls_only_the_due_tasks_of_many_watched(clock: ManualClock) -> None:
    upstream = _DoneClient()
    watcher = Watcher(upstream, WatcherConfig(), clock)  # type: ignore[arg-type]
    account = parse_token(CN_TOKEN)
    for i in range(2000):  # submitted later: not due yet
        watcher.watch(account, f"3{i:012d}", TaskKind.IMAGE, submitted_at=clock.time() + 60)
    due = [f"4{i:012d}" for i in range(3)]
    for hid in due:
        watcher.watch(account, hid, TaskKind.IMAGE)
    assert await tick(watcher, clock, WatcherConfig().image.first_poll) == 1
    assert upstream.batches == [due]
    assert watcher.pending == 2000


async def test_watches_of_a_poll_cut_short_by_stop_are_polled_after_a_restart(clock: ManualClock) -> None:
    slow = parse_token(CN_TOKEN)
    upstream = _GateClient(slow.fingerprint)
    watcher = Watcher(upstream, WatcherConfig(), clock)  # type: ignore[arg-type]
    watcher.watch(slow, "1000000000001", TaskKind.IMAGE)
    assert await watcher.run_once() == 0
    await clock.advance(WatcherConfig().image.first_poll)
    tick_task = asyncio.ensure_future(watcher.run_once())
    for _ in range(100):  # let the tick start its poll, which then hangs
        await asyncio.sleep(0)
    assert upstream.calls == [slow.fingerprint]
    await watcher.stop()  # cancels the hung poll (and the tick waiting for it)
    tick_task.cancel()
    await asyncio.gather(tick_task, return_exceptions=True)
    upstream.release.set()
    assert watcher.due_at("1000000000001") is not None
    assert await tick(watcher, clock) == 1  # still queued: polled again
    assert upstream.calls == [slow.fingerprint, slow.fingerprint]
