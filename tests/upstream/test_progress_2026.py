"""Progress and readable failures (`queue`, `fail_message`), the watermark-free video URL, expiring credits and
the risk-control claim refusal, over real HTTP against the simulator."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, POOR_TOKEN, bearer, drive, json_of

from jimeng_server.api.appkeys import WATCHER
from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Fault, FaultKind, Simulator
from jimeng_server.simulator.scripts import DEFAULT_IMAGE_SCRIPT, Step
from jimeng_server.simulator.state import next_day_end


async def submit(client: TestClient[Any, Any], body: dict[str, Any]) -> str:
    resp = await client.post("/v1/async/images/generations", json=body, headers=bearer(CN_TOKEN))
    data = await json_of(resp)
    assert resp.status == 200, data
    return str(data["history_id"])


async def tick(app: web.Application, clock: ManualClock, seconds: int) -> None:
    for _ in range(seconds):
        await clock.advance(1.0)
        await app[WATCHER].run_once()


async def get(client: TestClient[Any, Any], path: str) -> Any:
    resp = await client.get(path, headers=bearer(CN_TOKEN))
    assert resp.status == 200
    return await json_of(resp)


async def test_queue_while_waiting_then_null_once_done(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.image_step_seconds = 4.0
    sim.settings.queue_ahead = 8
    sim.next_script = [Step(20, 0)] * 8 + list(DEFAULT_IMAGE_SCRIPT)  # 8 steps in the queue, then generating
    hid = await submit(client, {"prompt": "a queued cat"})
    await tick(client.app, clock, 6)  # first poll at 5 s: step 1, status 20, one place further
    body = await get(client, f"/v1/async/tasks/{hid}")
    assert body["status"] == 20
    # the queue phase ends at 8 steps x 4 s = 32 s after submit; the poll saw it at 5 s
    assert body["queue"] == {"position": 7, "length": 9, "eta_seconds": 27.0}
    assert body["fail_message"] is None
    resp = await client.post("/v1/async/tasks/query", json={"history_ids": [hid]}, headers=bearer(CN_TOKEN))
    assert (await json_of(resp))["data"][0]["queue"] == body["queue"]
    await tick(client.app, clock, 60)
    done = await get(client, f"/v1/async/tasks/{hid}?wait=1")
    assert (done["status"], done["queue"], done["fail_message"]) == (10, None, None)


async def test_failed_task_carries_the_readable_reason(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    hid = await submit(client, {"prompt": "bad [sim:fail]"})
    await tick(client.app, clock, 20)
    body = await get(client, f"/v1/async/tasks/{hid}")
    assert (body["status"], body["fail_code"], body["queue"]) == (30, 2038, None)
    assert body["fail_message"] == "输入的文字不符合平台规则，请修改后重试"
    assert body["raw_data"]["fail_starling_message"] == body["fail_message"]


async def test_watermark_free_url_is_chosen_without_the_download_list(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.video_model_urls = True
    (resp,) = await drive(
        client.app, clock, client.post("/v1/videos/generations", json={"prompt": "waves"}, headers=bearer(CN_TOKEN))
    )
    body = await json_of(resp)
    assert resp.status == 200, body
    url = body["data"][0]["url"]
    assert "wm=0" in url and "hq=1" not in url
    assert not sim.calls("/get_local_item_list"), "no download-list call when video_model gives the URL"
    async with client.session.get(url) as got:
        assert got.status == 200 and got.content_type == "video/mp4"


async def test_points_show_expiring_credits_after_a_claim(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    resp = await client.post("/token/receive", headers=bearer(POOR_TOKEN))
    (entry,) = await json_of(resp)
    assert entry["received"] is True
    resp = await client.post("/token/points", headers=bearer(POOR_TOKEN))
    (entry,) = await json_of(resp)
    expires = next_day_end(clock.time())
    quota = sim.settings.receive_quota
    assert entry["points"]["nextExpiry"] == {"amount": quota, "expiresAt": expires, "source": "expiring_credits"}
    assert entry["points"]["expiringCredits"] == [entry["points"]["nextExpiry"]]


async def test_claim_refused_by_risk_control_says_why_and_is_not_retried_today(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.inject("/credit_receive", Fault(FaultKind.RET, ret="-4", errmsg="shark check reject"))
    for _ in range(2):
        resp = await client.post("/token/receive", headers=bearer(POOR_TOKEN))
        (entry,) = await json_of(resp)
        assert entry["received"] is False and entry["code"] == "CLAIM_RISK_REJECTED"
        assert "risk control" in entry["error"]
    assert len(sim.calls("/credit_receive")) == 1, "the refused claim is not sent again the same day"
    # A generate with that account fails over nothing (one token) and says why.
    (resp,) = await drive(
        client.app, clock, client.post("/v1/images/generations", json={"prompt": "x"}, headers=bearer(POOR_TOKEN))
    )
    body = await json_of(resp)
    assert resp.status == 402 and "risk control" in body["error"]["message"]
    assert len(sim.calls("/credit_receive")) == 1 and sim.generate_count == 0
    await clock.advance(86400)
    resp = await client.post("/token/receive", headers=bearer(POOR_TOKEN))
    (entry,) = await json_of(resp)
    assert entry["received"] is True
