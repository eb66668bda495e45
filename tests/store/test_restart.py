"""Restart safety: tasks in flight when a server stops (cleanly or not) are watched again by the next one."""

from __future__ import annotations

from typing import Any

from support import CN_TOKEN, CN_TOKEN_2, US_SESSION, US_TOKEN, bearer, json_of

from jimeng_server.api.appkeys import STORE, WATCHER
from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Simulator
from jimeng_server.tasks.records import TaskStatus

SUBMIT = "/v1/async/images/generations"


async def submit(client: Any, token: str, prompt: str) -> str:
    resp = await client.post(SUBMIT, json={"prompt": prompt, "model": "jimeng-4.0"}, headers=bearer(token))
    assert resp.status == 200, await json_of(resp)
    return str((await json_of(resp))["history_id"])


async def finish_on(client: Any, clock: ManualClock, seconds: int = 12) -> None:
    for _ in range(seconds):
        await clock.advance(1.0)
        await client.app[WATCHER].run_once()


async def test_stopped_server_resumes_in_flight_tasks(make_client: Any, clock: ManualClock, sim: Simulator) -> None:
    first = await make_client()
    owners = {CN_TOKEN: CN_TOKEN, CN_TOKEN_2: CN_TOKEN_2, US_TOKEN: US_SESSION}
    ids = {token: await submit(first, token, f"in flight {i}") for i, token in enumerate(owners)}
    await first.close()  # stops the watcher and closes the store with three tasks in flight
    assert not sim.calls("/get_history_by_ids")

    second = await make_client()  # a new app and watcher on the same database
    assert second.app[WATCHER].pending == 3
    await finish_on(second, clock)
    for token, hid in ids.items():
        row = await second.app[STORE].get(hid)
        assert row is not None and row.status is TaskStatus.DONE and row.token is None
        resp = await second.get(f"/v1/async/tasks/{hid}", headers=bearer(token))
        body = await json_of(resp)
        assert resp.status == 200 and body["status"] == 10 and len(body["results"]) == 4
    for entry in sim.calls("/get_history_by_ids"):  # each poll used the owner's session
        (hid,) = entry.body["history_ids"]
        assert owners[next(t for t, h in ids.items() if h == hid)] == entry.sessionid
    assert sim.generate_count == 3 and len(sim.charges) == 3  # resumed, never re-submitted


async def test_crashed_server_tasks_resume_and_keep_their_horizon(
    make_client: Any, clock: ManualClock, sim: Simulator
) -> None:
    crashed = await make_client()  # never stopped: like a process killed mid-flight
    done_later = await submit(crashed, CN_TOKEN, "survives")
    stuck = await submit(crashed, CN_TOKEN, "never ends [sim:stuck]")
    await clock.advance(600)
    fresh = await make_client()
    assert fresh.app[WATCHER].pending == 2
    await finish_on(fresh, clock, 310)  # past the stuck task's 900 s deadline: still watched
    assert fresh.app[WATCHER].pending == 1
    assert (await fresh.app[STORE].get(done_later)).status is TaskStatus.DONE  # type: ignore[union-attr]
    settle_after = fresh.app[WATCHER].config.settle_after
    await clock.advance(settle_after - 910 - 1)  # the settle horizon counts from the submission too
    await fresh.app[WATCHER].run_once()
    assert fresh.app[WATCHER].pending == 1
    await finish_on(fresh, clock, 2)
    assert fresh.app[WATCHER].pending == 0
    row = await fresh.app[STORE].get(stuck)
    assert row is not None and row.status is TaskStatus.FAILED and row.token is None
    assert row.error is not None and row.error["code"] == "TIMEOUT"
    # A settled task is not resumed by a later start.
    third = await make_client()
    assert third.app[WATCHER].pending == 0
