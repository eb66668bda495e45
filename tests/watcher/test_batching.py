"""Many concurrent sync generations share one batched watcher: few get_history_by_ids calls, each with many ids."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from aiohttp.test_utils import TestClient
from support import CN_TOKEN, CN_TOKEN_2, bearer, drive, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Simulator

URL = "/v1/images/generations"
HISTORY = "/get_history_by_ids"


async def test_twenty_concurrent_requests_share_polls(
    client: TestClient[Any, Any], sim: Simulator, clock: ManualClock
) -> None:
    sim.settings.image_step_seconds = 5.0  # the default script then takes 20 s: several polls each
    before = sim.account(CN_TOKEN).total
    requests = [client.post(URL, json={"prompt": f"cat number {i}"}, headers=bearer(CN_TOKEN)) for i in range(20)]
    responses = await drive(client.app, clock, *requests, min_pending=20)
    bodies = [await json_of(r) for r in responses]
    assert [r.status for r in responses] == [200] * 20, bodies
    assert all(len(b["data"]) == 4 for b in bodies)
    all_urls = [d["url"] for b in bodies for d in b["data"]]
    assert len(set(all_urls)) == 80, "each request got its own task's images"

    assert sim.generate_count == 20
    assert len(sim.calls("/aigc_draft/generate")) == 20
    assert len(sim.charges) == 20 and all(amount > 0 for _, _, amount in sim.charges)
    assert sim.account(CN_TOKEN).total == before - 20 * 4 * sim.settings.image_cost  # 4 images each

    calls = sim.calls(HISTORY)
    sizes = [len(e.body["history_ids"]) for e in calls]
    polls_per_task = Counter(hid for e in calls for hid in e.body["history_ids"])
    assert set(polls_per_task) == set(sim.records)
    # One-loop-per-request polling would make requests x polls calls.
    assert sum(polls_per_task.values()) >= 20 * 3
    assert len(calls) <= 10, sizes
    assert max(sizes) >= 10, sizes
    # Never two calls for the same account at the same moment.
    assert all(n == 1 for n in Counter(e.time for e in calls).values())


async def test_two_accounts_one_call_each_per_tick(
    client: TestClient[Any, Any], sim: Simulator, clock: ManualClock
) -> None:
    sim.settings.image_step_seconds = 5.0
    tokens = [CN_TOKEN, CN_TOKEN_2] * 5
    requests = [client.post(URL, json={"prompt": f"dog {i}"}, headers=bearer(t)) for i, t in enumerate(tokens)]
    responses = await drive(client.app, clock, *requests, min_pending=10)
    assert [r.status for r in responses] == [200] * 10
    calls = sim.calls(HISTORY)
    per_tick = Counter((e.time, e.sessionid) for e in calls)
    assert all(n == 1 for n in per_tick.values()), per_tick
    ticks = {t for t, _ in per_tick}
    assert len(calls) == 2 * len(ticks)
    for _, group in itertools.groupby(sorted(calls, key=lambda e: e.time), key=lambda e: e.time):
        entries = list(group)
        assert {e.sessionid for e in entries} == {CN_TOKEN, CN_TOKEN_2}
        for e in entries:
            owners = {sim.records[h].sessionid for h in e.body["history_ids"]}
            assert owners == {e.sessionid}, "a batch mixed accounts"
            assert len(e.body["history_ids"]) == 5
