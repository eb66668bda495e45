"""The simulator's queue and forecast fields agree with its own timeline (issue 27): at any moment a running
record's `forecast_queue_cost + forecast_generate_cost` (whole seconds) is its finish time minus now within half
a second, also with a spread of generation times (`step_spread`, as bench/latency.py runs it) and with a queue
ahead of it; `forecast_queue_cost` is when it leaves the queue (its first step that is not a bare status 20)."""

from __future__ import annotations

from sim_helpers import Upstream, image_body

from jimeng_server.simulator import Simulator
from jimeng_server.simulator.scripts import DEFAULT_IMAGE_SCRIPT, Step


def forecast(record: dict[str, object]) -> int:
    queue, generate = record.get("forecast_queue_cost", 0), record["forecast_generate_cost"]
    assert isinstance(queue, int) and isinstance(generate, int) and queue >= 0 and generate >= 0
    return queue + generate


async def test_forecast_matches_the_finish_with_a_spread_of_generation_times(up: Upstream, sim: Simulator) -> None:
    sim.settings.image_step_seconds = 1.0
    sim.settings.step_spread = 0.3
    ids = []
    for n in range(12):
        answer = (await up.generate(image_body(prompt=f"cat {n}"))).data["aigc_data"]
        hid = answer["history_record_id"]
        finish = sim.finish_time(sim.records[hid])
        assert finish is not None
        assert abs(up.clock.time() + forecast(answer) - finish) <= 0.5, (n, answer, finish)
        ids.append(hid)
    finishes = {hid: sim.finish_time(sim.records[hid]) for hid in ids}
    assert len({round(f or 0, 3) for f in finishes.values()}) > 6  # the spread gave distinct generation times
    checked = 0
    for _ in range(30):
        await up.clock.advance(0.37)
        now = up.clock.time()
        data = (await up.history(ids)).data
        for hid in ids:
            record, finish = data.get(hid), finishes[hid]
            if record is None or record["status"] in (10, 30, 50):
                continue
            assert finish is not None and now < finish
            assert abs(now + forecast(record) - finish) <= 0.5, (hid, now, record["status"], finish)
            checked += 1
    assert checked > 40


async def test_queue_cost_is_the_time_left_in_the_queue(up: Upstream, sim: Simulator) -> None:
    sim.settings.image_step_seconds = 2.0
    sim.settings.queue_ahead = 5
    sim.next_script = [Step(20, 0)] * 3 + list(DEFAULT_IMAGE_SCRIPT)  # 4 bare 20 steps: out of the queue at 8 s
    answer = (await up.generate(image_body())).data["aigc_data"]
    hid = answer["history_record_id"]
    # at most one place per queued step: 4 ahead, although 5 were asked for (the queue must fit the timeline)
    assert (answer["queue_info"]["queue_idx"], answer["forecast_queue_cost"], forecast(answer)) == (4, 8, 14)
    await up.clock.advance(2.4)
    record = (await up.history([hid])).data[hid]
    assert (record["queue_info"]["queue_idx"], record["forecast_queue_cost"], forecast(record)) == (3, 6, 12)
    await up.clock.advance(7.0)  # 9.4 s: generating (status 20 with one item), out of the queue
    record = (await up.history([hid])).data[hid]
    assert (record["queue_info"]["queue_idx"], record["forecast_queue_cost"], forecast(record)) == (0, 0, 5)
    await up.clock.advance(2.0)  # 11.4 s: status 42, no queue fields, as the real running record
    record = (await up.history([hid])).data[hid]
    assert record["status"] == 42 and "queue_info" not in record and forecast(record) == 3
    await up.clock.advance(3.0)
    done = (await up.history([hid])).data[hid]
    assert done["status"] == 10 and "forecast_generate_cost" not in done


async def test_forecast_factor_makes_an_upstream_whose_forecasts_run_long(up: Upstream, sim: Simulator) -> None:
    sim.settings.forecast_factor = 3.0
    answer = (await up.generate(image_body())).data["aigc_data"]
    hid = answer["history_record_id"]
    assert forecast(answer) == 12  # the default image record ends after 4 s
    await up.clock.advance(2.2)
    assert forecast((await up.history([hid])).data[hid]) == 6  # 1.8 s left, rounded to 2, times 3
