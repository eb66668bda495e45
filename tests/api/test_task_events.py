"""`GET /v1/async/tasks/{id}/events`: Server-Sent Events over real HTTP against the simulator, read as they
arrive; the final event is the query's answer."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp.test_utils import TestClient
from support import CN_TOKEN, CN_TOKEN_2, bearer, drive, json_of

from jimeng_server.api.appkeys import STORE
from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.media import png
from jimeng_server.simulator.scripts import Script, Step

Event = tuple[str, Any, bool]  # (event name, data, task final in the store when it arrived)


async def submit(client: TestClient[Any, Any], prompt: str) -> str:
    resp = await client.post("/v1/async/images/generations", json={"prompt": prompt}, headers=bearer(CN_TOKEN))
    assert resp.status == 200
    return str((await json_of(resp))["history_id"])


async def read_events(client: TestClient[Any, Any], history_id: str) -> tuple[list[Event], int]:
    """The stream's events (name, data, whether the stored task was final on arrival) and its comment count."""
    resp = await client.get(f"/v1/async/tasks/{history_id}/events", headers=bearer(CN_TOKEN))
    return await events_of(client, resp)


async def events_of(
    client: TestClient[Any, Any], resp: Any, events: list[Event] | None = None
) -> tuple[list[Event], int]:
    """The events of a stream answer, each with whether the stored task was final when it was read (appended to
    `events` as they come, when given)."""
    events = [] if events is None else events
    comments = 0
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    name, data = "message", ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith(":"):
            comments += 1
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            body = json.loads(data)
            row = await client.app[STORE].get(str(body.get("history_id")))
            events.append((name, body, bool(row and row.final)))
            name, data = "message", ""
    return events, comments


async def test_progress_arrives_while_running_and_final_is_the_query_answer(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.image_step_seconds = 10.0  # the queue place holds 10 s; the looks come every 5 s
    sim.settings.queue_ahead = 2
    sim.next_script = Script([Step(20, 0)] * 6 + [Step(20, 1), Step(42, 2), Step(10, 4)])
    history_id = await submit(client, "an evented cat")
    ((events, comments),) = await drive(client.app, clock, read_events(client, history_id))
    names = [name for name, _, _ in events]
    assert names[0] == "progress" and names[-1] == "final" and set(names[:-1]) == {"progress"}
    assert all(not final for _, _, final in events[:-1])  # progress came while the task ran
    first = events[0][1]
    assert first["status"] == 20 and "raw_data" not in first and first["history_id"] == history_id
    assert any(body["queue"] and body["queue"]["position"] for _, body, _ in events[:-1])
    seen = [(b["status"], json.dumps(b["queue"]), b["item_count"]) for _, b, _ in events[:-1]]
    assert len(seen) == len(set(seen))  # an event per visible change; keep-alive comments otherwise
    assert comments >= 1
    resp = await client.get(f"/v1/async/tasks/{history_id}", headers=bearer(CN_TOKEN))
    assert events[-1][1] == await json_of(resp) and events[-1][1]["status"] == 10


async def test_a_final_task_streams_one_final_event(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    history_id = await submit(client, "bad [sim:fail]")
    await drive(client.app, clock, client.get(f"/v1/async/tasks/{history_id}?wait=60", headers=bearer(CN_TOKEN)))
    ((events, _),) = await drive(client.app, clock, read_events(client, history_id))
    ((name, body, _),) = events
    assert name == "final" and body["status"] == 30 and body["error"]["code"] == "CONTENT_REJECTED"


async def test_unknown_or_foreign_ids_are_404_before_the_stream(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    history_id = await submit(client, "mine")
    resp = await client.get(f"/v1/async/tasks/{history_id}/events", headers=bearer(CN_TOKEN_2))
    assert resp.status == 404 and (await json_of(resp))["error"]["code"] == "TASK_NOT_FOUND"
    resp = await client.get("/v1/async/tasks/not%20an%20id/events", headers=bearer(CN_TOKEN))
    assert resp.status == 400 and (await json_of(resp))["error"]["code"] == "INVALID_PARAMETER"
    resp = await client.get(f"/v1/async/tasks/{history_id}/events")
    assert resp.status == 401


async def test_sync_image_endpoints_stream_the_same_events(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    """`"stream": true` on /v1/images/generations: the task's events instead of a silent wait; the final event
    is the query's answer; an Idempotency-Key retry streams the same task without a second generate."""
    sim.next_script = Script([Step(20, 0)] * 8 + [Step(10, 4)])
    headers = bearer(CN_TOKEN) | {"Idempotency-Key": "stream-1"}

    read: list[Event] = []

    async def stream() -> tuple[list[Event], int]:
        resp = await client.post("/v1/images/generations", json={"prompt": "live", "stream": True}, headers=headers)
        return await events_of(client, resp, read)

    # Time stands still until the stream's first event (the query right after the submit) was read: on a loaded
    # machine the clock could otherwise run the task to its end before the handler reads it.
    ((events, _),) = await drive(client.app, clock, stream(), hold=lambda: not read)
    assert events[0][0] == "progress" and not events[0][2] and events[-1][0] == "final"
    history_id = events[-1][1]["history_id"]
    resp = await client.get(f"/v1/async/tasks/{history_id}", headers=bearer(CN_TOKEN))
    assert events[-1][1] == await json_of(resp) and events[-1][1]["status"] == 10
    read.clear()
    ((again, _),) = await drive(client.app, clock, stream(), hold=lambda: not read)
    assert [name for name, _, _ in again] == ["final"] and again[0][1]["history_id"] == history_id
    assert sim.generate_count == 1


async def test_sync_composition_and_video_stream(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    data_uri = "data:image/png;base64," + base64.b64encode(png(20, 20, (1, 2, 3))).decode()

    async def post(path: str, body: dict[str, Any]) -> tuple[list[Event], int]:
        resp = await client.post(path, json=body | {"stream": True}, headers=bearer(CN_TOKEN))
        return await events_of(client, resp)

    composed, video = await drive(
        client.app,
        clock,
        post("/v1/images/compositions", {"prompt": "mix", "images": [data_uri]}),
        post("/v1/videos/generations", {"prompt": "waves", "duration": 5}),
    )
    assert composed[0][-1][0] == "final" and composed[0][-1][1]["task_type"] == "image"
    assert video[0][-1][0] == "final" and video[0][-1][1]["task_type"] == "video"
    assert video[0][-1][1]["results"] and sim.generate_count == 2


async def test_sync_stream_refusals_stay_json(client: TestClient[Any, Any], sim: Simulator) -> None:
    for path, body, code in (
        ("/v1/images/generations", {"prompt": "x", "stream": "maybe"}, "INVALID_PARAMETER"),
        ("/v1/images/generations", {"prompt": "x", "stream": True, "model": "midjourney-v6"}, "UNKNOWN_MODEL"),
        ("/v1/videos/generations", {"prompt": "x", "stream": True, "duration": 99}, "INVALID_PARAMETER"),
    ):
        resp = await client.post(path, json=body, headers=bearer(CN_TOKEN))
        assert resp.status == 400 and (await json_of(resp))["error"]["code"] == code
    assert sim.generate_count == 0
