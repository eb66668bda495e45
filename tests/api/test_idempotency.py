"""`Idempotency-Key` on submits over real HTTP: replays without a second generate, 422 on reuse, 409 while
running, release of keys whose first request spent nothing, lease and expiry."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, CN_TOKEN_2, POOR_TOKEN, bearer, drive, json_of

from jimeng_server.api.appkeys import GENERATION, RETENTION, STORE
from jimeng_server.clock import ManualClock
from jimeng_server.services.generation import Submission
from jimeng_server.services.idempotency import request_hash
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.media import png
from jimeng_server.simulator.state import SHANGHAI

ASYNC = "/v1/async/images/generations"
SYNC = "/v1/images/generations"


def headers(key: str, *tokens: str) -> dict[str, str]:
    return {**bearer(*(tokens or (CN_TOKEN,))), "Idempotency-Key": key}


async def call(
    client: TestClient[Any, Any], clock: ManualClock, url: str, body: Any, key: str, *tokens: str
) -> tuple[int, Any, dict[str, str]]:
    (resp,) = await drive(client.app, clock, client.post(url, json=body, headers=headers(key, *tokens)))
    return resp.status, await json_of(resp), dict(resp.headers)


@pytest.mark.parametrize("url", [ASYNC, SYNC])
async def test_same_key_replays_without_second_generate(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, url: str
) -> None:
    body = {"prompt": "once only", "ratio": "16:9"}
    status, first, h1 = await call(client, clock, url, body, "key-1")
    assert status == 200 and "Idempotent-Replayed" not in h1
    # Same request, keys reordered: same canonical body.
    status, second, h2 = await call(client, clock, url, {"ratio": "16:9", "prompt": "once only"}, "key-1")
    assert status == 200 and second == first and h2["Idempotent-Replayed"] == "true"
    assert len(sim.calls("/aigc_draft/generate")) == 1 and len(sim.charges) == 1


async def test_same_key_other_body_is_422(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    await call(client, clock, ASYNC, {"prompt": "first"}, "key-2")
    status, body, _ = await call(client, clock, ASYNC, {"prompt": "second"}, "key-2")
    assert status == 422 and body["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    # The key is per endpoint too: the same body on the sync path is another request.
    status, body, _ = await call(client, clock, SYNC, {"prompt": "first"}, "key-2")
    assert status == 422
    assert sim.generate_count == 1


async def test_key_is_per_account(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    a = await call(client, clock, ASYNC, {"prompt": "mine"}, "shared-key", CN_TOKEN)
    b = await call(client, clock, ASYNC, {"prompt": "mine"}, "shared-key", CN_TOKEN_2)
    assert a[1]["history_id"] != b[1]["history_id"]
    assert sim.generate_count == 2
    # The account is the FIRST token's: adding a second token behind it keeps the key.
    c = await call(client, clock, ASYNC, {"prompt": "mine"}, "shared-key", CN_TOKEN, CN_TOKEN_2)
    assert c[1] == a[1] and sim.generate_count == 2


async def test_key_in_use_is_409(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    generation = client.app[GENERATION]
    recorded, submitted = generation.on_submitted, asyncio.Event()
    assert recorded is not None

    async def hook(submission: Submission) -> None:
        await recorded(submission)
        submitted.set()

    generation.on_submitted = hook
    first = asyncio.ensure_future(client.post(SYNC, json={"prompt": "long"}, headers=headers("busy")))
    await asyncio.wait_for(submitted.wait(), 10)  # the first request has submitted and waits on the watcher
    resp = await client.post(SYNC, json={"prompt": "long"}, headers=headers("busy"))
    body = await json_of(resp)
    assert resp.status == 409 and body["error"]["code"] == "IDEMPOTENCY_KEY_IN_USE"
    (done,) = await drive(client.app, clock, first)
    assert done.status == 200
    status, replay, h = await call(client, clock, SYNC, {"prompt": "long"}, "busy")
    assert status == 200 and replay == await json_of(done) and h["Idempotent-Replayed"] == "true"
    assert sim.generate_count == 1


async def test_402_before_spending_releases_the_key(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.account(POOR_TOKEN).received_days.add(datetime.fromtimestamp(clock.time(), SHANGHAI).date().isoformat())
    status, _, _ = await call(client, clock, ASYNC, {"prompt": "poor"}, "retry-me", POOR_TOKEN)
    assert status == 402
    sim.account(POOR_TOKEN).vip_credit = 100  # topped up
    status, _, _ = await call(client, clock, ASYNC, {"prompt": "poor"}, "retry-me", POOR_TOKEN)
    assert status == 200 and sim.generate_count == 1


async def test_upstream_refusal_releases_the_key(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    for _ in range(2):
        status, body, _ = await call(client, clock, ASYNC, {"prompt": "no [sim:refuse]"}, "refused")
        assert status == 422 and body["error"]["code"] == "CONTENT_REJECTED"
    assert len(sim.calls("/aigc_draft/generate")) == 2  # a content refusal spends nothing: the retry ran again


async def test_failure_after_spending_is_replayed(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    status, first, _ = await call(client, clock, SYNC, {"prompt": "bad [sim:fail]"}, "paid")
    assert status == 422 and first["error"]["code"] == "CONTENT_REJECTED"
    status, second, h = await call(client, clock, SYNC, {"prompt": "bad [sim:fail]"}, "paid")
    assert status == 422 and second == first and h["Idempotent-Replayed"] == "true"
    assert sim.generate_count == 1


async def test_validation_error_does_not_claim(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    status, _, _ = await call(client, clock, ASYNC, {"prompt": "x", "ratio": "5:4"}, "typo")
    assert status == 400
    status, _, _ = await call(client, clock, ASYNC, {"prompt": "x"}, "typo")
    assert status == 200 and sim.generate_count == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "ключ"])
async def test_bad_key_is_400(client: TestClient[Any, Any], key: str, sim: Simulator) -> None:
    resp = await client.post(ASYNC, json={"prompt": "x"}, headers={**bearer(CN_TOKEN), "Idempotency-Key": key})
    assert resp.status == 400 and (await json_of(resp))["error"]["code"] == "INVALID_IDEMPOTENCY_KEY"
    assert sim.generate_count == 0


async def test_key_expires_after_24h(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    await call(client, clock, ASYNC, {"prompt": "daily"}, "day")
    await clock.advance(24 * 3600 + 1)
    status, _, h = await call(client, clock, ASYNC, {"prompt": "daily"}, "day")
    assert status == 200 and "Idempotent-Replayed" not in h and sim.generate_count == 2
    assert (await client.app[RETENTION].purge())[2] == 0  # the renewed key is live


async def test_claim_left_by_a_crash_lapses_after_the_lease(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    from jimeng_server.upstream.tokens import parse_token

    fp = parse_token(CN_TOKEN).fingerprint
    digest = request_hash("POST", ASYNC, {"prompt": "crashed"})
    await client.app[STORE].claim_idempotency_key(fp, "crash", digest)  # a claim its process never finished
    status, _, _ = await call(client, clock, ASYNC, {"prompt": "crashed"}, "crash")
    assert status == 409
    await clock.advance(31 * 60)
    status, _, _ = await call(client, clock, ASYNC, {"prompt": "crashed"}, "crash")
    assert status == 200 and sim.generate_count == 1


async def test_multipart_retry_with_new_boundary_replays(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    def form(color: tuple[int, int, int]) -> aiohttp.FormData:
        f = aiohttp.FormData()
        f.add_field("prompt", "blend")
        f.add_field("images", png(6, 6, color), filename="a.png", content_type="image/png")
        return f

    url = "/v1/async/images/compositions"
    first = await client.post(url, data=form((1, 2, 3)), headers=headers("upload"))
    again = await client.post(url, data=form((1, 2, 3)), headers=headers("upload"))
    other = await client.post(url, data=form((9, 9, 9)), headers=headers("upload"))
    assert first.status == again.status == 200 and await json_of(first) == await json_of(again)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status == 422
    assert sim.generate_count == 1


async def test_sync_video_replays_with_url_format(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    url = "/v1/videos/generations"
    body = {"prompt": "a lion", "duration": 5}
    status, first, _ = await call(client, clock, url, body, "video-1")
    assert status == 200 and first["data"][0]["url"]
    status, second, h2 = await call(client, clock, url, body, "video-1")
    assert status == 200 and second == first and h2["Idempotent-Replayed"] == "true"
    assert sim.generate_count == 1 and len(sim.charges) == 1


async def test_sync_video_b64_with_key_is_refused_before_spending(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    body = {"prompt": "a lion", "duration": 5, "response_format": "b64_json"}
    status, answer, _ = await call(client, clock, "/v1/videos/generations", body, "video-2")
    assert status == 400 and answer["error"]["code"] == "UNSUPPORTED_PARAMETER"
    assert "response_format=url" in answer["error"]["message"]
    assert sim.generate_count == 0
