"""Polls timed by learned completion times (polltiming.py, `[watcher] adaptive`): the real watcher and client
against the simulator on a manual clock, driven tick by tick. Facts come from the simulator's journal (which
ids each get_history_by_ids call carried, and when) and from the simulator's own finish time of each record."""

from __future__ import annotations

import dataclasses
import itertools
import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, AppFactory, bearer, drive, json_of, run_tick
from watcher_support import HISTORY, submit

from jimeng_server.api.appkeys import WATCHER
from jimeng_server.app import timings_path
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config, ConfigError, parse_config
from jimeng_server.polltiming import CompletionTimes, finish_estimate, profile_of
from jimeng_server.services.generation import Submission
from jimeng_server.simulator import Simulator
from jimeng_server.tasks.records import Outcome, TaskStatus
from jimeng_server.watcher import Watcher

# ------------------------------------------------------------------ the learned distribution (pure)


def test_next_look_follows_the_learned_distribution() -> None:
    times = CompletionTimes(samples=10, min_samples=5)
    for s in (2.0, 3.0, 4.0, 5.0):
        times.learn("image:m", s)
    assert times.next_look("image:m", 0.0, 0.7, 0.1) is None  # 4 samples: not known yet
    times.learn("image:m", 6.0)
    ride, due = times.next_look("image:m", 0.0, 0.7, 0.1) or (0.0, 0.0)
    assert (ride, due) == pytest.approx((2.4, 4.8))  # the 10 % and 70 % quantiles of 2..6
    # Still running at 4 s (half of the samples ended by then): 70 % of the rest ends by 5.4 s.
    assert times.next_look("image:m", 4.0, 0.7, 0.1) == pytest.approx((4.2, 5.4))
    assert times.next_look("image:m", 6.0, 0.7, 0.1) is None  # outlived every sample: the fixed schedule
    assert times.next_look("video:m", 0.0, 0.7, 0.1) is None  # another profile


def test_only_the_newest_samples_count_and_they_survive_a_restart() -> None:
    times = CompletionTimes(samples=5, min_samples=5)
    for s in (100.0, 100.0, 1.0, 2.0, 3.0, 4.0, 5.0):
        times.learn("image:m", s)
    assert times.known("image:m") == [1.0, 2.0, 3.0, 4.0, 5.0]
    again = CompletionTimes(samples=5, min_samples=5)
    assert again.loads(times.dumps()) == 1
    assert again.known("image:m") == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert CompletionTimes().loads("not json") == 0
    assert CompletionTimes().loads(json.dumps({"format": 99, "samples": {}})) == 0


def test_a_sample_is_the_upstream_finish_time_inside_what_the_polls_prove() -> None:
    raw = {"created_time": 1000.25, "task": {"finish_time": 1004}}
    assert finish_estimate(raw, 0.0, 5.0) == pytest.approx(4.25)  # whole seconds: the middle of the second
    assert finish_estimate(raw, 4.5, 5.0) == pytest.approx(4.5)  # seen running at 4.5 s: not earlier
    assert finish_estimate(raw, 0.0, 3.0) == pytest.approx(3.0)  # seen final at 3 s: not later
    assert finish_estimate({"task": {"finish_time": True}}, 0.0, 5.0) == 5.0  # nothing usable: when seen


def test_bad_timing_settings_name_the_key() -> None:
    with pytest.raises(ConfigError, match="poll_at"):
        parse_config({"watcher": {"poll_at": 1.5}})
    with pytest.raises(ConfigError, match="learn_min_samples"):
        parse_config({"watcher": {"learn_min_samples": 0}})
    with pytest.raises(ConfigError, match="coalesce"):
        parse_config({"watcher": {"coalesce": -1}})


# ------------------------------------------------------------------ the watcher on the simulator


def watch(client: TestClient[Any, Any], sub: Submission) -> Any:
    return client.app[WATCHER].watch(
        sub.account, sub.history_id, sub.kind, submitted_at=sub.submitted_at, model=sub.model
    )


async def finish(watcher: Watcher, clock: ManualClock, futures: list[Any], *, step: float = 0.05) -> None:
    """Tick every `step` s of virtual time until every future is done (at most 120 virtual seconds)."""
    for _ in range(round(120 / step)):
        if all(f.done() for f in futures):
            return
        await clock.advance(step)
        await run_tick(watcher, clock)
    raise AssertionError("tasks did not finish within 120 virtual seconds")


async def learn(client: TestClient[Any, Any], clock: ManualClock, n: int) -> None:
    """`n` tasks submitted one after another, each watched until done (the fixed schedule: nothing learnt)."""
    for _ in range(n):
        sub = await submit(client)
        fut = watch(client, sub)
        await finish(client.app[WATCHER], clock, [fut])
        assert fut.result().status is TaskStatus.DONE


async def test_first_poll_comes_when_tasks_of_the_model_have_ended(
    client: TestClient[Any, Any], sim: Simulator, clock: ManualClock
) -> None:
    """The simulator's tasks end 4 s after submit; the fixed schedule looks first at 5 s. Once five tasks of
    the model were seen ending, the next is looked at once, when it has ended, and no later."""
    watcher = client.app[WATCHER]
    await learn(client, clock, 5)
    sub = await submit(client)
    assert watcher.timings.known(profile_of("image", sub.model)) is not None
    sim.journal.clear()
    fut = watch(client, sub)
    await finish(watcher, clock, [fut])
    (call,) = sim.calls(HISTORY)
    assert call.body["history_ids"] == [sub.history_id]
    ended = sim.finish_time(sim.records[sub.history_id])
    assert ended is not None and ended - sub.submitted_at == pytest.approx(4.0)
    assert 0.0 <= call.time - ended <= 0.6  # today: 1 s after it ended
    assert fut.result().status is TaskStatus.DONE and len(fut.result().urls) == 4


async def test_sync_requests_learn_and_are_answered_when_their_task_ends(
    client: TestClient[Any, Any], sim: Simulator, clock: ManualClock
) -> None:
    """Through the HTTP API: five sync text-to-image requests (answered at the fixed first look, 5 s) teach the
    watcher their model's time; the sixth is looked at, and answered, within a tick of its task's end (4 s)."""
    history_ids: list[str] = []
    for _ in range(6):
        sim.journal.clear()
        request = client.post(
            "/v1/images/generations", json={"prompt": "a harbour", "model": "jimeng-4.5"}, headers=bearer(CN_TOKEN)
        )
        (resp,) = await drive(client.app, clock, request, step=0.1)
        body = await json_of(resp)
        assert resp.status == 200, body
        assert len(body["data"]) == 4
        (call,) = sim.calls(HISTORY)
        (history_id,) = call.body["history_ids"]
        history_ids.append(history_id)
        record = sim.records[history_id]
        seen_after = call.time - record.created_at
        assert seen_after == pytest.approx(5.0, abs=0.15) if len(history_ids) <= 5 else 4.0 <= seen_after <= 4.6
    assert len(set(history_ids)) == 6


async def run_crowd(client: TestClient[Any, Any], sim: Simulator, clock: ManualClock) -> tuple[int, float]:
    """Learn from 8 tasks, then submit 40 tasks 0.1 s apart on one account (generation times spread by the
    simulator) and watch them to the end: (history calls for the 40, median seconds from a task's end on the
    simulator to the poll that saw it)."""
    sim.settings.step_spread = 0.3
    watcher = client.app[WATCHER]
    await learn(client, clock, 8)
    sim.journal.clear()
    subs: list[Submission] = []
    futures: list[Any] = []
    for _ in range(40):
        subs.append(await submit(client))
        futures.append(watch(client, subs[-1]))
        await clock.advance(0.1)
        await run_tick(watcher, clock)
    await finish(watcher, clock, futures)
    outcomes: list[Outcome] = [f.result() for f in futures]
    assert all(o.status is TaskStatus.DONE for o in outcomes)
    calls = sim.calls(HISTORY)
    lags = []
    for sub in subs:
        ended = sim.finish_time(sim.records[sub.history_id])
        assert ended is not None
        seen = min(c.time for c in calls if sub.history_id in c.body["history_ids"] and c.time >= ended)
        lags.append(seen - ended)
    return len(calls), statistics.median(lags)


async def test_a_crowd_is_seen_sooner_with_fewer_polls_than_the_fixed_schedule(
    make_client: AppFactory, config: Config, sim: Simulator, clock: ManualClock
) -> None:
    adaptive = await make_client()
    polls, lag = await run_crowd(adaptive, sim, clock)
    sim.records.clear()
    fixed = await make_client(watcher=dataclasses.replace(config.watcher, adaptive=False))
    fixed_polls, fixed_lag = await run_crowd(fixed, sim, clock)
    # Measured: 24 calls and 0.17 s against 42 calls and 1.5 s.
    assert polls <= 0.75 * fixed_polls
    assert lag <= 0.3 and lag < fixed_lag / 3


def kept_samples(path: str) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = json.loads(Path(path).read_text(encoding="utf-8"))["samples"]
    return samples


async def test_learned_times_survive_a_restart(
    make_client: AppFactory, config: Config, sim: Simulator, clock: ManualClock
) -> None:
    first = await make_client()
    await learn(first, clock, 5)
    await first.close()  # the app's cleanup keeps what the watcher learnt
    path = timings_path(config)
    assert path == f"{config.store.path}.timings.json"
    assert profile_of("image", "jimeng-4.5") in kept_samples(path)
    second = await make_client()
    sim.journal.clear()
    sub = await submit(second)
    fut = watch(second, sub)
    await finish(second.app[WATCHER], clock, [fut])
    (call,) = sim.calls(HISTORY)
    assert call.time - sub.submitted_at < 5.0  # the fixed schedule's first look is at 5 s


@pytest.mark.parametrize(("honour", "gaps"), [(True, [30.0]), (False, [4.0] * 7)], ids=["honoured", "not asked"])
async def test_the_upstreams_advised_interval_is_honoured_when_asked(
    make_client: AppFactory, config: Config, sim: Simulator, clock: ManualClock, honour: bool, gaps: list[float]
) -> None:
    """A record still queued carries `polling_config.interval_seconds` 30 (as the real generate answer does);
    with `upstream_interval` the task is not polled again sooner, without it the kind's 4 s interval holds."""
    client = await make_client(watcher=dataclasses.replace(config.watcher, upstream_interval=honour))
    sub = await submit(client, "queued [sim:stuck0]")
    watch(client, sub)
    watcher = client.app[WATCHER]
    for _ in range(int(36 / 0.5)):
        await clock.advance(0.5)
        await run_tick(watcher, clock)
    times = [c.time - sub.submitted_at for c in sim.calls(HISTORY)]
    assert times[0] == pytest.approx(5.0)
    assert [round(b - a, 1) for a, b in itertools.pairwise(times)] == pytest.approx(gaps)


def test_timings_file_setting(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    assert timings_path(parse_config({"store": {"path": db}})) == f"{db}.timings.json"
    assert timings_path(parse_config({"watcher": {"timings_file": "off"}})) is None
    assert timings_path(parse_config({"watcher": {"timings_file": "/x/t.json"}})) == "/x/t.json"
    assert timings_path(parse_config({"store": {"url": "postgresql://u@h/db"}})) is None
