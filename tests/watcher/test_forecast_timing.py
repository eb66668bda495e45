"""Polls timed by the upstream's own forecast (`[watcher] use_forecast`, polltiming.forecast_look): the real
watcher, generation service and client against the simulator on a manual clock. The simulator's forecast agrees
with its timeline (tests/simulator/test_forecast.py), so a task is looked at when it has ended even before any
completion time of its model was learnt. Facts come from the simulator's journal and its own finish times."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support import CN_TOKEN, AppFactory, bearer, drive, json_of, run_tick
from watcher_support import HISTORY, submit
from webhook_support import SECRET, Receiver

from jimeng_server.api.appkeys import WATCHER, WEBHOOKS
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config, ConfigError, WebhookConfig, parse_config
from jimeng_server.polltiming import CompletionTimes, choose_look, forecast_look, profile_of
from jimeng_server.services.generation import Submission
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.scripts import DEFAULT_IMAGE_SCRIPT, Step
from jimeng_server.tasks.records import TaskStatus
from jimeng_server.watcher import Watcher

# ------------------------------------------------------------------ the decision (pure)


def test_forecast_look_is_the_window_around_the_forecast_end() -> None:
    # seen running 3 s after submit, 4 s left +- 0.5 s: the window is 6.5..7.5 s after submit
    assert forecast_look(3.0, 4.0, 0.5, 0.8, 0.1) == pytest.approx((6.6, 7.3))
    assert forecast_look(3.0, 4.0, 0.0, 0.8, 0.1) == pytest.approx((7.0, 7.0))  # no slack: the end itself
    # nothing left (the upstream rounds down): never before the look that saw it running
    assert forecast_look(3.0, 0.0, 0.5, 0.8, 0.1) == pytest.approx((3.05, 3.4))


def test_choose_look_prefers_the_forecast_then_the_learned_times() -> None:
    times = CompletionTimes(samples=10, min_samples=5)
    for sample in (2.0, 3.0, 4.0, 5.0, 6.0):
        times.learn("image:m", sample)
    pick = functools.partial(choose_look, times, poll_at=0.8, ride_along=0.1, slack=0.5)
    # the forecast wins over what was learnt, and needs no profile at all
    assert pick("image:m", 3.0, 4.0, crowd=1) == pytest.approx(forecast_look(3.0, 4.0, 0.5, 0.8, 0.1))
    assert pick("", 0.0, 9.0, crowd=1) == pytest.approx((8.6, 9.3))
    # no forecast: the learned distribution (its 10 % and 80 % quantiles), or nothing for an unknown profile
    assert pick("image:m", 0.0, None, crowd=1) == pytest.approx(times.next_look("image:m", 0.0, 0.8, 0.1))
    assert pick("image:x", 0.0, None, crowd=1) is None and pick("", 0.0, None, crowd=1) is None
    # ten watches on the account: each is looked at when its own chance reaches 1 - 0.2 ** (1 / 10)
    share = 1 - 0.2**0.1
    assert pick("", 0.0, 9.0, crowd=10) == pytest.approx(forecast_look(0.0, 9.0, 0.5, share, min(0.1, share)))


def test_forecasts_that_run_long_are_scaled_by_what_was_seen() -> None:
    times = CompletionTimes(samples=10, min_samples=3)
    times.learn_forecast("image:m", 0.0, 12.0, 4.0)  # forecast 12 s at submit, ended after 4 s
    times.learn_forecast("image:m", 2.0, 9.0, 5.0)  # forecast 9 s at 2 s, ended 3 s later
    assert times.forecast_scale("image:m") == 1.0  # two ratios: not known yet
    times.learn_forecast("image:m", 0.0, 0.4, 4.0)  # under a second: too coarse, not counted
    assert times.forecast_scale("image:m") == 1.0
    times.learn_forecast("image:m", 0.0, 15.0, 6.0)
    assert times.forecast_scale("image:m") == pytest.approx(1 / 3)  # the median of 1/3, 1/3 and 0.4
    assert times.forecast_scale("image:other") == 1.0 and times.forecast_scale("") == 1.0
    pick = choose_look(times, "image:m", 0.0, 12.0, crowd=1, poll_at=0.8, ride_along=0.1, slack=0.5)
    assert pick == pytest.approx(forecast_look(0.0, 4.0, 0.5, 0.8, 0.1))
    again = CompletionTimes(samples=10, min_samples=3)
    again.loads(times.dumps())  # kept across restarts with the times
    assert again.forecast_scale("image:m") == pytest.approx(1 / 3, abs=0.001)  # kept to 3 decimals
    for _ in range(5):
        times.learn_forecast("image:x", 0.0, 100.0, 1.0)
    assert times.forecast_scale("image:x") == 1 / 16  # bounded


def test_forecast_settings() -> None:
    assert parse_config({}).watcher.use_forecast is True
    assert parse_config({"watcher": {"use_forecast": False, "forecast_slack": 2}}).watcher.forecast_slack == 2.0
    with pytest.raises(ConfigError, match=r"watcher\.forecast_slack"):
        parse_config({"watcher": {"forecast_slack": -1}})


# ------------------------------------------------------------------ the watcher on the simulator


@pytest.fixture
def forecast_config(config: Config) -> Config:
    return dataclasses.replace(config, watcher=dataclasses.replace(config.watcher, use_forecast=True))


def watch(client: TestClient[Any, Any], sub: Submission) -> Any:
    return client.app[WATCHER].watch(
        sub.account, sub.history_id, sub.kind, submitted_at=sub.submitted_at, model=sub.model, forecast=sub.forecast
    )


async def run(watcher: Watcher, clock: ManualClock, futures: list[Any], seconds: float, step: float = 0.05) -> None:
    """Tick every `step` s of virtual time for `seconds`, or until every future is done."""
    for _ in range(round(seconds / step)):
        if futures and all(f.done() for f in futures):
            return
        await clock.advance(step)
        await run_tick(watcher, clock)


@pytest.mark.parametrize("use", [True, False], ids=["forecast", "fixed"])
async def test_a_first_task_is_seen_when_its_forecast_says_it_ends(
    make_client: AppFactory, forecast_config: Config, sim: Simulator, clock: ManualClock, use: bool
) -> None:
    """Nothing learnt yet (the first tasks of a model): with the forecast each task gets ONE poll, within a
    moment of its end; without it the kind's schedule looks at 5 s, a second after most have ended."""
    sim.settings.step_spread = 0.3
    client = await make_client(watcher=dataclasses.replace(forecast_config.watcher, use_forecast=use))
    watcher = client.app[WATCHER]
    lags = []
    for _ in range(6):
        sim.journal.clear()
        sub = await submit(client)
        assert sub.forecast is not None  # the generate answer's forecast_queue_cost + forecast_generate_cost
        assert watcher.timings.known(profile_of("image", sub.model)) is None
        fut = watch(client, sub)
        await run(watcher, clock, [fut], 60)
        assert fut.result().status is TaskStatus.DONE and len(fut.result().urls) == 4
        ended = sim.finish_time(sim.records[sub.history_id])
        assert ended is not None
        calls = sim.calls(HISTORY)
        if use:
            assert len(calls) <= 2
            lags.append(calls[-1].time - ended)
        else:
            assert calls[0].time - sub.submitted_at == pytest.approx(5.0, abs=0.06)
        sim.records.clear()
        watcher.timings = type(watcher.timings)()  # stay cold: every task is a first task
    if use:  # the forecast is whole seconds (+-0.5 s); the look comes 0.3 s after its end (poll_at 0.8)
        assert all(0.0 <= lag <= 0.85 for lag in lags), lags


async def test_an_upstream_whose_forecasts_run_long_is_corrected_by_what_it_did(
    make_client: AppFactory, forecast_config: Config, sim: Simulator, clock: ManualClock
) -> None:
    """Forecasts three times the real seconds: the first tasks of the model are looked at too late (bounded by
    the forecast), then five finished tasks teach the ratio and the next task is seen right after its end."""
    sim.settings.forecast_factor = 3.0
    client = await make_client(watcher=forecast_config.watcher)
    watcher = client.app[WATCHER]
    lags = []
    for _ in range(6):
        sim.journal.clear()
        sub = await submit(client)
        fut = watch(client, sub)
        await run(watcher, clock, [fut], 60)
        assert fut.result().status is TaskStatus.DONE
        ended = sim.finish_time(sim.records[sub.history_id])
        assert ended is not None and sub.forecast == 12.0  # ends 4 s after submit
        lags.append(sim.calls(HISTORY)[-1].time - ended)
    assert all(lag >= 7.0 for lag in lags[:5]), lags  # looked at 12.3 s after submit
    assert watcher.timings.forecast_scale(profile_of("image", sub.model)) == pytest.approx(1 / 3, abs=0.05)
    assert 0.0 <= lags[5] <= 0.85, lags


async def test_a_queued_task_is_looked_at_once_when_it_leaves_queue_and_ends(
    make_client: AppFactory, forecast_config: Config, sim: Simulator, clock: ManualClock
) -> None:
    """Ten places in the queue (ten bare status-20 steps of 1 s) then generating: finished 14 s after submit.
    The fixed schedule would look at 5, 9, 13 and 17 s; the forecast gives one look, at its end."""
    client = await make_client(watcher=forecast_config.watcher)
    sim.settings.queue_ahead = 10
    sim.next_script = [Step(20, 0)] * 10 + list(DEFAULT_IMAGE_SCRIPT)
    sub = await submit(client)
    assert sub.forecast == 14.0
    fut = watch(client, sub)
    await run(client.app[WATCHER], clock, [fut], 30)
    (call,) = sim.calls(HISTORY)
    assert 14.0 <= call.time - sub.submitted_at <= 14.5
    assert fut.result().status is TaskStatus.DONE


async def test_a_wrong_forecast_is_bounded_by_the_age_of_the_task(
    make_client: AppFactory, forecast_config: Config, sim: Simulator, clock: ManualClock
) -> None:
    """A record that never ends while its forecast keeps saying "now" (the simulator forecasts a script without a
    final step to end at its last step): looks are never closer than `coalesce`, nor than a tenth of the task's
    age, so a task that outlives its forecast is looked at less and less often."""
    client = await make_client(watcher=forecast_config.watcher)
    sub = await submit(client, "late [sim:stuck]")
    assert sub.forecast == 0.0
    watch(client, sub)
    await run(client.app[WATCHER], clock, [], 120, step=0.05)
    times = [c.time - sub.submitted_at for c in sim.calls(HISTORY)]
    gaps = [(a, b - a) for a, b in itertools.pairwise(times)]
    assert all(gap >= max(0.25, age / 10) - 0.051 for age, gap in gaps), gaps
    assert gaps[-1][1] >= 10.0 and len(times) <= 45  # the fixed schedule: 29 looks in 120 s, every 4 s


async def test_a_sync_request_is_answered_when_its_task_ends(
    make_client: AppFactory, forecast_config: Config, sim: Simulator, clock: ManualClock
) -> None:
    """Through the HTTP API, the first request of a model: answered with one poll, right after the task ends."""
    sim.settings.image_step_seconds = 1.3
    client = await make_client(watcher=forecast_config.watcher)
    request = client.post(
        "/v1/images/generations", json={"prompt": "a harbour", "model": "jimeng-4.5"}, headers=bearer(CN_TOKEN)
    )
    (resp,) = await drive(client.app, clock, request, step=0.05)
    body = await json_of(resp)
    assert resp.status == 200 and len(body["data"]) == 4, body
    (call,) = sim.calls(HISTORY)
    (history_id,) = call.body["history_ids"]
    ended = sim.finish_time(sim.records[history_id])
    assert ended is not None and 0.0 <= call.time - ended <= 0.85  # ended at 5.2 s; fixed: 5 s (status 45), then 11 s


async def test_a_callback_task_is_delivered_after_one_poll_at_its_forecast_end(
    make_client: AppFactory,
    forecast_config: Config,
    sim: Simulator,
    clock: ManualClock,
    receiver: tuple[Receiver, TestServer],
) -> None:
    """An async submit with a callback, queued behind ten others (ends 14 s after submit): the background watch
    takes the generate answer's forecast, looks once, at the end, and the webhook carries what a query answers."""
    rec, server = receiver
    client = await make_client(watcher=forecast_config.watcher, webhooks=WebhookConfig(secret=SECRET, jitter=0.0))
    sim.settings.queue_ahead = 10
    sim.next_script = [Step(20, 0)] * 10 + list(DEFAULT_IMAGE_SCRIPT)
    hook = str(server.make_url("/hooks/forecast"))
    (resp,) = await drive(
        client.app,
        clock,
        client.post(
            "/v1/async/images/generations", json={"prompt": "a cat", "callback_url": hook}, headers=bearer(CN_TOKEN)
        ),
    )
    submitted = await json_of(resp)
    assert resp.status == 200, submitted
    hid = str(submitted["history_id"])
    await run(client.app[WATCHER], clock, [], 20, step=0.25)
    (call,) = sim.calls(HISTORY)
    created = sim.records[hid].created_at
    assert 14.0 <= call.time - created <= 14.5 and call.body["history_ids"] == [hid]
    assert await client.app[WEBHOOKS].drain() == 1
    (got,) = rec.on("/hooks/forecast")
    event = json.loads(got.body)
    resp = await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN))
    polled = await json_of(resp)
    assert event["type"] == "task.succeeded" and polled["status"] == 10
    assert event["data"] == {k: v for k, v in polled.items() if k != "raw_data"}
