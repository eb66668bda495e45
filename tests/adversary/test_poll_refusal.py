"""Issue 26, finding 3: one poll answered with ret 1015 must not fail a task that was paid for and finishes.

The watcher re-checks the session, retries with back-off and settles the task as failed only when the refusal
has lasted `[watcher] session_refusal_window`; the log says why a task was settled as failed."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, bearer, json_of, run_tick

from jimeng_server.api.appkeys import WATCHER
from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Fault, FaultKind, Simulator

Client = TestClient[Any, Any]
HISTORY = "/get_history_by_ids"


async def submit(client: Client) -> str:
    resp = await client.post("/v1/async/images/generations", json={"prompt": "a paid cat"}, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 200, body
    return str(body["history_id"])


async def run(client: Client, clock: ManualClock, seconds: int) -> None:
    for _ in range(seconds):
        await clock.advance(1.0)
        await run_tick(client.app[WATCHER], clock)


async def task(client: Client, hid: str) -> Any:
    return await json_of(await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN)))


async def test_one_refused_poll_does_not_fail_a_paid_task(client: Client, sim: Simulator, clock: ManualClock) -> None:
    hid = await submit(client)
    sim.inject(HISTORY, Fault(FaultKind.RET, ret="1015", errmsg="login error"), times=2)
    await run(client, clock, 60)
    body = await task(client, hid)
    assert body["status"] == 10 and len(body["results"]) == 4, body
    rets = [e.ret for e in sim.calls(HISTORY)]
    assert rets[:2] == ["1015", "1015"] and rets[-1] == "0"
    # The session was re-checked (a balance read) after each refused poll.
    assert len([c for c in sim.calls("/user_credit") if c.sessionid == CN_TOKEN]) >= 3
    resp = await client.post("/token/check", json={"token": CN_TOKEN})
    assert (await json_of(resp))["live"] is True


async def test_a_lasting_refusal_fails_the_task_and_says_why(
    client: Client, sim: Simulator, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    hid = await submit(client)
    sim.expire_session(CN_TOKEN)
    with caplog.at_level(logging.WARNING, logger="jimeng_server.watcher"):
        await run(client, clock, 300)
        assert (await task(client, hid))["status"] != 30, "failed before session_refusal_window (600 s)"
        await run(client, clock, 400)
    body = await task(client, hid)
    assert body["status"] == 30, body
    polls = len(sim.calls(HISTORY))
    assert 3 <= polls <= 12, polls  # backed off, not polled every 4 s for 10 minutes
    lines = [r.getMessage() for r in caplog.records]
    assert any(hid in line and "settled as failed (session_expired)" in line and "1015" in line for line in lines)
    assert any("refused the session (ret 1015)" in line and "retried with back-off" in line for line in lines)
